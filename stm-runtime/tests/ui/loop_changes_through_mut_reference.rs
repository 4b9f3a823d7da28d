// What a `&mut` parameter reaches is not restored when a transaction aborts: a loop with
// break points may not change it (its iterations would change it twice).
use stm_runtime as stm;

#[stm::in_transactions]
fn fill(out: &mut Vec<u64>, n: u64) {
    for i in 0..n {
        out.push(i);
    }
}

struct Worker {
    done: u64,
}

impl Worker {
    #[stm::in_transactions]
    fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.done += 1;
        }
    }
}

fn main() {}
