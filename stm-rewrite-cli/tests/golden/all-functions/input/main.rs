//! --all-functions: every function runs in a transaction (PyPy style), or in transactions
//! cut at break points when it starts its own and has a loop (`main` included); `const fn`
//! and functions that cannot be transactional are left alone with a note.

use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Counter {
    hits: u64,
}

fn bump(c: Gc<Counter>) -> u64 {
    c.hits += 1;
    c.hits
}

/// No handle: runs in its own transaction (or joins the caller's).
fn twice(x: u64) -> u64 {
    x * 2
}

/// Takes a handle: runs in its caller's transaction, loop included.
fn bump_n(c: Gc<Counter>, n: u64) {
    for _ in 0..n {
        c.hits += 1;
    }
}

/// No handle and a loop: runs in transactions, one iteration each, cut at break points.
fn sum_twice(limit: u64) -> u64 {
    let mut sum = 0;
    for i in 0..limit {
        sum += twice(i);
    }
    sum
}

const fn limit() -> u64 {
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
    fn up_to(&self, n: u32) -> u32 {
        let mut c = 0;
        while c < n {
            c += 1;
        }
        c
    }
}

fn spawns() {
    std::thread::spawn(|| {}).join().ok();
}

/// Its loops block: it stays as it is, with a note.
fn joins(n: usize) {
    for _ in 0..n {
        std::thread::spawn(|| {}).join().ok();
    }
}

/// Its code outside the loop runs outside transactions (it may spawn threads); the loop in
/// transactions.
fn main() {
    let mut rounds = 0;
    while rounds < 3 {
        rounds += 1;
    }
    let _ = (twice(limit()), Config { verbose: false }.verbose(), sum_twice(rounds));
    let _ = Tally.up_to(3);
    spawns();
    joins(2);
}
