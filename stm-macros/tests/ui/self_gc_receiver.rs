use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
}

#[stm::transactional]
impl Node {
    fn key(self: Gc<Self>) -> i64 {
        self.key
    }
}

fn main() {}
