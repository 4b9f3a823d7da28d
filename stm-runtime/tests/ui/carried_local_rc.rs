// A carried local is restored after an abort from a copy: an `Rc` copy shares its contents
// with the original, so an aborted attempt's changes to them would survive. It must be Send.
use std::cell::Cell;
use std::rc::Rc;
use stm_runtime as stm;

#[stm::in_transactions]
fn count(n: u64) -> u64 {
    let mut seen = Rc::new(Cell::new(0u64));
    for _ in 0..n {
        seen.set(seen.get() + 1);
    }
    seen.get()
}

fn main() {}
