use stm_runtime as stm;

#[stm::object]
#[derive(Clone, Copy, Debug)]
struct Counter {
    n: u64,
}

fn main() {}
