//! --all-functions: every function runs in a transaction (PyPy style); `main`, `const fn`
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

fn spawns() {
    std::thread::spawn(|| {}).join().ok();
}

fn main() {
    let _ = (twice(limit()), Config { verbose: false }.verbose());
    spawns();
}
