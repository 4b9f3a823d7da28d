use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Slot<T> {
    value: T,
}

// The type parameter of an object must be plain data too.
fn get(s: Option<Gc<Slot<String>>>) -> bool {
    s.is_some()
}

fn main() {}
