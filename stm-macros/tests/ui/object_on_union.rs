use stm_runtime as stm;

#[stm::object]
union Bits {
    i: u64,
    f: f64,
}

fn main() {}
