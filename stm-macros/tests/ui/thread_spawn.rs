use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Job {
    done: bool,
}

#[stm::transactional]
fn start(job: Gc<Job>) {
    job.done = false;
    std::thread::spawn(|| println!("working"));
}

fn main() {}
