// The README example.
use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Account {
    balance: i64,
    owner: u32,
    next: Option<Gc<Account>>,
}

#[stm::transactional]
fn transfer(from: Gc<Account>, to: Gc<Account>, amount: i64) -> bool {
    if from.balance < amount {
        return false;
    }
    from.balance -= amount;
    to.balance += amount;
    true
}
