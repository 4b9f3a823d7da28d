//! `#[in_transactions]`: the loop becomes a series of transactions; `done` is carried.
use stm_runtime as stm;
use stm::Root;

#[stm::object]
struct Counter {
    value: u64,
}

#[stm::in_transactions]
fn count_to(c: &Root<Counter>, n: u64) -> u64 {
    let mut done = 0;
    while done < n {
        c.get(stm::tx!()).value += 1;
        done += 1;
    }
    done
}
