use stm_runtime as stm;

#[stm::transactional]
struct Bank {
    total: i64,
}

#[stm::transactional]
static LIMIT: u32 = 3;

#[stm::transactional]
trait Transfer {
    fn go(&self);
}

fn main() {}
