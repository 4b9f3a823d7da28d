// A `Gc` import used only in `Gc::new(..)` inside transactional code (which the macro rewrites
// into the runtime's allocation) is not reported as unused: the expansion still names it.
#![deny(unused_imports)]
use stm_runtime as stm;
use stm::{Gc, Root};

#[stm::object]
struct Leaf {
    key: u64,
}

#[stm::transactional]
fn make(key: u64) -> Root<Leaf> {
    stm::tx!().root(Gc::new(Leaf { key }))
}

fn main() {
    let _ = make(7);
}
