use stm_runtime as stm;

#[stm::object]
struct View<'a> {
    len: u64,
    _m: [&'a u8; 0],
}

fn main() {}
