use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Account {
    balance: i64,
}

// Not transactional: a handle exposes no fields, so the access cannot compile without
// the barrier the macro would insert.
fn peek(a: Gc<Account>) -> i64 {
    a.balance
}

fn main() {}
