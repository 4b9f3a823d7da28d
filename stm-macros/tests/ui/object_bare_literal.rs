use stm_runtime as stm;

#[stm::object]
struct Counter {
    n: u64,
}

// An object value cannot be built outside `Gc::new(..)` in a #[transactional] function.
fn make() -> Counter {
    Counter { n: 1 }
}

fn main() {
    let _ = make;
}
