//! Opacity: a transaction never sees a state that no serial order could produce, not even
//! an attempt that later aborts. Writers keep K objects equal; readers check that they are
//! equal on every attempt, counting violations from inside the transaction body.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::stm;

const K: usize = 8;

#[test]
fn no_attempt_sees_a_torn_state() {
    let stm = stm(2);
    let cells: Vec<_> = stm.atomically(|tx| (0..K).map(|_| tx.root(tx.alloc(0u64))).collect());
    let violations = AtomicU64::new(0);
    let attempts = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Writers: add the same amount to every cell, one cell at a time.
        for w in 0..2u64 {
            let (stm, cells, stop) = (&stm, &cells, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    stm.atomically(|tx| {
                        for c in cells.iter() {
                            let c = c.get(tx);
                            c.set(c.get() + w + 1);
                        }
                    });
                    i += 1;
                }
            });
        }
        // Reader: reads the cells slowly, yielding between reads so commits land meanwhile.
        let (stm, cells) = (&stm, &cells);
        let (violations, attempts, stop) = (&violations, &attempts, &stop);
        s.spawn(move || {
            for _ in 0..2_000 {
                stm.atomically(|tx| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let first = cells[0].get(tx).get();
                    for c in &cells[1..] {
                        std::thread::yield_now();
                        if c.get(tx).get() != first {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    assert!(attempts.load(Ordering::Relaxed) >= 2_000);
    let values: Vec<u64> = stm.atomically(|tx| cells.iter().map(|c| c.get(tx).get()).collect());
    assert!(values.iter().all(|&v| v == values[0]));
}

#[test]
fn a_snapshot_does_not_move_under_a_running_transaction() {
    // Thread A reads X, waits until B has committed a new X, reads X again: same value.
    if !stm_runtime::BARRIERS {
        return; // GIL mode: B could not run while A holds the lock (and nothing can move).
    }
    let stm = stm(2);
    let x = stm.atomically(|tx| tx.root(tx.alloc(1u64)));
    let b_done = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let mut first_attempt = true;
            stm.atomically(|tx| {
                let before = x.get(tx).get();
                if first_attempt {
                    first_attempt = false;
                    while !b_done.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                }
                (before, x.get(tx).get())
            })
        });
        s.spawn(|| {
            stm.atomically(|tx| x.get(tx).set(2));
            b_done.store(true, Ordering::Release);
        });
        a.join().unwrap()
    });
    assert_eq!(seen.0, seen.1, "value changed inside one transaction");
    assert_eq!(stm.atomically(|tx| x.get(tx).get()), 2);
}
