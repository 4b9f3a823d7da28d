use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Job {
    done: bool,
}

#[stm::transactional]
fn check(job: Gc<Job>) -> bool {
    stm::tx_safe!(job.done)
}

#[stm::transactional]
fn nothing(job: Gc<Job>) {
    let _ = job;
    stm::tx_safe!();
}

fn main() {}
