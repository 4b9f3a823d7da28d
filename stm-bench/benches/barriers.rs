//! Micro-benchmarks of the runtime's hot paths, single thread:
//!
//! * `barrier/read`: a read through a handle (read barrier + load);
//! * `barrier/write-fast`: a write to an object already written in this transaction
//!   (flag test + store);
//! * `barrier/write-slow`: the first write to a committed object in a transaction (backup,
//!   record), commit excluded;
//! * `tx/empty`: an empty transaction;
//! * `tx/write-N`: a whole transaction writing N committed objects (barriers + commit), for
//!   N = 1, 10, 100; with the uncontended `Mutex` and the sequential loop for scale.
//!
//! `cargo bench -p stm-bench --bench barriers` (add `--features gil` for GIL mode).

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use stm_runtime::{Root, Stm};

fn runtime() -> Stm {
    Stm::builder()
        .segments(1)
        .heap_size(64 << 20)
        .build()
        .expect("runtime")
}

/// `n` committed objects.
fn objects(stm: &Stm, n: usize) -> Vec<Root<i64>> {
    stm.atomically(|tx| (0..n).map(|i| tx.root(tx.alloc(i as i64))).collect())
}

fn barriers(c: &mut Criterion) {
    let stm = runtime();
    let one = objects(&stm, 1).pop().expect("an object");
    let pool = objects(&stm, 10_000);
    let mut g = c.benchmark_group("barrier");
    g.bench_function("read", |b| {
        b.iter_custom(|iters| {
            stm.atomically(|tx| {
                let h = one.get(tx);
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(black_box(h).get());
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("write-fast", |b| {
        b.iter_custom(|iters| {
            stm.atomically(|tx| {
                let h = one.get(tx);
                h.set(0); // the slow path, once
                let t = Instant::now();
                for i in 0..iters {
                    black_box(h).set(i as i64);
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("write-slow", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(pool.len());
                left -= n;
                total += stm.atomically(|tx| {
                    let hs: Vec<_> = pool[..n].iter().map(|r| r.get(tx)).collect();
                    let t = Instant::now();
                    for h in &hs {
                        black_box(*h).set(1);
                    }
                    t.elapsed()
                });
            }
            total
        })
    });
    g.finish();
}

fn transactions(c: &mut Criterion) {
    let stm = runtime();
    let pool = objects(&stm, 100);
    let lock = Mutex::new(vec![0i64; 100]);
    let mut plain = vec![0i64; 100];
    let mut g = c.benchmark_group("tx");
    g.bench_function("empty/stm", |b| {
        b.iter(|| {
            black_box(&stm).atomically(|tx| {
                black_box(tx);
            })
        })
    });
    g.bench_function("empty/mutex", |b| {
        b.iter(|| drop(black_box(&lock).lock().unwrap()))
    });
    for n in [1usize, 10, 100] {
        g.bench_function(format!("write-{n}/stm"), |b| {
            b.iter(|| {
                black_box(&stm).atomically(|tx| {
                    for r in &pool[..n] {
                        let h = r.get(tx);
                        h.set(h.get() + 1);
                    }
                })
            })
        });
        g.bench_function(format!("write-{n}/mutex"), |b| {
            b.iter(|| {
                let mut v = black_box(&lock).lock().unwrap();
                for x in &mut v[..n] {
                    *x += 1;
                }
            })
        });
        g.bench_function(format!("write-{n}/plain"), |b| {
            b.iter(|| {
                for x in &mut black_box(&mut plain)[..n] {
                    *x += 1;
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, barriers, transactions);
criterion_main!(benches);
