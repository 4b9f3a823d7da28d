use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Account {
    balance: i64,
}

// A mutable place of an object field lives until the end of its statement.
#[stm::transactional]
fn bump(a: Gc<Account>) {
    let r = &mut a.balance;
    *r += 1;
}

fn main() {}
