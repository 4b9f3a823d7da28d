use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
    next: Option<Gc<Node>>,
}

#[stm::transactional]
fn copy(n: Gc<Node>) -> Gc<Node> {
    let k = n.key;
    Gc::new(Node { key: k, ..n })
}

fn main() {}
