//! `#[stm::in_transactions]`: long-running code as a series of transactions, cut at the
//! break points of its loops. These tests use the global runtime, as the attribute does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use stm::{thread_stats, Root};
use stm_runtime as stm;

#[stm::object]
struct Counter {
    value: u64,
    steps: u64,
}

#[stm::object]
struct Pair {
    a: i64,
    b: i64,
}

#[stm::transactional]
fn new_counter() -> Root<Counter> {
    stm::tx!().root(stm::Gc::new(Counter { value: 0, steps: 0 }))
}

#[stm::transactional]
fn counter(c: &Root<Counter>) -> (u64, u64) {
    let c = c.get(stm::tx!());
    (c.value, c.steps)
}

#[stm::transactional]
fn new_pair(a: i64, b: i64) -> Root<Pair> {
    stm::tx!().root(stm::Gc::new(Pair { a, b }))
}

#[stm::transactional]
fn pair(p: &Root<Pair>) -> (i64, i64) {
    let p = p.get(stm::tx!());
    (p.a, p.b)
}

/// Adds `1..=n` to the counter, one number per iteration; returns its own sum, kept in a
/// local that break points carry.
#[stm::in_transactions]
fn add_all(c: &Root<Counter>, n: u64) -> u64 {
    let mut local = 0;
    let mut i = 1;
    while i <= n {
        let h = c.get(stm::tx!());
        h.value += i;
        h.steps += 1;
        local += i;
        i += 1;
    }
    local
}

#[test]
fn a_long_loop_on_two_threads_equals_the_sequential_program() {
    const N: u64 = 20_000;
    let c = new_counter();
    let start = Barrier::new(2);
    let results: Vec<(u64, stm::Stats)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let before = thread_stats();
                    let sum = add_all(&c, N);
                    (sum, thread_stats() - before)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = N * (N + 1) / 2;
    assert_eq!(counter(&c), (2 * want, 2 * N), "an update was lost");
    for (sum, stats) in results {
        assert_eq!(sum, want, "a carried local counted an aborted step twice");
        assert!(
            stats.break_commits >= 2,
            "the loop was not cut at its break points: {stats}"
        );
        assert!(stats.commits > stats.break_commits);
    }
}

#[test]
fn loops_nested_in_a_transaction_never_break() {
    let c = new_counter();
    let before = thread_stats();
    let sum = stm::atomically(|_| add_all(&c, 5_000));
    let d = thread_stats() - before;
    assert_eq!(sum, 5_000 * 5_001 / 2);
    assert_eq!(counter(&c).1, 5_000);
    assert_eq!(
        d.break_commits, 0,
        "a loop inside a transaction broke it: {d}"
    );
}

/// Moves 10 units from `a` to `b`, one per iteration, as one transaction.
#[stm::in_transactions]
fn move_ten_atomically(p: &Root<Pair>) {
    #[stm::atomic]
    for _ in 0..10 {
        let h = p.get(stm::tx!());
        h.a -= 1;
        h.b += 1;
    }
}

/// The same loop with break points.
#[stm::in_transactions]
fn move_ten(p: &Root<Pair>) {
    for _ in 0..10 {
        let h = p.get(stm::tx!());
        h.a -= 1;
        h.b += 1;
    }
}

/// Reads the pair until `stop`; counts the reads that saw a move half done (and publishes
/// the number of reads so far in `seen`).
#[stm::in_transactions]
fn watch(p: &Root<Pair>, stop: &AtomicBool, seen: &AtomicU64) -> (u64, u64) {
    let mut half_done = 0u64;
    let mut reads = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let h = p.get(stm::tx!());
        let (a, b) = (h.a, h.b);
        if a + b != 1_000_000 || a % 10 != 0 {
            half_done += 1;
        }
        reads += 1;
        seen.store(reads, Ordering::Relaxed);
    }
    (half_done, reads)
}

#[test]
fn an_atomic_loop_is_never_seen_half_done() {
    // Budget 1: without `#[atomic]`, every iteration is its own transaction.
    let p = new_pair(1_000_000, 0);
    stm::set_thread_budget_limit(1);
    let before = thread_stats();
    move_ten(&p);
    let broken = thread_stats() - before;
    let before = thread_stats();
    move_ten_atomically(&p);
    let atomic = thread_stats() - before;
    assert_eq!(broken.break_commits, 10, "{broken}");
    assert_eq!(atomic.break_commits, 0, "{atomic}");
    assert_eq!(pair(&p), (1_000_000 - 20, 20));

    let stop = AtomicBool::new(false);
    let moves = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let (half_done, reads) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(&p, &stop, &seen));
        s.spawn(|| {
            stm::set_thread_budget_limit(1);
            // At least 2,000 moves, and on until the watcher has read 100 times while they
            // ran (on a busy machine it may not get a CPU before the first 2,000 are done).
            let mut done = 0;
            while done < 2_000 || seen.load(Ordering::Relaxed) < 100 {
                move_ten_atomically(&p);
                moves.fetch_add(1, Ordering::Relaxed);
                done += 1;
            }
            stop.store(true, Ordering::Relaxed);
        });
        watcher.join().unwrap()
    });
    assert_eq!(
        half_done, 0,
        "{half_done} of {reads} reads saw a move half done"
    );
    assert!(reads > 0);
    let m = moves.load(Ordering::Relaxed) as i64;
    assert_eq!(pair(&p), (1_000_000 - 20 - 10 * m, 20 + 10 * m));
}

/// Every exit of a loop body: `continue`, `break` with a value, `return`, and `?`.
#[stm::in_transactions]
fn exits(c: &Root<Counter>, fail_at: Option<u64>) -> Result<u64, String> {
    let mut odd = 0;
    for i in 0..100u64 {
        if i % 2 == 0 {
            continue;
        }
        odd += 1;
        c.get(stm::tx!()).value += 1;
    }
    let mut n = 0u64;
    let found = loop {
        n += 1;
        if Some(n) == fail_at {
            let parsed: u64 = "not a number".parse().map_err(|e| format!("{e}"))?;
            return Ok(parsed);
        }
        if n * n > 50 {
            break n;
        }
    };
    let mut k = 0;
    while k < 10 {
        k += 1;
        if k == 7 {
            return Ok(odd * 1000 + found * 10 + k);
        }
    }
    Ok(0)
}

#[test]
fn break_continue_return_and_question_mark_leave_the_loop() {
    let c = new_counter();
    assert_eq!(exits(&c, None), Ok(50 * 1000 + 8 * 10 + 7));
    assert_eq!(counter(&c).0, 50);
    assert_eq!(
        exits(&c, Some(3)),
        Err("invalid digit found in string".to_string())
    );
    assert_eq!(counter(&c).0, 100, "the loop before the `?` committed");
}

#[stm::in_transactions]
fn first_over(limit: u64) -> Option<u64> {
    let mut x = 1u64;
    loop {
        x = x.checked_mul(3)?;
        if x > limit {
            return Some(x);
        }
    }
}

#[test]
fn question_mark_on_options() {
    assert_eq!(first_over(100), Some(243));
    assert_eq!(first_over(u64::MAX), None);
}

/// Prints in every iteration: the printing iteration makes its transaction inevitable, and
/// the transaction is cut right after it.
#[stm::in_transactions]
fn print_each(c: &Root<Counter>, n: u64) {
    for i in 0..n {
        c.get(stm::tx!()).value += 1;
        println!("iteration {i}");
    }
}

#[test]
fn io_in_a_loop_cuts_the_transaction_after_each_iteration() {
    let c = new_counter();
    stm::set_thread_budget(1_000);
    let before = thread_stats();
    print_each(&c, 5);
    let d = thread_stats() - before;
    assert_eq!(counter(&c).0, 5);
    assert!(d.inevitable >= 5, "{d}");
    assert_eq!(d.break_commits, 5, "{d}");
}

/// Closures in an in-transactions function are outside transactions too: a worker thread's
/// loop breaks.
#[stm::in_transactions]
fn spawn_workers(c: &Root<Counter>, per_thread: u64) -> u64 {
    let mut total = 0;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = 0u64;
                    for _ in 0..per_thread {
                        c.get(stm::tx!()).value += 1;
                        mine += 1;
                    }
                    mine
                })
            })
            .collect();
        for h in hs {
            total += h.join().unwrap();
        }
    });
    total
}

#[test]
fn loops_in_spawned_closures_run_in_transactions() {
    let c = new_counter();
    assert_eq!(spawn_workers(&c, 3_000), 6_000);
    assert_eq!(counter(&c).0, 6_000);
}

static PRINTED: AtomicU64 = AtomicU64::new(0);

/// Prints once, in the middle of a long loop.
#[stm::in_transactions]
fn print_once(c: &Root<Counter>, n: u64) {
    for i in 0..n {
        c.get(stm::tx!()).value += 1;
        if i == n / 2 {
            println!("halfway");
            PRINTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn io_gets_break_points_before_and_after_it() {
    let c = new_counter();
    stm::set_thread_budget_limit(stm::MAX_BUDGET);
    stm::set_thread_budget(1_000);
    let before = thread_stats();
    print_once(&c, 101);
    let d = thread_stats() - before;
    assert_eq!(counter(&c).0, 101);
    assert_eq!(PRINTED.load(Ordering::Relaxed), 1, "the I/O ran twice");
    // The 50 iterations before the print commit on their own (after one restart), the
    // printing iteration is inevitable and cut right after it, the rest commit at the end.
    assert_eq!(d.inevitable, 1, "{d}");
    assert_eq!(d.break_commits, 2, "{d}");
    assert_eq!(d.aborts_retry, 1, "{d}");
    assert_eq!(d.commits, 3, "{d}");
}

/// Not `Clone`: a loop may read it, but not change it.
struct Report {
    lines: Vec<u64>,
}

#[stm::in_transactions]
fn sum_lines(c: &Root<Counter>) -> u64 {
    let mut report = Report { lines: Vec::new() };
    report.lines.extend(1..=10);
    let mut total = 0;
    for line in &report.lines {
        c.get(stm::tx!()).value += *line;
        total += *line + report.lines.len() as u64;
    }
    total
}

#[test]
fn locals_a_loop_only_reads_are_not_carried() {
    let c = new_counter();
    assert_eq!(sum_lines(&c), 55 + 100);
    assert_eq!(counter(&c).0, 55);
}

/// I/O inside an atomic loop makes the one transaction inevitable; nothing breaks.
#[stm::in_transactions]
fn print_atomically(c: &Root<Counter>, n: u64) {
    #[stm::atomic]
    for i in 0..n {
        c.get(stm::tx!()).value += 1;
        println!("atomic iteration {i}");
    }
}

#[test]
fn io_in_an_atomic_loop_makes_it_inevitable() {
    let c = new_counter();
    stm::set_thread_budget_limit(1);
    let before = thread_stats();
    print_atomically(&c, 4);
    let d = thread_stats() - before;
    assert_eq!(counter(&c).0, 4);
    assert_eq!((d.commits, d.break_commits, d.inevitable), (1, 0, 1), "{d}");
}

/// `?` inside a formatting macro's arguments, and a label of an inner loop that shadows the
/// loop's own.
#[stm::in_transactions]
fn parse_all(words: &[&str]) -> Result<String, std::num::ParseIntError> {
    let mut out = String::new();
    let mut inner = 0;
    #[allow(unused_labels)]
    'a: for w in words {
        out.push_str(&format!("{} ", w.parse::<u32>()?));
        let mut k = 0;
        'a: loop {
            k += 1;
            if k == 3 {
                break 'a;
            }
            inner += 1;
        }
    }
    out.push_str(&inner.to_string());
    Ok(out)
}

#[test]
fn question_mark_in_macro_arguments_and_shadowed_labels() {
    assert_eq!(parse_all(&["1", "22"]).as_deref(), Ok("1 22 4"));
    assert!(parse_all(&["1", "x"]).is_err());
}
