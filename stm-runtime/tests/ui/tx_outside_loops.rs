// Outside its loops, an in-transactions function runs outside transactions: no `tx!()`.
use stm_runtime as stm;

#[stm::object]
struct Counter {
    value: u64,
}

#[stm::in_transactions]
fn reset(c: &stm::Root<Counter>) {
    let h = c.get(stm::tx!());
    for _ in 0..10 {
        c.get(stm::tx!()).value += 1;
    }
    drop(h);
}

fn main() {}
