use stm_runtime as stm;

#[stm::object]
struct Buffer {
    data: *mut u8,
    len: usize,
}

fn main() {}
