//! Producers and consumers over two bounded buffers in the shared heap, blocking with
//! `Tx::retry` and choosing with `Tx::or_else`: a producer puts into the first buffer, or the
//! second if the first is full, or waits; a consumer takes from either, or waits. Every item
//! is consumed exactly once.
//!
//! ```text
//! cargo run --release --example bounded_queue -- --threads 4
//! ```

use std::time::Instant;

use clap::Parser;
use stm::{Gc, GcVec, Root, TVec, Tx};
use stm_examples::{report, Common};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "Producers and consumers with retry and or_else")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Items each producer puts.
    #[arg(long, default_value_t = 20_000)]
    items: u64,
    /// Slots in each buffer.
    #[arg(long, default_value_t = 16)]
    capacity: usize,
}

/// A ring buffer of `u64` in the shared heap.
#[stm::object]
struct Ring {
    slots: TVec<u64>,
    head: u64,
    count: u64,
}

#[stm::transactional]
fn new_ring(tx: &Tx, capacity: usize) -> Root<Ring> {
    let slots = GcVec::<u64>::new(tx);
    for _ in 0..capacity {
        slots.push(0);
    }
    let r = Gc::new(Ring {
        slots,
        head: 0,
        count: 0,
    });
    tx.root(r)
}

/// Puts `item`, or retries (blocks) while the ring is full.
#[stm::transactional]
fn put(tx: &Tx, ring: Gc<Ring>, item: u64) {
    let cap = ring.slots.len() as u64;
    if ring.count == cap {
        tx.retry();
    }
    let at = (ring.head + ring.count) % cap;
    ring.slots.set(at as usize, item);
    ring.count += 1;
}

/// Takes the oldest item, or retries (blocks) while the ring is empty.
#[stm::transactional]
fn take(tx: &Tx, ring: Gc<Ring>) -> u64 {
    if ring.count == 0 {
        tx.retry();
    }
    let item = ring.slots.get(ring.head as usize);
    ring.head = (ring.head + 1) % ring.slots.len() as u64;
    ring.count -= 1;
    item
}

fn main() {
    let args = Args::parse();
    if args.capacity == 0 {
        eprintln!("error: --capacity must be positive");
        std::process::exit(2);
    }
    let threads = args.common.threads().max(2);
    let producers = threads / 2;
    let consumers = threads - producers;
    let stm = args.common.stm(16);
    let (a, b) = stm.atomically(|tx| (new_ring(tx, args.capacity), new_ring(tx, args.capacity)));
    let total = producers as u64 * args.items;
    println!(
        "bounded_queue: {producers} producers, {consumers} consumers, {} items each, {} slots per buffer",
        args.items, args.capacity
    );
    let start = Instant::now();
    let (sum, count) = std::thread::scope(|s| {
        for p in 0..producers as u64 {
            let (stm, a, b) = (&stm, &a, &b);
            s.spawn(move || {
                for i in 0..args.items {
                    let item = p * args.items + i + 1;
                    stm.atomically(|tx| {
                        tx.or_else(|tx| put(tx, a.get(tx), item), |tx| put(tx, b.get(tx), item))
                    });
                }
            });
        }
        let takers: Vec<_> = (0..consumers as u64)
            .map(|c| {
                let (stm, a, b) = (&stm, &a, &b);
                let share = total / consumers as u64 + u64::from(c < total % consumers as u64);
                s.spawn(move || {
                    let (mut sum, mut n) = (0u64, 0u64);
                    for _ in 0..share {
                        sum += stm.atomically(|tx| {
                            tx.or_else(|tx| take(tx, a.get(tx)), |tx| take(tx, b.get(tx)))
                        });
                        n += 1;
                    }
                    (sum, n)
                })
            })
            .collect();
        takers
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(s, n), (s2, n2)| (s + s2, n + n2))
    });
    let elapsed = start.elapsed();
    let want = total * (total + 1) / 2;
    let check = if sum == want && count == total {
        Ok(format!("{count} items consumed exactly once (sum {sum})"))
    } else {
        Err(format!(
            "consumed {count} items summing to {sum}; expected {total} summing to {want}"
        ))
    };
    report("bounded_queue", check, total * 2, elapsed, stm.stats());
}
