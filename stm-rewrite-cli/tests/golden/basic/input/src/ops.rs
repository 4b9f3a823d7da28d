use stm_runtime as stm;
use stm::Gc;

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
