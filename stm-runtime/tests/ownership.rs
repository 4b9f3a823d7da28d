//! Segment ownership with biasing (`src/owner.rs`): a thread that keeps using a segment keeps
//! it biased to itself between transactions, and every other user of segments (another
//! thread, the collector) must still get it, without ever sharing it with its owner.
//! Runs in STM mode and, with `--features stm-runtime/gil`, in GIL mode.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::stm;
use stm_runtime::{Root, Stm};

/// How long a step that must finish may take before the test calls it stuck (a liveness
/// bound, not a speed measurement: the steps take milliseconds).
const STUCK: Duration = Duration::from_secs(120);

fn increment(stm: &Stm, counter: &Root<u64>, times: usize) {
    for _ in 0..times {
        stm.atomically(|tx| {
            let c = counter.get(tx);
            c.set(c.get() + 1);
        });
    }
}

fn value(stm: &Stm, counter: &Root<u64>) -> u64 {
    stm.atomically(|tx| counter.get(tx).get())
}

/// Runs `f` on another thread and fails the test if it does not finish.
fn must_finish(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(STUCK)
        .unwrap_or_else(|_| panic!("{what} did not finish: a biased segment was never given up"));
}

#[test]
fn an_idle_owners_biased_segment_serves_other_threads() {
    let stm: &'static Stm = Box::leak(Box::new(stm(1)));
    let counter: &'static Root<u64> =
        Box::leak(Box::new(stm.atomically(|tx| tx.root(tx.alloc(0u64)))));
    // The owner uses the only segment many times in a row (it becomes biased to it), then
    // stays alive without running transactions until told to go on.
    let (go_on, wait) = mpsc::channel::<()>();
    let (idle, is_idle) = mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        increment(stm, counter, 100);
        idle.send(()).unwrap();
        wait.recv().unwrap();
        increment(stm, counter, 100);
    });
    is_idle.recv().unwrap();
    must_finish("a transaction of another thread", move || {
        increment(stm, counter, 100)
    });
    must_finish("a collection", move || {
        stm.collect();
    });
    go_on.send(()).unwrap();
    owner.join().unwrap();
    assert_eq!(value(stm, counter), 300);
}

#[test]
fn threads_taking_turns_on_few_segments_lose_no_update() {
    // Bursts long enough for a segment to become biased, with pauses in which another thread
    // must revoke the bias; a collector thread takes every segment now and then.
    for segments in [1, 2] {
        let stm = stm(segments);
        let counter = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..40 {
                        increment(&stm, &counter, 25);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..10 {
                    stm.collect();
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        });
        assert_eq!(value(&stm, &counter), 3 * 40 * 25, "{segments} segments");
    }
}

#[test]
fn a_thread_that_exits_leaves_its_segment_usable() {
    // The exited thread's bias slot goes to a later thread; its segment must serve everyone.
    let stm = stm(1);
    let counter = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    for _ in 0..4 {
        std::thread::scope(|s| {
            s.spawn(|| increment(&stm, &counter, 50));
        });
    }
    increment(&stm, &counter, 50);
    std::thread::scope(|s| {
        s.spawn(|| increment(&stm, &counter, 50));
        s.spawn(|| increment(&stm, &counter, 50));
    });
    assert_eq!(value(&stm, &counter), 7 * 50);
}
