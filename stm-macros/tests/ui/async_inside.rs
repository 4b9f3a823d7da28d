use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
}

#[stm::transactional]
fn later(n: Gc<Node>) {
    let f = async { 1 };
    let _ = (f, n.key);
}

fn main() {}
