use stm_runtime as stm;
use stm::{Gc, Tx};

#[stm::object]
struct Node {
    key: i64,
}

#[stm::transactional]
fn make(tx: &Tx, key: i64) -> Gc<Node> {
    let _ = tx;
    Gc::new(Node { key })
}

fn main() {
    // The handle cannot leave the transaction that made it.
    let leaked = stm::atomically(|tx| make(tx, 1));
    let _ = leaked;
}
