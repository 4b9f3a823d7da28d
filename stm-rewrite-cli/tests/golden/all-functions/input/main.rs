//! --all-functions: every function that can reach the shared heap runs in a transaction
//! (PyPy style), or in transactions cut at break points when it starts its own and has a loop
//! (`main` included); `const fn` and functions that cannot be transactional are left alone
//! with a note, and so are functions that cannot reach the heap (counted, noted with -v).

use stm_runtime as stm;
use stm::{Gc, Root};

#[stm::object]
struct Counter {
    hits: u64,
}

fn bump(c: Gc<Counter>) -> u64 {
    c.hits += 1;
    c.hits
}

/// No handle: runs in its own transaction (or joins the caller's).
fn bump_twice(c: &Root<Counter>) -> u64 {
    bump(c.get(stm::tx!()));
    bump(c.get(stm::tx!()))
}

/// Takes a handle: runs in its caller's transaction, loop included.
fn bump_n(c: Gc<Counter>, n: u64) {
    for _ in 0..n {
        c.hits += 1;
    }
}

/// No handle and a loop: runs in transactions, one iteration each, cut at break points.
fn sum_twice(c: &Root<Counter>, limit: u64) -> u64 {
    let mut sum = 0;
    for i in 0..limit {
        sum += twice(i) + bump_twice(c);
    }
    sum
}

/// Cannot reach the shared heap: left as it is.
fn twice(x: u64) -> u64 {
    x * 2
}

const fn limit(_: Option<&Root<Counter>>) -> u64 {
    10
}

struct Config {
    verbose: bool,
}

impl Config {
    fn verbose(&self) -> bool {
        self.verbose
    }
}

struct Tally;

impl Tally {
    /// A method with a loop, taking no handle: in transactions too.
    fn up_to(&self, r: &Root<Counter>, n: u32) -> u32 {
        let mut c = 0;
        while c < n {
            r.get(stm::tx!()).hits += 1;
            c += 1;
        }
        c
    }
}

fn spawns(r: &Root<Counter>) {
    std::thread::spawn(|| {}).join().ok();
    bump_twice(r);
}

/// Its loops block: it stays as it is, with a note.
fn joins(r: &Root<Counter>, n: usize) {
    for _ in 0..n {
        std::thread::spawn(|| {}).join().ok();
        bump_twice(r);
    }
}

/// Its code outside the loop runs outside transactions (it may spawn threads); the loop in
/// transactions.
fn main() {
    let c = stm::atomically(|tx| tx.root(tx.alloc(Counter { hits: 0 })));
    let mut rounds = 0;
    while rounds < 3 {
        rounds += bump_twice(&c);
    }
    let _ = (twice(limit(None)), Config { verbose: false }.verbose(), sum_twice(&c, rounds));
    let _ = Tally.up_to(&c, 3);
    spawns(&c);
    joins(&c, 2);
}
