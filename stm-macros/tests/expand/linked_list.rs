// Allocation, a loop over a linked structure (bindings of unknown type go through the tag
// dispatch), method calls on fields, and a read barrier on every read.
use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
    next: Option<Gc<Node>>,
}

#[stm::object]
struct List {
    head: Option<Gc<Node>>,
    len: usize,
}

#[stm::transactional]
fn push_front(list: Gc<List>, key: i64) {
    let node = Gc::new(Node { key, next: list.head });
    list.head = Some(node);
    list.len += 1;
    let _check = node.key + list.len as i64;
}

#[stm::transactional]
fn sum(list: Gc<List>) -> i64 {
    let mut total = 0;
    let mut cur = list.head;
    while let Some(node) = cur {
        total += node.key;
        cur = node.next;
    }
    if list.head.is_some() {
        total += list.head.unwrap().key * 0;
    }
    total
}

// Methods on handles: `self: Gc<Self>` methods of a transactional impl block become the trait
// `NodeMethods`, implemented for `Gc<Node>` (so `node.shifted(1)` works on stable Rust).
#[stm::transactional]
impl Node {
    pub fn shifted(self: Gc<Self>, by: i64) -> i64 {
        self.key + by
    }
}
