//! The transaction queue: every task runs once, tasks add tasks, additions of aborted
//! attempts vanish, panics come back from `run`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use common::stm;
use stm_runtime::{Tasks, TransactionQueue, Tx};

#[test]
fn tasks_that_add_tasks_all_run_once() {
    let stm = stm(2);
    let count = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let queue = TransactionQueue::new(&stm);
    fn spawn_tree<'a>(
        depth: u32,
        count: &'a stm_runtime::Root<u64>,
    ) -> impl FnMut(&Tx, &mut Tasks<'a>) + Send + 'a {
        move |tx, tasks| {
            count.get(tx).update(|c| *c += 1);
            if depth > 0 {
                tasks.add(spawn_tree(depth - 1, count));
                tasks.add(spawn_tree(depth - 1, count));
            }
        }
    }
    queue.add(spawn_tree(9, &count));
    let report = queue.run(2);
    assert_eq!(report.tasks, (1 << 10) - 1);
    assert_eq!(stm.atomically(|tx| count.get(tx).get()), (1 << 10) - 1);
    assert!(report.stats.commits >= report.tasks);
    assert!(queue.is_empty());
}

#[test]
fn tasks_added_by_an_aborted_attempt_vanish() {
    let stm = stm(2);
    let cell = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let ghosts = AtomicU64::new(0);
    let attempts = AtomicU32::new(0);
    let queue = TransactionQueue::new(&stm);
    queue.add(|tx, tasks| {
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            tasks.add(|_, _| {
                ghosts.fetch_add(1, Ordering::SeqCst);
            });
            tx.retry(); // this attempt is abandoned, and its added task with it
        }
        cell.get(tx).update(|v| *v += 10);
    });
    let other = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        // Commits after the first attempt started wake the retrying task. (One commit is not
        // enough: it may land before the retry looks at the commit count, and then nothing
        // the task read changes again.)
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if attempts.load(Ordering::SeqCst) > 0 {
                    stm.atomically(|tx| other.get(tx).update(|v| *v += 1));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let report = queue.run(1);
        done.store(true, Ordering::SeqCst);
        report
    });
    assert_eq!(report.tasks, 1);
    assert_eq!(ghosts.load(Ordering::SeqCst), 0);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 10);
}

#[test]
fn a_panicking_task_stops_the_run_and_the_panic_comes_back() {
    let stm = stm(2);
    let cell = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let queue = TransactionQueue::new(&stm);
    for i in 0..50u64 {
        let cell = &cell;
        queue.add(move |tx, _| {
            cell.get(tx).set(i);
            if i == 25 {
                panic!("task 25 failed");
            }
        });
    }
    let err = catch_unwind(AssertUnwindSafe(|| queue.run(2))).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"task 25 failed"));
    assert!(queue.is_empty(), "the remaining tasks are dropped");
    // The runtime and the queue still work.
    queue.add(|tx, _| cell.get(tx).set(1_000));
    assert_eq!(queue.run(1).tasks, 1);
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 1_000);
}

#[test]
fn queued_transfers_conserve_the_total() {
    let stm = stm(2);
    let accounts: Vec<_> = stm.atomically(|tx| (0..8).map(|_| tx.root(tx.alloc(100i64))).collect());
    let queue = TransactionQueue::new(&stm);
    for i in 0..2_000usize {
        let accounts = &accounts;
        queue.add(move |tx, _| {
            let (a, b) = (accounts[i % 8].get(tx), accounts[(i * 7 + 3) % 8].get(tx));
            if a.get() >= 5 && !a.ptr_eq(b) {
                a.set(a.get() - 5);
                b.set(b.get() + 5);
            }
        });
    }
    let report = queue.run(3);
    assert_eq!(report.tasks, 2_000);
    let total: i64 = stm.atomically(|tx| accounts.iter().map(|a| a.get(tx).get()).sum());
    assert_eq!(total, 800);
}

/// The two orders, on one worker: LIFO runs the newest task first, FIFO the oldest, and a
/// task's follow-ups go after the tasks already waiting.
#[test]
fn workers_take_tasks_in_the_queues_order() {
    use std::sync::Mutex;
    use stm_runtime::QueueOrder;
    for (order, expected) in [
        // The follow-ups are added in order, and the newest (32) is taken first.
        (QueueOrder::Lifo, vec![3, 32, 31, 2, 1]),
        (QueueOrder::Fifo, vec![1, 2, 3, 31, 32]),
    ] {
        let stm = common::stm(1);
        let seen = Mutex::new(Vec::new());
        let queue = TransactionQueue::with_order(&stm, order);
        for i in 1..=3u32 {
            let seen = &seen;
            queue.add(move |tx, tasks| {
                tx.become_inevitable(); // the log is outside the heap: record once
                seen.lock().unwrap().push(i);
                if i == 3 {
                    for j in [31u32, 32] {
                        tasks.add(move |tx, _| {
                            tx.become_inevitable();
                            seen.lock().unwrap().push(j);
                        });
                    }
                }
            });
        }
        queue.run(1);
        drop(queue);
        assert_eq!(seen.into_inner().unwrap(), expected, "{order:?}");
    }
}

/// A worker keeps the tasks its own commits add (no trip through the queue's lock), but a
/// worker that runs out gets half of them: one task that adds 64 slow ones keeps two workers
/// busy, not one.
#[test]
fn tasks_added_by_one_worker_are_shared_with_a_hungry_one() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    let stm = stm(2);
    let ran_on = Mutex::new(HashSet::new());
    let queue = TransactionQueue::new(&stm);
    let ran = &ran_on;
    queue.add(move |_, tasks| {
        for _ in 0..64 {
            tasks.add(move |tx, _| {
                tx.become_inevitable(); // records once, and sleeps outside any retry
                ran.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_millis(2));
            });
        }
    });
    assert_eq!(queue.run(2).tasks, 65);
    drop(queue);
    assert_eq!(
        ran_on.into_inner().unwrap().len(),
        2,
        "both workers ran tasks"
    );
}

/// A task that waits (`retry`) for another task of the same worker's deque: the idle worker
/// steals the other one, so the run ends instead of hanging.
#[test]
fn a_waiting_task_does_not_hold_back_the_tasks_behind_it() {
    let stm = stm(2);
    let flag = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let queue = TransactionQueue::new(&stm);
    let f = &flag;
    queue.add(move |_, tasks| {
        // LIFO: the consumer (added last) runs first, in the worker that ran this task.
        tasks.add(move |tx, _| f.get(tx).set(1));
        tasks.add(move |tx, _| {
            if f.get(tx).get() == 0 {
                tx.retry();
            }
        });
    });
    assert_eq!(queue.run(2).tasks, 3);
}

/// A task whose captured value panics when dropped is a panicking task: the run stops and
/// the panic comes back (it does not leave the other workers waiting forever).
#[test]
fn a_panicking_drop_of_a_task_stops_the_run() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("bomb");
            }
        }
    }
    let stm = stm(2);
    let queue = TransactionQueue::new(&stm);
    for _ in 0..8 {
        queue.add(|_, _| {});
    }
    let bomb = Bomb;
    queue.add(move |_, _| {
        let _ = &bomb;
    });
    let err = catch_unwind(AssertUnwindSafe(|| queue.run(2))).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"bomb"));
}
