// A `macro_rules!` defined in the function may change locals unseen: a loop with break points
// may not call it.
use stm_runtime as stm;

#[stm::in_transactions]
fn count(n: u64) -> u64 {
    let mut total = 0;
    macro_rules! bump {
        () => {
            total += 1
        };
    }
    for _ in 0..n {
        bump!();
    }
    total
}

fn main() {}
