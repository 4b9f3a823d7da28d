//! A sorted list of keys in the shared heap. The object types live in this file; the
//! functions that use them partly in `ops.rs`: the rewriter reads the whole tree.

use stm_runtime as stm;
use stm::Gc;

/// One node.
#[stm::object]
pub struct Node {
    pub key: u64,
    pub next: Option<Gc<Node>>,
}

/// The list head.
#[stm::object]
pub struct List {
    pub head: Option<Gc<Node>>,
    pub len: u32,
}

// Untouched: not transactional.
pub fn describe() -> &'static str {
    "a sorted list"   // comment kept
}
