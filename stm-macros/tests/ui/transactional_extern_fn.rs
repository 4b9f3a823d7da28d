use stm_runtime as stm;

#[stm::transactional]
extern "C" fn callback(x: u32) -> u32 {
    x
}

fn main() {}
