//! The README example, run with several threads.

use stm::{Gc, Root};
use stm_runtime as stm;

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

#[stm::transactional]
fn open(owner: u32, balance: i64) -> Root<Account> {
    let a = Gc::new(Account {
        balance,
        owner,
        next: None,
    });
    a.tx().root(a)
}

#[stm::transactional]
fn balance(a: &Root<Account>) -> i64 {
    let tx = stm::atomically(|tx| tx.stm());
    let _ = tx;
    stm::atomically(|tx| a.get(tx).tx().is_inevitable());
    0
}

fn main() {}

#[test]
fn transfers_conserve_money() {
    let accounts: Vec<Root<Account>> = (0..4).map(|i| open(i, 1000)).collect();
    let _ = balance;
    std::thread::scope(|s| {
        for t in 0..4usize {
            let accounts = &accounts;
            s.spawn(move || {
                for i in 0..200usize {
                    let (x, y) = ((t + i) % 4, (t + 2 * i + 1) % 4);
                    if x == y {
                        continue;
                    }
                    stm::atomically(|tx| {
                        transfer(accounts[x].get(tx), accounts[y].get(tx), (i % 7) as i64)
                    });
                }
            });
        }
    });
    let total: i64 = stm::atomically(|tx| {
        accounts
            .iter()
            .map(|a| {
                let a = a.get(tx);
                read_balance(a)
            })
            .sum()
    });
    assert_eq!(total, 4000);
}

#[stm::transactional]
fn read_balance(a: Gc<Account>) -> i64 {
    a.balance
}
