//! `#[stm::in_transactions]` under injected faults: aborts strike at random points of the
//! series of transactions, and the loop must restart at its last break point with the carried
//! locals (and a `for` loop's iterator) as they were there.

use stm::{thread_stats, Root};
use stm_runtime as stm;

#[stm::object]
struct Sums {
    total: u64,
    count: u64,
}

/// Makes the global runtime abort 2% of write-barrier slow paths, allocations and commits.
fn faulty_global() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        stm::Stm::builder()
            .segments(2)
            .heap_size(64 << 20)
            .inject_faults(0.02)
            .build_global()
            .expect("the first use of the global runtime in this test binary");
    });
}

#[stm::transactional]
fn new_sums() -> Root<Sums> {
    stm::tx!().root(stm::Gc::new(Sums { total: 0, count: 0 }))
}

#[stm::transactional]
fn read(s: &Root<Sums>) -> (u64, u64) {
    let s = s.get(stm::tx!());
    (s.total, s.count)
}

#[stm::in_transactions]
fn sum_range(s: &Root<Sums>, n: u64) -> (u64, u64) {
    let mut local = 0u64;
    let mut squares = 0u64;
    for i in 1..=n {
        let h = s.get(stm::tx!());
        h.total += i;
        h.count += 1;
        local += i;
        squares += i * i;
    }
    (local, squares)
}

#[test]
fn carried_locals_are_restored_after_aborts() {
    faulty_global();
    const N: u64 = 30_000;
    let s = new_sums();
    let results: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| {
                    stm::set_thread_budget_limit(64);
                    let before = thread_stats();
                    let r = sum_range(&s, N);
                    (r, thread_stats() - before)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = (N * (N + 1) / 2, N * (N + 1) * (2 * N + 1) / 6);
    let mut aborts = 0;
    for (r, stats) in &results {
        assert_eq!(*r, want, "a carried local or the iterator was not restored");
        assert!(stats.break_commits > 0, "{stats}");
        aborts += stats.break_aborts;
    }
    assert!(
        aborts > 0,
        "no fault struck the series: the test shows nothing"
    );
    assert_eq!(read(&s), (2 * want.0, 2 * N));
}

/// Fibonacci-style destructuring assignments change both locals: both are carried.
#[stm::in_transactions]
fn pairs(s: &Root<Sums>, n: u64) -> (u64, u64) {
    let (mut a, mut b) = (0u64, 0u64);
    for i in 0..n {
        s.get(stm::tx!()).count += 1;
        (a, b) = (a + i, b + 1);
    }
    (a, b)
}

#[test]
fn destructuring_assignments_are_carried() {
    faulty_global();
    let s = new_sums();
    stm::set_thread_budget_limit(16);
    let before = thread_stats();
    assert_eq!(pairs(&s, 20_000), (20_000 * 19_999 / 2, 20_000));
    assert_eq!(read(&s).1, 20_000);
    assert!((thread_stats() - before).aborts() > 0, "no fault struck");
}
