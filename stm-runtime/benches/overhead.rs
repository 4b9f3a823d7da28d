//! Single-thread cost of a transaction against an uncontended `std::sync::Mutex` doing the
//! same work (issue: "Segment-mapped STM runtime", done-when figures).
//!
//! `cargo bench -p stm-runtime --bench overhead` (add `--features gil` for GIL mode).
//! Compare the `stm/*` lines with the `mutex/*` lines of the same run.

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, Criterion};
use stm_runtime::Stm;

fn empty(c: &mut Criterion) {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(16 << 20)
        .build()
        .unwrap();
    let lock = Mutex::new(());
    let mut g = c.benchmark_group("empty");
    g.bench_function("mutex", |b| {
        b.iter(|| drop(black_box(&lock).lock().unwrap()))
    });
    g.bench_function("stm", |b| {
        b.iter(|| {
            black_box(&stm).atomically(|tx| {
                black_box(tx);
            })
        })
    });
    g.finish();
}

fn transfer(c: &mut Criterion) {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(16 << 20)
        .build()
        .unwrap();
    let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(1_000_000i64)), tx.root(tx.alloc(0i64))));
    let accounts = Mutex::new([1_000_000i64, 0]);
    let mut plain = [1_000_000i64, 0];
    let mut g = c.benchmark_group("transfer");
    g.bench_function("plain", |bch| {
        bch.iter(|| {
            let p = black_box(&mut plain);
            p[0] -= 1;
            p[1] += 1;
        })
    });
    g.bench_function("mutex", |bch| {
        bch.iter(|| {
            let mut acc = black_box(&accounts).lock().unwrap();
            acc[0] -= 1;
            acc[1] += 1;
        })
    });
    g.bench_function("stm", |bch| {
        bch.iter(|| {
            black_box(&stm).atomically(|tx| {
                let (from, to) = (a.get(tx), b.get(tx));
                from.set(from.get() - 1);
                to.set(to.get() + 1);
            })
        })
    });
    g.finish();
    let (x, y) = stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get()));
    assert_eq!(x + y, 1_000_000, "transfers conserved the total");
}

/// A loop that touches nothing shared, plain and as steps of `run_in_transactions` (a break
/// point after every step; the budget is large, so almost none breaks).
fn break_point(c: &mut Criterion) {
    use std::ops::ControlFlow;
    let stm = Stm::builder()
        .segments(1)
        .heap_size(16 << 20)
        .build()
        .unwrap();
    const STEPS: u64 = 1_000;
    /// A step of real work (an interpreter's bytecode): 100 dependent multiply-adds that the
    /// compiler cannot fold away. Not inlined, so that every variant runs the same machine
    /// code for it and differs only in the loop around it (inlined, its register allocation
    /// varies by 10% between call sites, which would drown the break point).
    #[inline(never)]
    fn work(x: u64) -> u64 {
        (0..100).fold(x, |a, k| {
            black_box(a)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(k)
        })
    }
    let mut g = c.benchmark_group("break_point");
    g.bench_function("plain_loop", |b| {
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..STEPS {
                x = work(x);
            }
            x
        })
    });
    g.bench_function("steps", |b| {
        stm_runtime::set_thread_budget(stm_runtime::MAX_BUDGET);
        b.iter(|| {
            black_box(&stm).run_in_transactions((black_box(1u64), 0u64), |_, (x, i)| {
                *x = work(*x);
                *i += 1;
                if *i == STEPS {
                    ControlFlow::Break(*x)
                } else {
                    ControlFlow::Continue(())
                }
            })
        })
    });
    g.bench_function("in_transactions", |b| {
        stm_runtime::set_thread_budget_limit(stm_runtime::MAX_BUDGET);
        stm_runtime::set_thread_budget(stm_runtime::MAX_BUDGET);
        b.iter(|| work_loop(black_box(1u64), STEPS))
    });
    g.bench_function("in_transactions_breaking", |b| {
        // Every break point breaks: a transaction per step.
        stm_runtime::set_thread_budget_limit(1);
        b.iter(|| work_loop(black_box(1u64), STEPS));
        stm_runtime::set_thread_budget_limit(stm_runtime::MAX_BUDGET);
    });
    g.finish();

    /// The plain loop with `#[in_transactions]`: a break point at its back-edge.
    #[stm_runtime::in_transactions]
    fn work_loop(mut x: u64, steps: u64) -> u64 {
        for _ in 0..steps {
            x = work(x);
        }
        x
    }
}

criterion_group!(benches, empty, transfer, break_point);
criterion_main!(benches);
