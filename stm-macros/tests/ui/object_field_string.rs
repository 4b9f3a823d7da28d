use stm_runtime as stm;

#[stm::object]
struct User {
    id: u64,
    name: String,
}

fn main() {}
