//! Queued transactions: `(transaction f args...)` makes one, run later as a transaction.

use stm::Gc;
use stm_runtime as stm;

use super::{Frame, Obj};

/// A queued transaction: run `body` (a progn) in `frame`.
#[stm::object]
pub struct Call {
    /// The function body.
    pub body: Option<Gc<Obj>>,
    /// The callee frame, arguments bound.
    pub frame: Gc<Frame>,
    /// The next older pending call (the main program's pending list).
    pub next: Option<Gc<Call>>,
}

/// A new queued call.
#[stm::transactional]
pub fn new_call(frame: Gc<Frame>, body: Option<Gc<Obj>>) -> Gc<Call> {
    Gc::new(Call {
        body,
        frame,
        next: None,
    })
}

/// The body and frame of a queued call.
#[stm::transactional]
pub fn call_parts(c: Gc<Call>) -> (Option<Gc<Obj>>, Gc<Frame>) {
    (c.body, c.frame)
}
