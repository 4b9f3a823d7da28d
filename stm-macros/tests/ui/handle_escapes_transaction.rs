use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
}

// No handle or &Tx parameter: called outside a transaction this runs as its own, so the
// handle it returns would outlive it.
#[stm::transactional]
fn make(key: i64) -> Gc<Node> {
    Gc::new(Node { key })
}

fn main() {}
