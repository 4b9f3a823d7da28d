use stm_runtime as stm;

#[stm::transactional]
const fn answer() -> u32 {
    42
}

fn main() {}
