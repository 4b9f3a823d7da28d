use stm_runtime as stm;

#[stm::transactional]
async fn fetch() -> u32 {
    42
}

fn main() {}
