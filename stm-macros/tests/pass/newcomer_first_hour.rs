// What a newcomer writes from the README alone (issue 15's "done when"): objects allocated in a
// transaction closure, a `TVec<Gc<T>>` field, handles compared, text, a queue in FIFO order.
#![forbid(unsafe_code)]
use stm_runtime as stm;
use stm::{Gc, QueueOrder, Stm, TString, TVec, TransactionQueue};

#[stm::object]
struct Account {
    balance: i64,
    owner: TString,
    next: Option<Gc<Account>>,
}

#[stm::object]
struct Bank {
    accounts: TVec<Gc<Account>>,
}

#[stm::transactional]
fn transfer(from: Gc<Account>, to: Gc<Account>, amount: i64) -> bool {
    if from == to || from.balance < amount {
        return false;
    }
    from.balance -= amount;
    to.balance += amount;
    true
}

#[stm::transactional]
fn total(bank: Gc<Bank>) -> i64 {
    bank.accounts.iter().map(|a| a.balance).sum()
}

fn main() {
    let stm = Stm::new().expect("a runtime");
    let bank = stm.atomically(|tx| {
        let accounts = TVec::new(tx);
        for (i, name) in ["ann", "bob", "cyd"].into_iter().enumerate() {
            let owner = TString::from_str(tx, name);
            let a = stm::alloc!(tx, Account { balance: 100 * i as i64, owner: owner, next: None });
            accounts.push(a);
        }
        tx.root(stm::alloc!(tx, Bank { accounts: accounts }))
    });
    let queue = TransactionQueue::with_order(&stm, QueueOrder::Fifo);
    for i in 0..30 {
        let bank = &bank;
        queue.add(move |tx, _| {
            let b = bank.get(tx);
            let v = GcVecOf::accounts(b);
            transfer(v.get(i % 3), v.get((i + 1) % 3), 5);
        });
    }
    queue.run(2);
    assert_eq!(stm.atomically(|tx| total(bank.get(tx))), 300);
}

/// Reading a field outside transactional code goes through a transactional helper.
struct GcVecOf;
impl GcVecOf {
    #[stm::transactional]
    fn accounts(b: Gc<Bank>) -> stm::GcVec<'tx, stm::GcRef<Account>> {
        b.accounts
    }
}
