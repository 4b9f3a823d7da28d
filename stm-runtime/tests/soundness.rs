//! The adversarial suite of the runtime API (issue 13): one test per class of hole that safe
//! user code could open, written the way an attacker writes it. The macro-level classes
//! (`crate = path`, barrier elision, write-back guards, `#[in_transactions]`) are in
//! `stm-macros/tests/soundness.rs`; the ones whose fix is a compile error are trybuild cases in
//! `tests/ui` and `stm-macros/tests/ui`.
//!
//! Each test fails on the code before the fix (`f15fdc4`): it asserts the refusal, the value
//! or the liveness that the hole broke.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use stm_runtime::{GcRef, GcVec, Object, Stm, Tracer, TransactionQueue, Tx};

mod common;

fn stm(segments: usize) -> Stm {
    common::stm(segments)
}

/// The text of a panic payload.
fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `f`, which must panic with a message containing `needle`.
fn panics_with(needle: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let msg = message(&*err);
    assert!(msg.contains(needle), "unexpected panic message: {msg}");
}

// ---- Class 1: a handle's lifetime must identify its transaction ----

/// Two runtimes nested on one thread: the caller could unify the handles' lifetimes by
/// shortening the two `&Tx` and store a handle of one heap into an object of the other. A
/// transaction of another runtime cannot start inside a transaction at all.
/// Runs `t1` on another thread and `between` on this one while `t1` is paused: the first
/// call of the `pause` that `t1` gets waits until `between` (a commit) has run, later calls
/// return at once. For an attempt that reads, lets another transaction commit, then meets
/// the conflict.
fn with_a_commit_between<R: Send>(
    t1: impl FnOnce(&dyn Fn()) -> R + Send,
    between: impl FnOnce(),
) -> R {
    let (to_main, from_t1) = mpsc::channel::<()>();
    let (to_t1, from_main) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let paused = std::cell::Cell::new(false);
            let pause = || {
                if !paused.replace(true) {
                    to_main.send(()).unwrap();
                    from_main.recv().unwrap();
                }
            };
            t1(&pause)
        });
        from_t1.recv().unwrap();
        between();
        to_t1.send(()).unwrap();
        h.join().unwrap()
    })
}

#[test]
fn class1_a_transaction_of_another_runtime_cannot_start_inside_one() {
    let (a, b) = (stm(2), stm(2));
    let in_a = a.atomically(|tx| tx.root(tx.alloc(7u64)));
    panics_with("cannot start inside a transaction of", || {
        a.atomically(|ta| {
            b.atomically(|tb| {
                // The attack: both `&Tx` shortened to one lifetime, then a handle of `a`'s
                // heap pushed into a vector of `b`'s.
                let (ta, tb): (&Tx, &Tx) = (ta, tb);
                let x = in_a.get(ta);
                let v = GcVec::<Option<GcRef<u64>>>::new(tb);
                v.push(Some(x));
                tb.root(v.as_gc())
            })
        });
    });
    // A -> B -> A: the inner A would not join the outer one (the innermost is B's).
    panics_with("cannot start inside a transaction of", || {
        a.atomically(|_| b.atomically(|_| a.atomically(|_| ())));
    });
    // Both runtimes are still usable, and nothing of the refused attempts committed.
    assert_eq!(a.atomically(|tx| in_a.get(tx).get()), 7);
    assert_eq!(b.stats().commits, 0);
    // Nesting within one runtime joins (flat nesting), as before.
    assert_eq!(a.atomically(|_| a.atomically(|tx| in_a.get(tx).get())), 7);
}

// ---- Class 2: `Tx::or_else` ----

/// `first` writes an object that the attempt allocated before `or_else`, then retries: the
/// write must be undone (objects the attempt allocated had no before-image).
#[test]
fn class2_or_else_undoes_writes_to_objects_allocated_before_it() {
    let stm = stm(1);
    let root = stm.atomically(|tx| {
        let o = tx.alloc(1u64);
        tx.or_else(
            |tx| {
                o.set(5);
                tx.retry()
            },
            |_| (),
        );
        assert_eq!(o.get(), 1, "or_else kept a write of `first`");
        tx.root(o)
    });
    assert_eq!(stm.atomically(|tx| root.get(tx).get()), 1);
}

/// `first` allocates, keeps the handle where its caller can reach it, and retries. The
/// object must stay a valid object of its type: its space must not be handed out again (the
/// old code reset the bump pointer, so `second`'s allocation overwrote it).
#[test]
fn class2_objects_allocated_in_first_stay_valid_after_it_retries() {
    let stm = stm(1);
    let (kept, other) = stm.atomically(|tx| {
        let mut kept = None;
        let other = tx.or_else(
            |tx| {
                kept = Some(tx.alloc(0xAAAA_u64));
                tx.retry()
            },
            |tx| tx.alloc(0xBBBB_u64),
        );
        let kept = kept.expect("first ran");
        assert!(!kept.ptr_eq(other), "the same space handed out twice");
        assert_eq!(kept.get(), 0xAAAA);
        (tx.root(kept), tx.root(other))
    });
    // The root of the object `first` allocated is valid once the attempt commits (the old code
    // left it pending forever: `Root::get` restarted in a loop).
    assert_eq!(
        stm.atomically(|tx| (kept.get(tx).get(), other.get(tx).get())),
        (0xAAAA, 0xBBBB)
    );
}

/// `or_else` inside `first` of another: each level undoes only its own writes.
#[test]
fn class2_nested_or_else_undoes_each_level() {
    let stm = stm(1);
    let v = stm.atomically(|tx| {
        let o = tx.alloc(0u64);
        let r = tx.or_else(
            |tx| {
                o.set(1);
                tx.or_else(
                    |tx| {
                        o.set(2);
                        tx.retry()
                    },
                    |_| o.get(),
                )
            },
            |_| 99,
        );
        (r, o.get())
    });
    assert_eq!(v, (1, 1));
}

/// User code that catches the runtime's retry unwind and goes on cannot commit what it asked
/// to abandon: the transaction fails with a message saying why.
#[test]
fn class2_a_swallowed_retry_does_not_commit() {
    let stm = stm(1);
    let c = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    panics_with("caught an unwind of the runtime", || {
        stm.atomically(|tx| {
            c.get(tx).set(1);
            let _ = catch_unwind(AssertUnwindSafe(|| tx.retry()));
        })
    });
    assert_eq!(stm.atomically(|tx| c.get(tx).get()), 0);
}

// ---- Class 7: hangs ----

/// `collect` inside a transaction (here of another runtime, inside one of its own) waited for
/// its own segment forever; it is refused, and both runtimes go on.
#[test]
fn class7_collect_inside_any_transaction_is_refused() {
    let (a, b) = (stm(1), stm(1));
    panics_with("cannot be called inside a transaction", || {
        b.atomically(|_| {
            a.collect();
        });
    });
    panics_with("cannot be called inside a transaction", || {
        a.atomically(|_| {
            a.collect();
        });
    });
    assert_eq!(a.collect().collections, 1);
    assert_eq!(b.atomically(|tx| tx.alloc(3u8).get()), 3);
}

/// An object type whose `trace` panics (an `unsafe impl` can do that; so could a bug): the
/// collection fails, and the runtime must not stay blocked with every segment taken.
#[derive(Clone, Copy)]
struct Bomb(#[allow(dead_code)] u64);

// SAFETY: holds no handles (the empty trace would be complete); this one panics instead, which
// is what the test needs.
unsafe impl Object for Bomb {
    fn trace(&self, _: &mut Tracer) {
        panic!("trace exploded");
    }
}

#[test]
fn class7_a_panic_in_the_collector_leaves_the_runtime_usable() {
    let stm = stm(2);
    let bomb = stm.atomically(|tx| tx.root(tx.alloc(Bomb(1))));
    panics_with("trace exploded", || {
        stm.collect();
    });
    // Transactions run again (the old code left every segment owned: this waited forever).
    let n = stm.atomically(|tx| {
        let _ = bomb.get(tx);
        tx.alloc(5u64).get()
    });
    assert_eq!(n, 5);
    drop(bomb);
    assert_eq!(stm.collect().live_objects, 0);
}

/// A root handed to another thread while the transaction that allocated its object still
/// runs: `Root::get` there waits for that transaction (without holding a segment) and then
/// sees the object.
#[test]
fn class7_a_root_pending_in_another_thread_is_waited_for() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: one transaction at a time, so the writer cannot wait for us
    }
    let stm = stm(2);
    let (to_reader, from_writer) = mpsc::channel();
    let (to_writer, from_reader) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let stm = &stm;
        s.spawn(move || {
            stm.atomically(|tx| {
                let r = tx.root(tx.alloc(41u64));
                // An irreversible effect (the root leaves the transaction): inevitable first.
                tx.become_inevitable();
                r.get(tx).set(42);
                to_reader.send(r).unwrap();
                // Commit only once the reader has started to look.
                from_reader.recv().unwrap();
            });
        });
        let r = from_writer.recv().unwrap();
        let seen = stm.atomically(|tx| {
            let _ = to_writer.send(());
            r.get(tx).get()
        });
        assert_eq!(seen, 42);
    });
}

// ---- Class 8: a queue run inside a transaction ----

/// `TransactionQueue::run` inside a transaction ran the tasks, and the enclosing transaction
/// then went on from a snapshot that did not contain their commits. It is refused.
#[test]
fn class8_a_queue_run_inside_a_transaction_is_refused() {
    let stm = stm(2);
    let total = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let queue = TransactionQueue::new(&stm);
    for _ in 0..4 {
        let total = &total;
        queue.add(move |tx, _| total.get(tx).update(|t| *t += 1));
    }
    panics_with("cannot be called inside a transaction", || {
        stm.atomically(|_| {
            queue.run(2);
        });
    });
    // Outside a transaction it runs as usual.
    assert_eq!(queue.run(2).tasks, 4);
    assert_eq!(stm.atomically(|tx| total.get(tx).get()), 4);
}

// ---- Found by review ----

/// An inevitable transaction whose code has done its irreversible effect, then asks for a root
/// whose object another thread's running transaction allocated: it could not wait (that one
/// cannot commit while we are inevitable) and must not run again (the effect would repeat).
/// It fails with a message; the effect happened once.
#[test]
fn review_an_inevitable_transaction_is_never_rerun_by_root_get() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: the other transaction cannot run while we do
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    let stm = stm(2);
    let effects = AtomicUsize::new(0);
    let (to_main, from_writer) = mpsc::channel();
    let (to_writer, from_main) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let stm = &stm;
        s.spawn(move || {
            stm.atomically(|tx| {
                // (Not inevitable: the main thread's transaction will be.)
                let r = tx.root(tx.alloc(5u64));
                to_main.send(r).unwrap();
                from_main.recv().unwrap(); // still running until main has tried
            })
        });
        let root = from_writer.recv().unwrap();
        panics_with("this transaction is inevitable", || {
            stm.atomically(|tx| {
                tx.become_inevitable();
                effects.fetch_add(1, Ordering::SeqCst);
                root.get(tx).get()
            });
        });
        to_writer.send(()).unwrap();
    });
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

/// A task's captured value whose `Drop` uses the queue: the worker dropped it while holding
/// the queue's lock, and the run never ended.
#[test]
fn review_a_task_dropped_by_a_worker_may_use_the_queue() {
    use std::sync::OnceLock;
    static QUEUE: OnceLock<TransactionQueue<'static>> = OnceLock::new();
    struct UsesQueue;
    impl Drop for UsesQueue {
        fn drop(&mut self) {
            let _ = QUEUE.get().expect("set").len();
        }
    }
    let stm = stm(2);
    let queue = QUEUE.get_or_init(|| TransactionQueue::new(&stm));
    let captured = UsesQueue;
    queue.add(move |_, _| {
        let _ = &captured;
    });
    assert_eq!(queue.run(1).tasks, 1);
}

/// A nested `or_else` disarmed the write barriers its enclosing checkpoint had armed, so a
/// write made in the outer `first` after it had no backup and survived the outer retry.
#[test]
fn review_a_nested_or_else_keeps_the_outer_checkpoint() {
    let stm = stm(1);
    let x = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let (seen, fresh) = stm.atomically(|tx| {
        let g = x.get(tx);
        g.set(1);
        let o = tx.alloc(5u64);
        let seen = tx.or_else(
            |tx| {
                tx.or_else(|_| (), |_| ());
                g.set(99);
                o.set(77);
                tx.retry()
            },
            |_| (g.get(), o.get()),
        );
        (seen, tx.root(o))
    });
    assert_eq!(seen, (1, 5));
    assert_eq!(
        stm.atomically(|tx| (x.get(tx).get(), fresh.get(tx).get())),
        (1, 5)
    );
}

/// The value of an attempt whose commit failed was dropped while the thread still owned its
/// segment: a `Drop` that collects (or starts a transaction) waited for that segment forever.
#[test]
fn review_the_value_of_a_failed_attempt_is_dropped_without_a_segment() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: no concurrent commit can fail ours
    }
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    struct CollectsOnDrop(Stm, bool);
    impl Drop for CollectsOnDrop {
        fn drop(&mut self) {
            if self.1 {
                self.0.collect();
            }
        }
    }
    let stm = stm(2);
    let (x, y) = stm.atomically(|tx| (tx.root(tx.alloc(0u64)), tx.root(tx.alloc(0u64))));
    let go = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let attempts = AtomicU32::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !go.load(SeqCst) {
                std::hint::spin_loop();
            }
            stm.atomically(|tx| x.get(tx).set(1));
            done.store(true, SeqCst);
        });
        let r = stm.atomically(|tx| {
            let first = attempts.fetch_add(1, SeqCst) == 0;
            let v = x.get(tx).get();
            y.get(tx).set(v + 1);
            if first {
                go.store(true, SeqCst);
                while !done.load(SeqCst) {
                    std::hint::spin_loop(); // the other commit conflicts with this attempt
                }
            }
            CollectsOnDrop(stm.clone(), first)
        });
        drop(r);
    });
    assert!(
        attempts.load(SeqCst) >= 2,
        "the first attempt must have failed to commit"
    );
    assert_eq!(stm.atomically(|tx| y.get(tx).get()), 2);
}

/// An attempt doomed by a conflict whose unwind the code swallowed could still become
/// inevitable, do its effect, then run again as a conflict: the effect ran twice.
#[test]
fn review_a_doomed_attempt_cannot_become_inevitable() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    let stm = Stm::builder()
        .segments(1)
        .heap_size(1 << 20)
        .inject_faults(0.5)
        .build()
        .unwrap();
    for _ in 0..20 {
        let effects = AtomicU32::new(0);
        stm.atomically(|tx| {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                for _ in 0..8 {
                    tx.alloc(1u64);
                }
            }));
            tx.become_inevitable();
            effects.fetch_add(1, SeqCst);
        });
        assert_eq!(effects.load(SeqCst), 1);
    }
}

// ---- The lazily filled segments (issue 16's protocol): found by an attacker review ----

/// An attempt that catches the conflict its first read of `b` raised (the import of `b`'s
/// new image found `a` changed) must not then read `b` as current beside its old `a`: the
/// second read imports and fails again, and the transaction reruns and sees both new.
#[test]
fn review_a_caught_conflict_does_not_leave_a_new_image_beside_old_reads() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: nothing commits while a transaction runs.
    }
    let stm = &stm(2);
    let (a, b) = &stm.atomically(|tx| (tx.root(tx.alloc(0u64)), tx.root(tx.alloc(0u64))));
    let seen = with_a_commit_between(
        |pause| {
            let mut first = true;
            let mut seen = Vec::new();
            stm.atomically(|tx| {
                let va = a.get(tx).get();
                if std::mem::take(&mut first) {
                    pause();
                    let once = catch_unwind(AssertUnwindSafe(|| b.get(tx).get()));
                    let twice = catch_unwind(AssertUnwindSafe(|| b.get(tx).get()));
                    seen.push((va, once.ok(), twice.ok()));
                } else {
                    seen.push((va, Some(b.get(tx).get()), None));
                }
            });
            seen
        },
        || {
            stm.atomically(|tx| {
                a.get(tx).set(1);
                b.get(tx).set(1);
            })
        },
    );
    assert_eq!(seen, vec![(0, None, None), (1, Some(1), None)]);
}

/// A destructor that writes a shared object while a conflict unwinds the attempt: its write
/// imports the object and finds the attempt's reads old, which must not unwind a second time
/// (that aborts the process). The attempt reruns, and the rerun's destructor counts once.
#[test]
fn review_a_barrier_in_a_destructor_during_a_conflict_unwind_does_not_abort() {
    if !stm_runtime::BARRIERS {
        return;
    }
    struct Tally<'tx>(stm_runtime::Gc<'tx, u64>);
    impl Drop for Tally<'_> {
        fn drop(&mut self) {
            self.0.update(|v| *v += 1);
        }
    }
    let stm = &stm(2);
    let (a, b, c) = &stm.atomically(|tx| {
        let r = |v| tx.root(tx.alloc(v));
        (r(0u64), r(0u64), r(0u64))
    });
    with_a_commit_between(
        |pause| {
            stm.atomically(|tx| {
                let _t = Tally(c.get(tx));
                let _ = a.get(tx).get();
                pause();
                let _ = b.get(tx).get(); // conflict: unwinds, and drops `_t`
            })
        },
        || {
            stm.atomically(|tx| {
                a.get(tx).set(1);
                b.get(tx).set(1);
                c.get(tx).set(10);
            })
        },
    );
    assert_eq!(stm.atomically(|tx| c.get(tx).get()), 11);
}

/// `Tx::become_inevitable` in a destructor that runs while a conflict unwinds the attempt
/// (a logging guard in `#[transactional]` code calls it before its `println!`): the attempt
/// is lost already and cannot become inevitable, and unwinding a second time aborted the
/// process. It now returns; the rerun's destructor runs again and the transaction commits.
/// (Found by an attacker review, session 11.)
#[test]
fn review_become_inevitable_in_a_destructor_during_a_conflict_unwind_does_not_abort() {
    if !stm_runtime::BARRIERS {
        return;
    }
    struct LogOnDrop<'tx>(&'tx Tx, &'tx std::sync::atomic::AtomicU32);
    impl Drop for LogOnDrop<'_> {
        fn drop(&mut self) {
            self.0.become_inevitable();
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stm = &stm(2);
    let drops = &std::sync::atomic::AtomicU32::new(0);
    let (a, c) = &stm.atomically(|tx| (tx.root(tx.alloc(0u64)), tx.root(tx.alloc(0u64))));
    let seen = with_a_commit_between(
        |pause| {
            stm.atomically(|tx| {
                let _log = LogOnDrop(tx, drops);
                let seen = a.get(tx).get();
                pause();
                let _ = c.get(tx).get(); // conflict: unwinds, and drops `_log`
                seen
            })
        },
        || {
            stm.atomically(|tx| {
                a.get(tx).set(1);
                c.get(tx).set(1);
            })
        },
    );
    assert_eq!(seen, 1, "the rerun sees the other commit");
    assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 2);
}
