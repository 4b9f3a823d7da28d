// A `Gc` import used only in the field types of an object (which the macro rewrites into the
// stored form) is not reported as unused: the expansion mentions it.
#![deny(unused_imports)]
use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: u64,
    next: Option<Gc<Node>>,
}

fn main() {
    let stm = stm::Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    stm.atomically(|tx| tx.alloc(Node { key: 1, next: None }).ptr_eq(tx.alloc(Node { key: 2, next: None })));
}
