// An object with no handles set can be allocated from a struct literal in any transaction
// closure; linking handles goes through field writes in #[transactional] code. No stored
// handle can exist outside the heap, so a literal can only hold `None` where a handle goes.
#![forbid(unsafe_code)]
use stm_runtime as stm;
use stm::{Gc, Stm};

#[stm::object]
struct Account {
    balance: i64,
    next: Option<Gc<Account>>,
}

#[stm::transactional]
fn link(a: Gc<Account>, b: Gc<Account>) {
    a.next = Some(b);
}

fn main() {
    let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    let root = stm.atomically(|tx| {
        let a = tx.alloc(Account { balance: 100, next: None });
        let b = tx.alloc(Account { balance: 5, next: None });
        link(a, b);
        tx.root(a)
    });
    let _ = root;
}
