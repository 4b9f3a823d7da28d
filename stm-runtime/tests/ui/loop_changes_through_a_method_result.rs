// Issue 13, class 6: a `&mut` reached through a method result (`as_mut_slice`) was not seen
// as state outside the loop's carried locals, so the iterations rerun after an abort changed
// it twice (13,800 increments for 10,000 iterations). The loop's step is an `Fn` closure now:
// any change it cannot carry across break points is a compile error, whatever the syntax.
use stm_runtime as stm;

#[stm::in_transactions]
fn bump(rounds: u64) -> u64 {
    let mut storage = vec![0u64; 4];
    let data = storage.as_mut_slice();
    for _ in 0..rounds {
        data[0] += 1;
    }
    storage[0]
}

fn main() {}
