use stm_runtime as stm;

#[stm::object]
struct Pair(i64, i64);

fn main() {}
