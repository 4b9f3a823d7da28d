//! Long-running code as a series of transactions (`Stm::run_in_transactions`): many commits
//! at break points, no lost update, steps atomic, state restored after aborts.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use common::stm;
use stm_runtime::Stm;

#[test]
fn a_long_loop_from_two_threads_loses_no_update_and_commits_often() {
    let stm = stm(2);
    let cells: Vec<_> = stm.atomically(|tx| (0..4).map(|_| tx.root(tx.alloc(0u64))).collect());
    let n = 20_000u64;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (stm, cells) = (&stm, &cells);
            s.spawn(move || {
                stm_runtime::set_thread_budget(64);
                stm.run_in_transactions(0u64, |tx, i| {
                    cells[((*i + t) % 4) as usize].get(tx).update(|v| *v += 1);
                    *i += 1;
                    if *i == n {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
            });
        }
    });
    let total: u64 = stm.atomically(|tx| cells.iter().map(|c| c.get(tx).get()).sum());
    assert_eq!(total, 2 * n, "no lost update");
    let s = stm.stats();
    // 2 x 20 000 steps from a budget of 64 that grows by a quarter per commit: dozens of
    // transactions, each cut at a break point.
    assert!(s.break_commits >= 20, "{s}");
}

#[test]
fn a_step_is_atomic_and_never_observed_half_done() {
    let stm = stm(2);
    let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(1_000i64)), tx.root(tx.alloc(0i64))));
    let torn = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            stm.run_in_transactions(0u32, |tx, i| {
                // One step, two writes: the invariant a + b == 1000 holds between steps.
                a.get(tx).update(|v| *v -= 1);
                b.get(tx).update(|v| *v += 1);
                *i += 1;
                if *i == 1_000 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
        s.spawn(|| {
            stm.run_in_transactions(0u32, |tx, i| {
                if a.get(tx).get() + b.get(tx).get() != 1_000 {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
                *i += 1;
                if *i == 5_000 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
    });
    assert_eq!(torn.load(Ordering::Relaxed), 0);
    assert_eq!(
        stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get())),
        (0, 1_000)
    );
}

#[test]
fn after_an_abort_the_state_is_restored_from_the_last_commit() {
    // Fault injection aborts attempts at random; the loop-carried state must count each
    // step's effect exactly once anyway.
    let stm = Stm::builder()
        .segments(1)
        .heap_size(1 << 20)
        .inject_faults(0.05)
        .build()
        .unwrap();
    let total = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    stm_runtime::set_thread_budget(16);
    let (steps, local_sum) = stm.run_in_transactions((0u64, 0u64), |tx, (i, sum)| {
        *i += 1;
        *sum += *i;
        total.get(tx).update(|t| *t += *i);
        if *i == 2_000 {
            ControlFlow::Break((*i, *sum))
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(steps, 2_000);
    assert_eq!(local_sum, 2_000 * 2_001 / 2);
    assert_eq!(stm.atomically(|tx| total.get(tx).get()), local_sum);
    let s = stm.stats();
    assert!(s.aborts_injected > 0 && s.break_commits > 0, "{s}");
    // The budget adapts: it shrinks after aborts and never leaves 1..=MAX_BUDGET.
    let b = stm_runtime::thread_budget();
    assert!((1..=stm_runtime::MAX_BUDGET).contains(&b));
}

/// A series that loses a conflict retries with half its steps, so that it fits between the
/// winner's commits: here the first attempt of 8 steps loses, and the retry commits 4, where
/// the same budget rerun would have committed all 8 at once.
#[test]
fn an_attempt_that_lost_retries_with_half_the_steps() {
    if !stm_runtime::BARRIERS {
        // GIL mode: one segment and no conflicts; the conflicting transaction would wait for
        // the series' segment.
        return;
    }
    let stm = Stm::builder()
        .segments(2)
        .heap_size(1 << 20)
        .build()
        .unwrap();
    let x = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let y = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    stm_runtime::set_thread_budget(8);
    let calls = std::sync::atomic::AtomicU32::new(0);
    let before = stm.stats().commits;
    stm.run_in_transactions(0u32, |tx, n| {
        let seen = x.get(tx).get();
        y.get(tx).set(seen);
        if calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            // Another thread commits a write to what this attempt read: it will abort.
            std::thread::scope(|s| {
                s.spawn(|| stm.atomically(|tx| x.get(tx).set(1)));
            });
        }
        *n += 1;
        if *n == 8 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let series_commits = stm.stats().commits - before - 1;
    // The retry stopped after 4 steps (then the rest ran in one or more transactions).
    assert!(
        series_commits >= 2,
        "{series_commits} commits, {} calls",
        calls.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 16);
}
