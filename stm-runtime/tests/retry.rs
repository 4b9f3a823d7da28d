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
