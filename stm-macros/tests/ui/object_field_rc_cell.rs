use std::cell::Cell;
use std::rc::Rc;
use stm_runtime as stm;

#[stm::object]
struct Shared {
    owner: Rc<u32>,
    hits: Cell<u64>,
}

fn main() {}
