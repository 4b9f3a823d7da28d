//! Inevitable transactions: their side effects happen exactly once, even under contention,
//! and only one runs at a time.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use common::stm;

#[test]
fn side_effects_after_become_inevitable_happen_exactly_once() {
    let stm = stm(2);
    let counter = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let effects = Mutex::new(Vec::new());
    let threads = 3;
    let per_thread = 400;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stm, counter, effects) = (&stm, &counter, &effects);
            s.spawn(move || {
                for i in 0..per_thread {
                    stm.atomically(|tx| {
                        let c = counter.get(tx);
                        let v = c.get();
                        c.set(v + 1);
                        if i % 4 == 0 {
                            tx.become_inevitable();
                            // An irreversible effect: must never be repeated.
                            effects.lock().unwrap().push((t, i, v));
                        }
                    });
                }
            });
        }
    });
    let effects = effects.into_inner().unwrap();
    assert_eq!(effects.len(), threads * per_thread / 4);
    let mut seen = effects.iter().map(|&(t, i, _)| (t, i)).collect::<Vec<_>>();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), effects.len(), "an effect ran twice");
    // The value each inevitable transaction read is the one it committed on: all distinct.
    let mut vs = effects.iter().map(|&(_, _, v)| v).collect::<Vec<_>>();
    vs.sort();
    vs.dedup();
    assert_eq!(vs.len(), effects.len());
    let total = stm.atomically(|tx| counter.get(tx).get());
    assert_eq!(total, (threads * per_thread) as u64);
    assert!(stm.stats().inevitable >= effects.len() as u64);
}

#[test]
fn at_most_one_inevitable_transaction_at_a_time() {
    let stm = stm(2);
    let inside = AtomicUsize::new(0);
    let overlap = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..200 {
                    stm.atomically(|tx| {
                        tx.become_inevitable();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlap.store(true, Ordering::SeqCst);
                        }
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
    });
    assert!(!overlap.load(Ordering::SeqCst));
}

#[test]
fn repeated_losers_become_inevitable_and_finish() {
    // A long transaction that keeps losing to short ones must still commit (progress).
    if !stm_runtime::BARRIERS {
        return; // GIL mode: nothing ever conflicts.
    }
    let stm = stm_runtime::Stm::builder()
        .segments(2)
        .heap_size(16 << 20)
        .inevitable_after(3)
        .build()
        .unwrap();
    let x = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let long_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !long_done.load(Ordering::Acquire) {
                stm.atomically(|tx| x.get(tx).update(|v| *v += 1));
            }
        });
        s.spawn(|| {
            let mut attempts = 0;
            stm.atomically(|tx| {
                attempts += 1;
                let v = x.get(tx).get();
                // Long enough that the short writer commits meanwhile.
                for _ in 0..2_000 {
                    std::thread::yield_now();
                    if tx.is_inevitable() {
                        break;
                    }
                }
                x.get(tx).set(v + 1_000_000);
            });
            long_done.store(true, Ordering::Release);
        });
    });
    let s = stm.stats();
    assert!(s.inevitable_by_policy <= 1);
    assert!(stm.atomically(|tx| x.get(tx).get()) >= 1_000_000);
}
