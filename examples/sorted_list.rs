//! A sorted linked-list set in the shared heap, used by several threads at once.
//!
//! Each thread runs a mix of lookups, inserts and deletes (`--updates` percent of them
//! updates) on keys of its own residue class (key % threads == thread), so that the set is
//! shared (every operation walks the same list and conflicts on the same links) while each
//! thread can check every result against its own sequential model (a `BTreeSet`).
//!
//! ```text
//! cargo run --release --example sorted_list -- --threads 2 --updates 50
//! ```

use std::collections::BTreeSet;
use std::time::Instant;

use clap::Parser;
use stm::{Gc, Root};
use stm_examples::{report, Common, Rng};
use stm_runtime as stm;

#[derive(Parser, Debug)]
#[command(about = "A sorted linked-list set shared by several threads")]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Percent of operations that insert or delete (the rest are lookups).
    #[arg(long, default_value_t = 20)]
    updates: u64,
    /// Keys are drawn from 0..range.
    #[arg(long, default_value_t = 512)]
    range: u64,
    /// Operations per thread.
    #[arg(long, default_value_t = 50_000)]
    ops: u64,
}

#[stm::object]
struct Node {
    key: u64,
    next: Option<Gc<Node>>,
}

#[stm::object]
struct Set {
    head: Option<Gc<Node>>,
    len: u64,
}

#[stm::transactional]
fn new_set() -> Root<Set> {
    let s = Gc::new(Set { head: None, len: 0 });
    s.tx().root(s)
}

/// The last node with a key below `key` (None: insert at the head), and the node after it.
#[stm::transactional]
fn find(set: Gc<Set>, key: u64) -> (Option<Gc<Node>>, Option<Gc<Node>>) {
    let mut prev = None;
    let mut cur = set.head;
    while let Some(node) = cur {
        if node.key >= key {
            break;
        }
        prev = Some(node);
        cur = node.next;
    }
    (prev, cur)
}

#[stm::transactional]
fn contains(set: Gc<Set>, key: u64) -> bool {
    let (_, cur) = find(set, key);
    match cur {
        Some(node) => node.key == key,
        None => false,
    }
}

#[stm::transactional]
fn insert(set: Gc<Set>, key: u64) -> bool {
    let (prev, cur) = find(set, key);
    if let Some(node) = cur {
        if node.key == key {
            return false;
        }
    }
    let fresh = Gc::new(Node { key, next: cur });
    match prev {
        Some(p) => p.next = Some(fresh),
        None => set.head = Some(fresh),
    }
    set.len += 1;
    true
}

#[stm::transactional]
fn remove(set: Gc<Set>, key: u64) -> bool {
    let (prev, cur) = find(set, key);
    let Some(node) = cur else { return false };
    if node.key != key {
        return false;
    }
    match prev {
        Some(p) => p.next = node.next,
        None => set.head = node.next,
    }
    set.len -= 1;
    true
}

#[stm::transactional]
fn keys(set: Gc<Set>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cur = set.head;
    while let Some(node) = cur {
        out.push(node.key);
        cur = node.next;
    }
    out
}

#[stm::transactional]
fn length(set: Gc<Set>) -> u64 {
    set.len
}

fn main() {
    let args = Args::parse();
    let threads = args.common.threads() as u64;
    let set = new_set();
    println!(
        "sorted_list: {threads} threads, {}% updates, keys 0..{}, {} ops per thread",
        args.updates, args.range, args.ops
    );
    let start = Instant::now();
    let models: Vec<Result<BTreeSet<u64>, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let set = &set;
                s.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    let mut model = BTreeSet::new();
                    for _ in 0..args.ops {
                        let key = rng.below(args.range / threads) * threads + t;
                        let op = rng.below(100);
                        let (got, want) = if op < args.updates / 2 {
                            (
                                stm::atomically(|tx| insert(set.get(tx), key)),
                                model.insert(key),
                            )
                        } else if op < args.updates {
                            (
                                stm::atomically(|tx| remove(set.get(tx), key)),
                                model.remove(&key),
                            )
                        } else {
                            (
                                stm::atomically(|tx| contains(set.get(tx), key)),
                                model.contains(&key),
                            )
                        };
                        if got != want {
                            return Err(format!(
                                "thread {t}: key {key}: got {got}, model says {want}"
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
        let mut expected = BTreeSet::new();
        for m in models {
            expected.extend(m?);
        }
        let (got, len) = stm::atomically(|tx| (keys(set.get(tx)), length(set.get(tx))));
        if got != expected.iter().copied().collect::<Vec<_>>() {
            return Err(format!(
                "final set differs from the model ({} vs {} keys)",
                got.len(),
                expected.len()
            ));
        }
        if len as usize != got.len() {
            return Err(format!("len field {len} but {} nodes", got.len()));
        }
        Ok(format!(
            "every result matched the sequential model; {} keys, sorted",
            got.len()
        ))
    })();
    report(
        "sorted_list",
        check,
        threads * args.ops,
        elapsed,
        stm::Stm::global().stats(),
    );
}
