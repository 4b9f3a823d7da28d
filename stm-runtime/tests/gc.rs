//! Reclamation: unreachable objects are freed and their space reused; reachable ones (from
//! roots, through handles and containers) survive intact; a long run at a steady live size
//! stays within a small heap.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use stm_runtime::{GcRef, GcVec, Root, Stm, VecHead};

fn small(segments: usize, heap: usize) -> Stm {
    Stm::builder()
        .segments(segments)
        .heap_size(heap)
        .build()
        .unwrap()
}

#[test]
fn unreachable_objects_are_freed_and_rooted_ones_kept() {
    let stm = small(1, 4 << 20);
    let kept = stm.atomically(|tx| tx.root(tx.alloc(42u64)));
    stm.atomically(|tx| {
        for i in 0..1000u64 {
            tx.alloc(i);
        }
    });
    let s = stm.collect();
    assert_eq!(s.collections, 1);
    assert_eq!(s.live_objects, 1);
    assert_eq!(s.freed_objects, 1000);
    assert_eq!(stm.atomically(|tx| kept.get(tx).get()), 42);
    drop(kept);
    let s = stm.collect();
    assert_eq!((s.live_objects, s.freed_objects), (0, 1));
}

#[test]
fn objects_reachable_through_containers_survive_and_freed_space_is_reused() {
    let stm = small(2, 4 << 20);
    // A vector of handles: the elements are reachable only through it.
    let v: Root<VecHead<Option<GcRef<u64>>>> = stm.atomically(|tx| {
        let v = GcVec::<Option<GcRef<u64>>>::new(tx);
        for i in 0..500u64 {
            v.push(Some(tx.alloc(i * 3)));
            tx.alloc(0u64); // garbage between the live objects
        }
        tx.root(v.as_gc())
    });
    let s = stm.collect();
    assert_eq!(s.freed_objects, 500);
    // Reuse the freed space, then check every element is intact.
    stm.atomically(|tx| {
        for i in 0..2000u64 {
            tx.alloc(i);
        }
    });
    let values: Vec<u64> = stm.atomically(|tx| {
        GcVec::<Option<GcRef<u64>>>::from_root(tx, &v)
            .to_vec()
            .into_iter()
            .map(|h| h.unwrap().get())
            .collect()
    });
    assert_eq!(values, (0..500).map(|i| i * 3).collect::<Vec<_>>());
    // Dropping an element's last link frees it at the next collection.
    stm.atomically(|tx| {
        GcVec::<Option<GcRef<u64>>>::from_root(tx, &v).set(0, None);
    });
    let s = stm.collect();
    assert!(s.freed_objects >= 2001, "{s:?}");
}

#[test]
fn a_steady_live_size_runs_forever_in_a_small_heap() {
    // 2 MiB of heap, 64 live cells, and about 6.5 MiB allocated in total by two threads.
    let stm = small(2, 2 << 20);
    let cells: Vec<Root<[u64; 15]>> =
        stm.atomically(|tx| (0..64).map(|i| tx.root(tx.alloc([i; 15]))).collect());
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (stm, cells) = (&stm, &cells);
            s.spawn(move || {
                for round in 0..800u64 {
                    stm.atomically(|tx| {
                        // Replace a cell's contents and make 32 garbage objects.
                        let c = cells[((round * 2 + t) % 64) as usize].get(tx);
                        let mut v = c.get();
                        v[0] += 1;
                        c.set(v);
                        for k in 0..32 {
                            tx.alloc([k; 15]);
                        }
                    });
                }
            });
        }
    });
    let s = stm.gc_stats();
    // 6.5 MiB allocated through a 2 MiB heap cannot fit without at least 3 collections.
    assert!(s.collections >= 3, "{s:?}");
    let total: u64 = stm.atomically(|tx| cells.iter().map(|c| c.get(tx).get()[0]).sum());
    assert_eq!(total, (0..64).sum::<u64>() + 1600);
    assert!(stm.atomically(|tx| cells
        .iter()
        .enumerate()
        .all(|(i, c)| c.get(tx).get()[1] == i as u64)));
}

#[test]
fn collecting_inside_a_transaction_is_refused() {
    let stm = small(1, 1 << 20);
    let err = catch_unwind(AssertUnwindSafe(|| stm.atomically(|_| stm.collect()))).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains("cannot be called inside a transaction"),
        "{msg}"
    );
    // Nothing is stuck afterwards.
    assert_eq!(stm.collect().collections, 1);
}

#[test]
fn no_space_is_lost_across_many_collections() {
    // Live objects scattered among garbage in a 1 MiB heap, through hundreds of collections:
    // each collection must recover the freed objects and the unused ends of chunks, or the
    // fragments lost add up until the heap is full for good.
    let stm = small(2, 1 << 20);
    let slots = stm.atomically(|tx| {
        let v = GcVec::<Option<GcRef<u64>>>::new(tx);
        for i in 0..512u64 {
            v.push(Some(tx.alloc(i)));
        }
        tx.root(v.as_gc())
    });
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (stm, slots) = (&stm, &slots);
            s.spawn(move || {
                let mut rng = common::Rng::new(t + 5);
                for _ in 0..6_000 {
                    stm.atomically(|tx| {
                        let v = GcVec::<Option<GcRef<u64>>>::from_root(tx, slots);
                        for _ in 0..4 {
                            let i = rng.below(512) as usize;
                            v.set(i, Some(tx.alloc(i as u64)));
                        }
                        for k in 0..8u64 {
                            tx.alloc([k; 5]);
                        }
                    });
                }
            });
        }
    });
    // About 6.9 MB allocated through a 1 MiB heap cannot fit without at least 5 collections
    // (a full heap would have panicked in `alloc`).
    assert!(stm.gc_stats().collections >= 5, "{:?}", stm.gc_stats());
    let ok = stm.atomically(|tx| {
        let v = GcVec::<Option<GcRef<u64>>>::from_root(tx, &slots);
        (0..512).all(|i| v.get(i).unwrap().get() == i as u64)
    });
    assert!(ok, "every slot still holds its own index");
}
