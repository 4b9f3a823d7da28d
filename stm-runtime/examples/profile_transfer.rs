//! A loop of single-thread transfer transactions (or empty ones), for profilers (callgrind,
//! perf). `cargo run --release -p stm-runtime --example profile_transfer -- [N]
//! [empty|update|steps|loop|macro|macro_breaking]`
use stm_runtime::Stm;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let stm = Stm::builder()
        .segments(1)
        .heap_size(16 << 20)
        .build()
        .unwrap();
    let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(n as i64)), tx.root(tx.alloc(0i64))));
    let t = std::time::Instant::now();
    if std::env::args().nth(2).as_deref() == Some("steps") {
        // n steps of a loop that touches nothing shared, as one series of transactions.
        stm_runtime::set_thread_budget(stm_runtime::MAX_BUDGET);
        let x = stm.run_in_transactions((1u64, 0u64), |_, (x, i)| {
            *x = std::hint::black_box(*x).wrapping_mul(6364136223846793005);
            *i += 1;
            if *i == n {
                std::ops::ControlFlow::Break(*x)
            } else {
                std::ops::ControlFlow::Continue(())
            }
        });
        println!(
            "{n} steps: {:.2} ns each ({x})",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        return;
    }
    if let Some(mode @ ("macro" | "macro_breaking")) = std::env::args().nth(2).as_deref() {
        // The same loop in an `#[in_transactions]` function: a break point per iteration,
        // which breaks every time with `macro_breaking`.
        #[stm_runtime::in_transactions]
        fn spin(n: u64) -> u64 {
            let mut x = 1u64;
            for _ in 0..n {
                x = std::hint::black_box(x).wrapping_mul(6364136223846793005);
            }
            x
        }
        let limit = if mode == "macro" {
            stm_runtime::MAX_BUDGET
        } else {
            1
        };
        stm_runtime::set_thread_budget_limit(limit);
        stm_runtime::set_thread_budget(limit);
        let x = spin(n);
        println!(
            "{n} iterations ({mode}): {:.2} ns each ({x}); {}",
            t.elapsed().as_nanos() as f64 / n as f64,
            stm_runtime::thread_stats()
        );
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("loop") {
        let mut x = 1u64;
        for _ in 0..n {
            x = std::hint::black_box(x).wrapping_mul(6364136223846793005);
        }
        println!(
            "{n} loop iterations: {:.2} ns each ({x})",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("empty") {
        for _ in 0..n {
            stm.atomically(|tx| {
                std::hint::black_box(tx);
            });
        }
        let el = t.elapsed();
        println!(
            "{n} empty transactions: {:.1} ns each",
            el.as_nanos() as f64 / n as f64
        );
        return;
    }
    let update = std::env::args().nth(2).as_deref() == Some("update");
    for _ in 0..n {
        stm.atomically(|tx| {
            let (from, to) = (a.get(tx), b.get(tx));
            if update {
                // What `from.balance -= 1` in #[transactional] code does: one borrow of
                // the field, the write barrier first, then the read.
                from.update(|v| *v -= 1);
                to.update(|v| *v += 1);
            } else {
                from.set(from.get() - 1);
                to.set(to.get() + 1);
            }
        });
    }
    let el = t.elapsed();
    let (x, y) = stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get()));
    assert_eq!((x, y), (0, n as i64));
    println!(
        "{n} transfers: {:.1} ns each; {}",
        el.as_nanos() as f64 / n as f64,
        stm.stats()
    );
}
