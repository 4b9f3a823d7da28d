// Issue 13, class 6 (found by review): `Fn` alone lets a loop step change a `Cell` it
// captured, which a rerun after an abort changes again. Steps and self-run transactional
// bodies are `Fn + Sync` closures, so `Cell` and `RefCell` (not `Sync`) are rejected.
use std::cell::Cell;
use stm_runtime as stm;
use stm::Root;

#[stm::in_transactions]
fn count(rounds: u64, total: &Root<u64>) -> u64 {
    let seen = Cell::new(0u64);
    for _ in 0..rounds {
        seen.set(seen.get() + 1);
        let t = total.get(stm::tx!());
        t.set(t.get() + 1);
    }
    seen.get()
}

#[stm::transactional]
fn bump(seen: &Cell<u64>, total: &Root<u64>) {
    seen.set(seen.get() + 1);
    let t = total.get(stm::tx!());
    t.set(t.get() + 1);
}

fn main() {}
