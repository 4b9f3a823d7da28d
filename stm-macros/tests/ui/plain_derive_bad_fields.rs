use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
}

#[derive(Clone, Copy, stm::Plain)]
struct Entry<'a> {
    node: Gc<'a, Node>,
}

#[derive(Clone, stm::Plain)]
struct Named {
    name: String,
}

fn main() {}
