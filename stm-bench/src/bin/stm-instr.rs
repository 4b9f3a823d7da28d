//! The single-thread hot paths, for counting instructions: `scripts/instr-count` runs this
//! under `valgrind --tool=callgrind --toggle-collect=*measured*`, so only the loop of the
//! chosen operation is counted (not the runtime's start or the warm-up), and divides by the number of operations.
//!
//! `stm-instr OP N [SEGMENTS]` runs `N` times, in a runtime of `SEGMENTS` segments (default
//! 2: the whole commit protocol; 1 skips it), one of:
//! * `empty`: an empty transaction;
//! * `transfer`: a bank transfer (2 reads, 2 writes of committed accounts);
//! * `mutex`: the same transfer under an uncontended `Mutex`.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Mutex;

use stm_runtime::{Root, Stm};

const ACCOUNTS: usize = 64;

#[inline(never)]
fn empty(stm: &Stm, n: u64) {
    for _ in 0..n {
        stm.atomically(|tx| {
            black_box(tx);
        });
    }
}

#[inline(never)]
fn transfer(stm: &Stm, accounts: &[Root<i64>], n: u64) {
    for i in 0..n as usize {
        let (a, b) = (i % ACCOUNTS, (i * 7 + 1) % ACCOUNTS);
        stm.atomically(|tx| {
            let (from, to) = (accounts[a].get(tx), accounts[b].get(tx));
            from.set(from.get() - 1);
            to.set(to.get() + 1);
        });
    }
}

#[inline(never)]
fn mutex(accounts: &Mutex<Vec<i64>>, n: u64) {
    for i in 0..n as usize {
        let (a, b) = (i % ACCOUNTS, (i * 7 + 1) % ACCOUNTS);
        let mut g = accounts.lock().unwrap_or_else(|e| e.into_inner());
        g[a] -= 1;
        g[b] += 1;
        black_box(&mut *g);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, n, segments) = match args.as_slice() {
        [op, n] => (op.as_str(), n, "2"),
        [op, n, segments] => (op.as_str(), n, segments.as_str()),
        _ => return usage(),
    };
    let (Ok(n), Ok(segments @ 1..)) = (n.parse::<u64>(), segments.parse::<usize>()) else {
        return usage();
    };
    // By default two segments, used by one thread: commits then run the whole protocol
    // (lock, check, publish into the committed heap) as in any multi-threaded runtime; a
    // runtime of one segment skips it.
    let stm = Stm::builder()
        .segments(segments)
        .heap_size(64 << 20)
        .build()
        .expect("runtime");
    let accounts: Vec<Root<i64>> =
        stm.atomically(|tx| (0..ACCOUNTS).map(|_| tx.root(tx.alloc(1000i64))).collect());
    // Warm up: the first transactions grow the write set and the log's entry cache.
    empty(&stm, 1000);
    transfer(&stm, &accounts, 1000);
    match op {
        "empty" => measured(|| empty(&stm, n)),
        "transfer" => measured(|| transfer(&stm, &accounts, n)),
        "mutex" => {
            let m = Mutex::new(vec![1000; ACCOUNTS]);
            mutex(&m, 1000);
            measured(|| mutex(&m, n))
        }
        _ => return usage(),
    }
    let total: i64 = stm.atomically(|tx| accounts.iter().map(|a| a.get(tx).get()).sum());
    assert_eq!(
        total,
        1000 * ACCOUNTS as i64,
        "transfers must keep the total"
    );
    ExitCode::SUCCESS
}

/// The one function callgrind counts in (`--toggle-collect=*measured*`).
#[inline(never)]
fn measured(f: impl FnOnce()) {
    f()
}

fn usage() -> ExitCode {
    eprintln!("usage: stm-instr empty|transfer|mutex N [SEGMENTS (default 2, at least 1)]");
    ExitCode::from(2)
}
