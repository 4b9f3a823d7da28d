use stm_runtime as stm;

#[stm::object(fast)]
struct Node {
    key: i64,
}

#[stm::transactional(retries = 3)]
fn f() {}

fn main() {}
