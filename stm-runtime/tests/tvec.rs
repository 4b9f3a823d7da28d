//! The growable array: contents, growth across tree levels, handles as elements, and card
//! marking (writes to different cards do not conflict; to the same card they do).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::stm;
use stm_runtime::{GcRef, GcVec, Root, VecHead, CARD};

#[test]
fn push_get_set_pop_remove_insert_across_levels() {
    let stm = stm(1);
    let n = CARD * CARD + 3 * CARD + 5; // needs two interior levels
    let root: Root<VecHead<u64>> = stm.atomically(|tx| {
        let v = GcVec::<u64>::new(tx);
        assert!(v.is_empty());
        for i in 0..n as u64 {
            v.push(i * 2);
        }
        tx.root(v.as_gc())
    });
    stm.atomically(|tx| {
        let v = GcVec::<u64>::from_root(tx, &root);
        assert_eq!(v.len(), n);
        assert!((0..n).all(|i| v.get(i) == i as u64 * 2));
        assert_eq!(v.try_get(n), None);
        v.set(1000, 7);
        assert_eq!(v.get(1000), 7);
        assert_eq!(v.pop(), Some((n as u64 - 1) * 2));
        assert_eq!(v.remove(0), 0);
        assert_eq!(v.get(0), 2);
        v.insert(0, 42);
        assert_eq!(v.to_vec()[..3], [42, 2, 4]);
        assert_eq!(v.len(), n - 1);
        v.clear();
        assert!(v.is_empty());
        v.push(5);
        assert_eq!(v.to_vec(), vec![5]);
    });
}

#[test]
fn rolled_back_pushes_leave_no_trace() {
    let stm = stm(1);
    let root = stm.atomically(|tx| {
        let v = GcVec::<i32>::new(tx);
        v.push(1);
        tx.root(v.as_gc())
    });
    let r: Result<(), ()> = stm.try_atomically(|tx| {
        let v = GcVec::<i32>::from_root(tx, &root);
        for i in 0..100 {
            v.push(i);
        }
        v.set(0, -1);
        Err(())
    });
    assert!(r.is_err());
    let contents = stm.atomically(|tx| GcVec::<i32>::from_root(tx, &root).to_vec());
    assert_eq!(contents, vec![1]);
}

#[test]
fn elements_can_be_handles() {
    let stm = stm(1);
    let root = stm.atomically(|tx| {
        let v = GcVec::<Option<GcRef<u64>>>::new(tx);
        for i in 0..10u64 {
            v.push(Some(tx.alloc(i * i)));
        }
        v.push(None);
        tx.root(v.as_gc())
    });
    let squares: Vec<Option<u64>> = stm.atomically(|tx| {
        let v = GcVec::<Option<GcRef<u64>>>::from_root(tx, &root);
        v.to_vec().into_iter().map(|h| h.map(|h| h.get())).collect()
    });
    assert_eq!(squares.len(), 11);
    assert_eq!(squares[9], Some(81));
    assert_eq!(squares[10], None);
}

#[test]
fn concurrent_pushes_and_increments_are_all_kept() {
    let stm = stm(2);
    let root = stm.atomically(|tx| tx.root(GcVec::<u64>::new(tx).as_gc()));
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (stm, root) = (&stm, &root);
            s.spawn(move || {
                for i in 0..300 {
                    stm.atomically(|tx| GcVec::<u64>::from_root(tx, root).push(t * 1000 + i));
                }
            });
        }
    });
    let mut all = stm.atomically(|tx| GcVec::<u64>::from_root(tx, &root).to_vec());
    all.sort();
    let mut expected: Vec<u64> = (0..3)
        .flat_map(|t| (0..300).map(move |i| t * 1000 + i))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

/// A's first attempt writes element `a` and waits while B writes element `b` and commits.
/// Returns A's attempts.
fn write_race(a: usize, b: usize) -> u32 {
    let stm = stm(2);
    let root = stm.atomically(|tx| {
        let v = GcVec::<u64>::new(tx);
        for _ in 0..4 * CARD {
            v.push(0);
        }
        tx.root(v.as_gc())
    });
    let (a_wrote, b_done) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let mut attempts = 0;
            stm.atomically(|tx| {
                attempts += 1;
                GcVec::<u64>::from_root(tx, &root).set(a, 1);
                if attempts == 1 {
                    a_wrote.store(true, Ordering::Release);
                    while !b_done.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                }
            });
            attempts
        });
        s.spawn(|| {
            while !a_wrote.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            stm.atomically(|tx| GcVec::<u64>::from_root(tx, &root).set(b, 2));
            b_done.store(true, Ordering::Release);
        });
        t.join().unwrap()
    })
}

#[test]
fn writes_to_different_cards_do_not_conflict_and_to_one_card_do() {
    if !stm_runtime::BARRIERS {
        return; // GIL mode: the second writer cannot run while the first holds the lock.
    }
    assert_eq!(
        write_race(3, 2 * CARD + 3),
        1,
        "different cards: no conflict"
    );
    assert_eq!(
        write_race(3, 4),
        2,
        "same card: write-write conflict, one retry"
    );
}
