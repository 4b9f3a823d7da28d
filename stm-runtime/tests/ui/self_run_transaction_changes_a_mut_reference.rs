// Issue 13, class 6 for #[transactional]: a function that takes no handle and no `&Tx` runs as
// its own transaction, whose body may run again after an abort; changing what a `&mut`
// parameter reaches would then happen twice. Its body is an `Fn` closure: a compile error.
use stm_runtime as stm;
use stm::Root;

#[stm::transactional]
fn record(log: &mut Vec<u64>, counter: &Root<u64>) {
    log.push(counter.get(stm::tx!()).get());
}

fn main() {}
