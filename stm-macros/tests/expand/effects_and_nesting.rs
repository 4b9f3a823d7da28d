// A function with no handle parameter runs in `atomically` (joins or starts a transaction);
// an irreversible call makes the transaction inevitable first; `tx_safe!` opts out; an impl
// block is transactional as a whole.
use stm_runtime as stm;
use stm::{Gc, Root};

#[stm::object]
struct Counter {
    hits: u64,
}

#[stm::transactional]
fn hit(counter: &Root<Counter>) -> u64 {
    let c = counter.get(stm::tx!());
    c.hits += 1;
    println!("hits = {}", c.hits);
    c.hits
}

struct Stats {
    name: String,
}

#[stm::transactional]
impl Stats {
    fn report(&self, c: Gc<Counter>) -> String {
        let line = format!("{}: {}", self.name, c.hits);
        stm::tx_safe!(std::io::Write::flush(&mut std::io::sink()).ok());
        line
    }
}
