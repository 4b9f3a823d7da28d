//! A hash map in the shared heap (separate chaining over a `TVec` of buckets), used by
//! several threads at once, every result checked against a sequential model.
//!
//! Each thread works on keys of its own residue class (key % threads == thread) in one shared
//! map, so threads share buckets and the table while each can check its results exactly.
//!
//! ```text
//! cargo run --release --example hashmap -- --threads 2 --updates 50
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use stm::{Gc, GcVec, Root, TVec};
use stm_examples::{report, Common, Rng};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "A hash map shared by several threads")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Percent of operations that insert or delete (the rest are lookups).
    #[arg(long, default_value_t = 20)]
    updates: u64,
    /// Keys are drawn from 0..range.
    #[arg(long, default_value_t = 100_000)]
    range: u64,
    /// Buckets in the table.
    #[arg(long, default_value_t = 4096)]
    buckets: u64,
    /// Operations per thread.
    #[arg(long, default_value_t = 200_000)]
    ops: u64,
}

#[stm::object]
struct Entry {
    key: u64,
    value: u64,
    next: Option<Gc<Entry>>,
}

#[stm::object]
struct Map {
    buckets: TVec<Option<Gc<Entry>>>,
    len: u64,
}

fn hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17
}

#[stm::transactional]
fn new_map(buckets: u64) -> Root<Map> {
    let tx = stm::atomically(|tx| tx.stm()); // the runtime this code runs on
    let _ = tx;
    stm::atomically(|tx| {
        let table = GcVec::<Option<stm::GcRef<Entry>>>::new(tx);
        for _ in 0..buckets {
            table.push(None);
        }
        let m = Gc::new(Map {
            buckets: table,
            len: 0,
        });
        tx.root(m)
    })
}

#[stm::transactional]
fn get(map: Gc<Map>, key: u64) -> Option<u64> {
    let table = map.buckets;
    let mut cur = table.get((hash(key) % table.len() as u64) as usize);
    while let Some(e) = cur {
        if e.key == key {
            return Some(e.value);
        }
        cur = e.next;
    }
    None
}

/// Inserts or replaces; returns the previous value.
#[stm::transactional]
fn put(map: Gc<Map>, key: u64, value: u64) -> Option<u64> {
    let table = map.buckets;
    let b = (hash(key) % table.len() as u64) as usize;
    let mut cur = table.get(b);
    while let Some(e) = cur {
        if e.key == key {
            let old = e.value;
            e.value = value;
            return Some(old);
        }
        cur = e.next;
    }
    let fresh = Gc::new(Entry {
        key,
        value,
        next: table.get(b),
    });
    table.set(b, Some(fresh));
    map.len += 1;
    None
}

#[stm::transactional]
fn delete(map: Gc<Map>, key: u64) -> Option<u64> {
    let table = map.buckets;
    let b = (hash(key) % table.len() as u64) as usize;
    let mut prev: Option<Gc<Entry>> = None;
    let mut cur = table.get(b);
    while let Some(e) = cur {
        if e.key == key {
            match prev {
                Some(p) => p.next = e.next,
                None => table.set(b, e.next),
            }
            map.len -= 1;
            return Some(e.value);
        }
        prev = Some(e);
        cur = e.next;
    }
    None
}

#[stm::transactional]
fn contents(map: Gc<Map>) -> (u64, BTreeMap<u64, u64>) {
    let table = map.buckets;
    let mut all = BTreeMap::new();
    for b in 0..table.len() {
        let mut cur = table.get(b);
        while let Some(e) = cur {
            all.insert(e.key, e.value);
            cur = e.next;
        }
    }
    (map.len, all)
}

fn main() {
    let args = Args::parse();
    let threads = args.common.threads() as u64;
    if args.buckets == 0 || args.range < threads {
        eprintln!("error: --buckets must be positive and --range at least --threads");
        std::process::exit(2);
    }
    let map = new_map(args.buckets);
    println!(
        "hashmap: {threads} threads, {}% updates, keys 0..{}, {} buckets, {} ops per thread",
        args.updates, args.range, args.buckets, args.ops
    );
    let start = Instant::now();
    let models: Vec<Result<BTreeMap<u64, u64>, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    let mut model = BTreeMap::new();
                    for i in 0..args.ops {
                        let key = rng.below(args.range / threads) * threads + t;
                        let op = rng.below(100);
                        let (got, want) = if op < args.updates / 2 {
                            (
                                stm::atomically(|tx| put(map.get(tx), key, i)),
                                model.insert(key, i),
                            )
                        } else if op < args.updates {
                            (
                                stm::atomically(|tx| delete(map.get(tx), key)),
                                model.remove(&key),
                            )
                        } else {
                            (
                                stm::atomically(|tx| get(map.get(tx), key)),
                                model.get(&key).copied(),
                            )
                        };
                        if got != want {
                            return Err(format!(
                                "thread {t}: key {key}: got {got:?}, model says {want:?}"
                            ));
                        }
                    }
                    Ok(model)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let check = (|| {
        let mut expected = BTreeMap::new();
        for m in models {
            expected.extend(m?);
        }
        let (len, got) = stm::atomically(|tx| contents(map.get(tx)));
        if got != expected {
            return Err(format!(
                "final map differs from the model ({} vs {} keys)",
                got.len(),
                expected.len()
            ));
        }
        if len as usize != got.len() {
            return Err(format!("len field {len} but {} entries", got.len()));
        }
        Ok(format!(
            "every result matched the sequential model; {} entries",
            got.len()
        ))
    })();
    report(
        "hashmap",
        check,
        threads * args.ops,
        elapsed,
        stm::Stm::global().stats(),
    );
}
