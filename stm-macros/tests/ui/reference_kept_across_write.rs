use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Account {
    balance: i64,
}

// A Rust reference into a shared object cannot be kept across a write: reads give copies.
#[stm::transactional]
fn keep(a: Gc<Account>) -> i64 {
    let r = &a.balance;
    a.balance = 5;
    *r
}

fn main() {}
