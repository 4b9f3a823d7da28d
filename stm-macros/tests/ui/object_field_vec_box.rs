use stm_runtime as stm;

// Several problems are reported at once, each on its field.
#[stm::object]
struct Inventory {
    items: Vec<u32>,
    extra: Box<u64>,
    count: u32,
}

fn main() {}
