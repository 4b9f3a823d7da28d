use std::sync::Mutex;
use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Job {
    done: bool,
}

static LOG: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[stm::transactional]
fn finish(job: Gc<Job>) {
    job.done = true;
    LOG.lock().unwrap().push(1);
}

fn main() {}
