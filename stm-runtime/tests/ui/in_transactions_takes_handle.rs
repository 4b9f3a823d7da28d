// A function whose transactions end at its break points cannot take a handle.
use stm_runtime as stm;

#[stm::object]
struct Counter {
    value: u64,
}

#[stm::in_transactions]
fn count(c: stm::Gc<Counter>) {
    for _ in 0..10 {
        c.value += 1;
    }
}

fn main() {}
