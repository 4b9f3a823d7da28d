use stm_runtime as stm;
use stm::{Gc, Root};

use crate::list::{List, Node};

/// Inserts `key` (a bare `Node { .. }` literal allocates: the rewriter knows from
/// `list.rs` that `Node` is an object type, which the macro alone does not).
#[stm::transactional]
pub fn insert(list: Gc<List>, key: u64) {
    let node = Node { key, next: list.head };
    list.head = Some(node);
    list.len += 1;
}

/// Whether `key` is in the list.
#[stm::transactional]
pub fn contains(list: Gc<List>, key: u64) -> bool {
    let mut cur = list.head;
    while let Some(n) = cur {
        if n.key == key {
            return true;
        }
        cur = n.next;
    }
    false
}

/// Inserts the keys `0..n`, in transactions: each iteration of the loop is one, with a
/// break point at its back-edge (PyPy's model for long-running code); the code around the
/// loop runs outside transactions.
#[stm::in_transactions]
pub fn fill(list: &Root<List>, n: u64) -> u32 {
    let start = 0; // outside transactions
    let mut inserted = 0;
    for key in start..n {
        insert(list.get(stm::tx!()), key);
        inserted += 1;
    }
    inserted
}

pub struct Printer {
    pub prefix: &'static str,
}

impl Printer {
    /// Printing is irreversible: the transaction becomes inevitable first.
    #[stm::transactional]
    pub fn show(&self, list: Gc<List>) {
        println!("{}{}", self.prefix, list.len);
    }

    pub fn untouched(&self) -> usize {
        self.prefix.len()
    }
}
