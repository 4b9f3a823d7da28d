//! `TQueue`: every item comes out exactly once (one thread against a model, several threads
//! with injected aborts and collections), and pops from two threads do not conflict.
//!
//! The queue's lanes are chosen per thread, in the order threads first use a queue; this
//! binary starts few threads, so the threads of one test never share a first lane.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use common::Rng;
use stm_runtime::{self as stm, Gc, GcQueue, Stm, TQueue, QUEUE_LANES};

#[test]
fn one_thread_gets_back_what_it_put_in() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(16 << 20)
        .build()
        .unwrap();
    let q = stm.atomically(|tx| tx.root(GcQueue::<u64>::new(tx).as_gc()));
    let mut model: BTreeMap<u64, u32> = BTreeMap::new();
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut held = 0usize;
    for round in 0..400u64 {
        // A transaction of a few pushes and pops, rolled back one time in five.
        let ops: Vec<u64> = (0..rng.next() % 8 + 1).map(|_| rng.next()).collect();
        let keep = round % 5 != 0;
        let got = stm.try_atomically(|tx| {
            let q = GcQueue::from_root(tx, &q);
            let mut out = Vec::new();
            for &op in &ops {
                if op % 3 == 0 {
                    out.push((false, q.pop()));
                } else {
                    q.push(op);
                    out.push((true, Some(op)));
                }
            }
            if keep {
                Ok(out)
            } else {
                Err(())
            }
        });
        let Ok(out) = got else { continue };
        for (pushed, v) in out {
            match (pushed, v) {
                (true, Some(v)) => {
                    *model.entry(v).or_default() += 1;
                    held += 1;
                }
                (false, Some(v)) => {
                    let n = model
                        .get_mut(&v)
                        .expect("popped an item that is not queued");
                    *n -= 1;
                    if *n == 0 {
                        model.remove(&v);
                    }
                    held -= 1;
                }
                (false, None) => assert_eq!(held, 0, "pop said empty with {held} queued"),
                (true, None) => unreachable!(),
            }
        }
        assert_eq!(stm.atomically(|tx| GcQueue::from_root(tx, &q).len()), held);
    }
    // Drain: exactly the model comes out.
    while let Some(v) = stm.atomically(|tx| GcQueue::from_root(tx, &q).pop()) {
        let n = model
            .get_mut(&v)
            .expect("drained an item that is not queued");
        *n -= 1;
        if *n == 0 {
            model.remove(&v);
        }
    }
    assert!(model.is_empty(), "left behind: {model:?}");
    assert!(stm.atomically(|tx| GcQueue::from_root(tx, &q).is_empty()));
}

#[stm::object]
struct Job {
    id: u64,
    done: bool,
}

#[stm::object]
struct Pool {
    jobs: TQueue<Gc<Job>>,
    taken: u64,
}

/// Producers and consumers at once, with injected aborts and a heap small enough to collect
/// often: each job is taken exactly once, and the queue (a field of an object) keeps its
/// handles alive across collections.
#[test]
fn threads_take_each_job_exactly_once() {
    let stm = Stm::builder()
        .segments(3)
        .heap_size(4 << 20)
        .inject_faults(0.02)
        .build()
        .unwrap();
    let pool = stm.atomically(|tx| {
        let jobs = TQueue::<stm::GcRef<Job>>::new(tx);
        tx.root(stm::alloc!(
            tx,
            Pool {
                jobs: jobs,
                taken: 0
            }
        ))
    });
    const PER_PRODUCER: u64 = 600;
    let seen: Vec<AtomicU32> = (0..2 * PER_PRODUCER).map(|_| AtomicU32::new(0)).collect();
    std::thread::scope(|s| {
        for p in 0..2u64 {
            let (stm, pool) = (&stm, &pool);
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    stm.atomically(|tx| {
                        let job = tx.alloc(Job {
                            id: p * PER_PRODUCER + i,
                            done: false,
                        });
                        add(pool.get(tx), job);
                    });
                }
            });
        }
        for _ in 0..2 {
            let (stm, pool, seen) = (&stm, &pool, &seen);
            s.spawn(move || {
                let mut taken = 0;
                while taken < PER_PRODUCER {
                    let id = stm.atomically(|tx| take(pool.get(tx)));
                    if let Some(id) = id {
                        seen[id as usize].fetch_add(1, Ordering::Relaxed);
                        taken += 1;
                    }
                    if taken % 64 == 0 {
                        stm.collect();
                    }
                }
            });
        }
    });
    for (id, n) in seen.iter().enumerate() {
        assert_eq!(n.load(Ordering::Relaxed), 1, "job {id}");
    }
    let (taken, left) = stm.atomically(|tx| counts(pool.get(tx)));
    assert_eq!((taken, left), (2 * PER_PRODUCER, 0));
}

/// Two transactions on two threads each pop a job while both are running: the first commits
/// without an abort, because they took from different lanes. The same shape with one shared
/// cursor conflicts (the test can tell).
#[test]
fn pops_from_two_threads_do_not_conflict() {
    if !stm_runtime::BARRIERS {
        // GIL mode: one segment and no conflicts; the second transaction would wait for the
        // first's segment.
        return;
    }
    let stm = Stm::builder()
        .segments(2)
        .heap_size(8 << 20)
        .build()
        .unwrap();
    let (q, cursor) = stm.atomically(|tx| {
        let q = GcQueue::<u64>::new(tx);
        for j in 0..4 * QUEUE_LANES as u64 {
            q.push(j);
        }
        (tx.root(q.as_gc()), tx.root(tx.alloc(0u64)))
    });
    // The same operation in both transactions; they took different items.
    let attempts_with = |take: &(dyn Fn(&stm::Tx) -> u64 + Sync)| -> u32 {
        let (attempts, a, b) = common::attempts_around(&stm, |tx, _| take(tx), take);
        assert_ne!(a, b);
        attempts
    };
    let pop = |tx: &stm::Tx| GcQueue::from_root(tx, &q).pop().expect("a job");
    assert_eq!(
        attempts_with(&pop),
        1,
        "two pops from different lanes conflicted"
    );
    let shared = |tx: &stm::Tx| {
        cursor.get(tx).update(|c| {
            *c += 1;
            *c
        })
    };
    assert_eq!(attempts_with(&shared), 2, "a shared cursor must conflict");
}

#[stm::transactional]
fn add(pool: Gc<Pool>, job: Gc<Job>) {
    pool.jobs.push(job);
}

#[stm::transactional]
fn take(pool: Gc<Pool>) -> Option<u64> {
    let job = pool.jobs.pop()?;
    let id = job.id;
    assert!(!job.done, "job {id} taken twice");
    job.done = true;
    pool.taken += 1;
    Some(id)
}

#[stm::transactional]
fn counts(pool: Gc<Pool>) -> (u64, usize) {
    (pool.taken, pool.jobs.len())
}

#[stm::object]
struct Big {
    bytes: [u64; 60],
}

/// What was popped is not kept alive: not by a lane that has not drained, not by a drained
/// lane's cards, not by a vector's slots past its length.
#[test]
fn popped_items_are_garbage() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(32 << 20)
        .build()
        .unwrap();
    let q = stm.atomically(|tx| {
        let q = GcQueue::<stm::GcRef<Big>>::new(tx);
        for _ in 0..2000 {
            q.push(tx.alloc(Big { bytes: [7; 60] }));
        }
        tx.root(q.as_gc())
    });
    let full = stm.collect().live_bytes;
    assert!(full > 2000 * 480, "{full}");
    // Half of them out (no lane drained), then the rest (every lane drained).
    for _ in 0..1000 {
        stm.atomically(|tx| {
            GcQueue::from_root(tx, &q).pop().expect("queued");
        });
    }
    let half = stm.collect().live_bytes;
    assert!(
        half < full * 6 / 10,
        "after 1000 of 2000 pops: {half} of {full} bytes live"
    );
    while stm.atomically(|tx| GcQueue::from_root(tx, &q).pop().is_some()) {}
    let none = stm.collect().live_bytes;
    assert!(none < 64 << 10, "an empty queue keeps {none} bytes live");

    let v = stm.atomically(|tx| {
        let v = stm::GcVec::<stm::GcRef<Big>>::new(tx);
        for _ in 0..1000 {
            v.push(tx.alloc(Big { bytes: [1; 60] }));
        }
        tx.root(v.as_gc())
    });
    let before = stm.collect().live_bytes;
    stm.atomically(|tx| {
        let v = stm::GcVec::from_root(tx, &v);
        for _ in 0..500 {
            v.pop();
        }
    });
    let popped = stm.collect().live_bytes;
    assert!(
        popped < before * 6 / 10,
        "after 500 of 1000 pops: {popped} of {before} bytes"
    );
    stm.atomically(|tx| stm::GcVec::from_root(tx, &v).clear());
    let cleared = stm.collect().live_bytes;
    assert!(
        cleared < 64 << 10,
        "a cleared vector keeps {cleared} bytes live"
    );
}
