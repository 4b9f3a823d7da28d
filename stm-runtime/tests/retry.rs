//! `Tx::retry`: a consumer blocks until a producer's commit makes its condition true.

mod common;

use common::stm;

#[test]
fn retry_waits_for_a_commit() {
    let stm = stm(2);
    let slot = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let n = 200u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=n {
                // Put i in the slot once it is empty.
                stm.atomically(|tx| {
                    let c = slot.get(tx);
                    if c.get() != 0 {
                        tx.retry();
                    }
                    c.set(i);
                });
            }
        });
        let consumer = s.spawn(|| {
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(stm.atomically(|tx| {
                    let c = slot.get(tx);
                    let v = c.get();
                    if v == 0 {
                        tx.retry();
                    }
                    c.set(0);
                    v
                }));
            }
            got
        });
        assert_eq!(consumer.join().unwrap(), (1..=n).collect::<Vec<_>>());
    });
}

#[test]
fn or_else_undoes_the_first_branch_and_runs_the_second() {
    let stm = stm(1);
    let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(1u64)), tx.root(tx.alloc(10u64))));
    let r = stm.atomically(|tx| {
        let (ga, gb) = (a.get(tx), b.get(tx));
        ga.set(2); // before the checkpoint: kept
        tx.or_else(
            |tx| {
                ga.set(3);
                gb.set(30);
                let fresh = tx.alloc(99u64);
                fresh.set(100);
                tx.retry()
            },
            |_| {
                assert_eq!((ga.get(), gb.get()), (2, 10), "first branch undone");
                gb.set(gb.get() + 1);
                "second"
            },
        )
    });
    assert_eq!(r, "second");
    assert_eq!(
        stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get())),
        (2, 11)
    );
    // A full rollback after an or_else still restores the values from before the transaction.
    let err: Result<(), ()> = stm.try_atomically(|tx| {
        let ga = a.get(tx);
        ga.set(50);
        tx.or_else(
            |tx| {
                ga.set(60);
                tx.retry()
            },
            |_| ga.set(70),
        );
        assert_eq!(ga.get(), 70);
        Err(())
    });
    assert!(err.is_err());
    assert_eq!(stm.atomically(|tx| a.get(tx).get()), 2);
}

#[test]
fn nested_or_else_and_a_first_branch_that_succeeds() {
    let stm = stm(1);
    let x = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    let v = stm.atomically(|tx| {
        let g = x.get(tx);
        tx.or_else(
            |tx| {
                g.set(1);
                tx.or_else(
                    |tx| {
                        g.set(2);
                        tx.retry()
                    },
                    |_| g.get(),
                )
            },
            |_| unreachable!("the first branch did not retry"),
        )
    });
    assert_eq!(v, 1);
    assert_eq!(stm.atomically(|tx| x.get(tx).get()), 1);
}

#[test]
fn when_both_branches_retry_the_transaction_waits_for_a_commit() {
    let stm = stm(2);
    let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(0u64)), tx.root(tx.alloc(0u64))));
    std::thread::scope(|s| {
        let taker = s.spawn(|| {
            stm.atomically(|tx| {
                let take = |r: &stm_runtime::Root<u64>| {
                    let g = r.get(tx);
                    move |tx: &stm_runtime::Tx| {
                        if g.get() == 0 {
                            tx.retry();
                        }
                        g.set(g.get() - 1);
                    }
                };
                tx.or_else(take(&a), take(&b));
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        stm.atomically(|tx| b.get(tx).set(1));
        taker.join().unwrap();
    });
    assert_eq!(
        stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get())),
        (0, 0)
    );
}

#[test]
fn retry_after_become_inevitable_is_refused() {
    let stm = stm(1);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stm.atomically(|tx| {
            tx.become_inevitable();
            tx.retry()
        })
    }))
    .unwrap_err();
    let msg = err
        .downcast_ref::<&str>()
        .copied()
        .or(err.downcast_ref::<String>().map(|s| s.as_str()));
    assert!(
        msg.unwrap().contains("after Tx::become_inevitable"),
        "{msg:?}"
    );
    // The runtime is still usable and nobody is left inevitable.
    assert!(!stm.atomically(|tx| tx.is_inevitable()));
}
