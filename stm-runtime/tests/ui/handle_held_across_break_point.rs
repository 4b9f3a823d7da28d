// A handle lives in one transaction: keeping one in a local across a break point (where the
// transaction commits and the next begins) does not compile.
use stm_runtime as stm;

#[stm::object]
struct Counter {
    value: u64,
}

#[stm::in_transactions]
fn keep_last(c: &stm::Root<Counter>) {
    let mut last = None;
    for _ in 0..10 {
        last = Some(c.get(stm::tx!()));
    }
    drop(last);
}

fn main() {}
