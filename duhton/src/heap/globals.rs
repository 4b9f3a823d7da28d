//! The root object: the symbol table and the main program's pending calls.

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{new_list, Call, Obj};

/// The root object: the symbol table and the main program's pending calls.
#[stm::object]
pub struct Globals {
    /// Every symbol, indexed by id (a Duhton list).
    pub symtab: Gc<Obj>,
    /// The main program's queued calls, newest first.
    pub pending: Option<Gc<Call>>,
}

/// A new root object with an empty symbol table.
#[stm::transactional]
pub fn new_globals(tx: &Tx) -> Gc<Globals> {
    let symtab = new_list(tx);
    Gc::new(Globals {
        symtab,
        pending: None,
    })
}

/// The symbol table.
#[stm::transactional]
pub fn symtab(g: Gc<Globals>) -> Gc<Obj> {
    g.symtab
}

/// Pushes a call on the main program's pending list.
#[stm::transactional]
pub fn push_pending(g: Gc<Globals>, c: Gc<Call>) {
    c.next = g.pending;
    g.pending = Some(c);
}

/// Takes the main program's pending calls, oldest first.
#[stm::transactional]
pub fn take_pending(g: Gc<Globals>) -> Vec<Gc<Call>> {
    let mut out = Vec::new();
    let mut cur = g.pending.take();
    while let Some(c) = cur {
        out.push(c);
        cur = c.next;
    }
    out.reverse();
    out
}

/// Takes the newest of the main program's pending calls.
#[stm::transactional]
pub fn pop_pending(g: Gc<Globals>) -> Option<Gc<Call>> {
    let c = g.pending?;
    g.pending = c.next;
    Some(c)
}
