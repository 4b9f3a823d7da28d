// A local that a loop with break points changes is restored after an abort: it must be Clone.
use stm_runtime as stm;

struct Log(Vec<u64>);

#[stm::in_transactions]
fn collect(n: u64) -> usize {
    let mut log = Log(Vec::new());
    for i in 0..n {
        log.0.push(i);
    }
    log.0.len()
}

fn main() {}
