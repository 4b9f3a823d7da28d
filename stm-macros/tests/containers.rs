//! Objects holding the runtime's transactional growable array (`TVec`), used through
//! ordinary method syntax on the field.

use stm::{Gc, GcVec, Root, TVec};
use stm_runtime as stm;

#[stm::object]
struct Log {
    entries: TVec<i64>,
    total: i64,
}

// Allocating the vector needs the transaction: take it as `&Tx` (or from a handle: `h.tx()`).
#[stm::transactional]
fn new_log_in(tx: &stm::Tx) -> Gc<Log> {
    Gc::new(Log {
        entries: GcVec::new(tx),
        total: 0,
    })
}

#[stm::transactional]
fn new_log() -> Root<Log> {
    let log = Gc::new(Log {
        entries: GcVec::new(stm::tx!()),
        total: 0,
    });
    stm::tx!().root(log)
}

#[stm::transactional]
fn append(log: Gc<Log>, v: i64) {
    log.entries.push(v);
    log.total += v;
}

#[stm::transactional]
fn check(log: Gc<Log>) -> (usize, i64, i64) {
    let n = log.entries.len();
    let mut sum = 0;
    for i in 0..n {
        sum += log.entries.get(i);
    }
    (n, sum, log.total)
}

#[test]
fn appends_from_several_threads() {
    let root: Root<Log> = stm::atomically(|tx| tx.root(new_log_in(tx)));
    let other = new_log();
    stm::atomically(|tx| append(other.get(tx), 5));
    assert_eq!(stm::atomically(|tx| check(other.get(tx))), (1, 5, 5));
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let root = &root;
            s.spawn(move || {
                for i in 0..50 {
                    stm::atomically(|tx| append(root.get(tx), t * 100 + i));
                }
            });
        }
    });
    let (n, sum, total) = stm::atomically(|tx| check(root.get(tx)));
    assert_eq!(n, 200);
    assert_eq!(sum, total);
}
