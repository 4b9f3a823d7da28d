//! Rollback: a panic or an explicit abort in the middle of a transaction leaves every object
//! as it was, and the runtime stays usable.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::stm;
use stm_runtime::Root;

fn values(stm: &stm_runtime::Stm, cells: &[Root<u64>]) -> Vec<u64> {
    stm.atomically(|tx| cells.iter().map(|c| c.get(tx).get()).collect())
}

#[test]
fn a_panic_rolls_back_every_write_and_propagates() {
    let stm = stm(2);
    let cells: Vec<_> = stm.atomically(|tx| (0..5u64).map(|i| tx.root(tx.alloc(i))).collect());
    let before = values(&stm, &cells);
    let err = catch_unwind(AssertUnwindSafe(|| {
        stm.atomically(|tx| {
            for c in &cells[..3] {
                let c = c.get(tx);
                c.set(c.get() + 100);
            }
            let fresh = tx.alloc(7u64);
            fresh.set(8);
            panic!("boom in the middle");
        })
    }))
    .expect_err("the panic reaches the caller");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom in the middle"));
    assert_eq!(values(&stm, &cells), before);
    assert_eq!(stm.stats().aborts_panic, 1);
    // The runtime still works, on every segment.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| stm.atomically(|tx| cells[0].get(tx).update(|v| *v += 1)));
        }
    });
    assert_eq!(values(&stm, &cells)[0], before[0] + 2);
}

#[test]
fn an_explicit_abort_rolls_back_and_returns_the_error() {
    let stm = stm(1);
    let cell = stm.atomically(|tx| tx.root(tx.alloc(10u64)));
    let r: Result<(), &str> = stm.try_atomically(|tx| {
        let c = cell.get(tx);
        c.set(99);
        assert_eq!(c.get(), 99, "a transaction sees its own writes");
        Err("insufficient funds")
    });
    assert_eq!(r, Err("insufficient funds"));
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 10);
    assert_eq!(stm.stats().aborts_explicit, 1);
    let ok: Result<u64, ()> = stm.try_atomically(|tx| {
        cell.get(tx).set(11);
        Ok(1)
    });
    assert_eq!(ok, Ok(1));
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 11);
}

#[test]
fn objects_allocated_by_a_rolled_back_transaction_never_exist() {
    let stm = stm(1);
    let leaked = std::sync::Mutex::new(None);
    let r: Result<(), ()> = stm.try_atomically(|tx| {
        *leaked.lock().unwrap() = Some(tx.root(tx.alloc(5u64)));
        Err(())
    });
    assert!(r.is_err());
    let root = leaked.lock().unwrap().take().unwrap();
    let err = catch_unwind(AssertUnwindSafe(|| stm.atomically(|tx| root.get(tx).get())))
        .expect_err("following a root to a rolled-back object is refused");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or(err.downcast_ref::<&str>().copied());
    assert!(msg.unwrap().contains("rolled back"), "{msg:?}");
    // The space is reused by the next allocation, and the runtime is fine.
    let again = stm.atomically(|tx| tx.root(tx.alloc(6u64)));
    assert_eq!(stm.atomically(|tx| again.get(tx).get()), 6);
}

#[test]
fn a_panic_in_an_inevitable_transaction_rolls_back_and_frees_inevitability() {
    let stm = stm(2);
    let cell = stm.atomically(|tx| tx.root(tx.alloc(1u64)));
    let r = catch_unwind(AssertUnwindSafe(|| {
        stm.atomically(|tx| {
            tx.become_inevitable();
            cell.get(tx).set(2);
            panic!("after becoming inevitable");
        })
    }));
    assert!(r.is_err());
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 1);
    // Another thread can become inevitable and commit.
    std::thread::scope(|s| {
        s.spawn(|| {
            stm.atomically(|tx| {
                tx.become_inevitable();
                cell.get(tx).set(3);
            })
        });
    });
    assert_eq!(stm.atomically(|tx| cell.get(tx).get()), 3);
}

#[test]
fn nested_calls_join_the_enclosing_transaction() {
    let stm = stm(1);
    let cell = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let r = catch_unwind(AssertUnwindSafe(|| {
        stm.atomically(|tx| {
            cell.get(tx).set(1);
            stm.atomically(|inner| {
                assert_eq!(
                    cell.get(inner).get(),
                    1,
                    "the inner call sees the outer write"
                );
                cell.get(inner).set(2);
            });
            panic!("the outer transaction fails after the inner one returned");
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        stm.atomically(|tx| cell.get(tx).get()),
        0,
        "the inner write rolled back too"
    );
    assert_eq!(
        stm.stats().commits,
        2,
        "setup and check only: the nested call is not a commit"
    );
}
