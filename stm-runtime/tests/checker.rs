//! The serializability checker: many threads run randomly generated transactions over a
//! small heap (reads, writes, allocations, links between slots), each recording what it read.
//! Afterwards the committed transactions are replayed sequentially in their commit order
//! (`last_commit_rev`): every value each one read must be reproduced, and the final heap must
//! equal the replay's. Variants add fault injection (random aborts in barriers, allocations and
//! commits), random panics, more threads than segments, and a heap small enough that the
//! collector runs all the time.
//!
//! The long soak: `STM_SOAK_SECS=600 cargo test --release -p stm-runtime --test checker --
//! --ignored --nocapture soak` (prints transactions, aborts, collections and peak memory).

mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::Rng;
use stm_runtime::{last_commit_rev, GcRef, GcVec, Root, Stm, VecHead};

/// A node: `[id, value]`.
type Node = [u64; 2];
type Slot = Option<GcRef<Node>>;

/// One step of a transaction's plan, and what it observed.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    /// Read slot `slot`: the node's id and value, or None.
    Read { slot: usize, seen: Option<Node> },
    /// Write `value` into the node of `slot` (seen: the node's id, None if empty: no-op).
    Write {
        slot: usize,
        value: u64,
        seen: Option<u64>,
    },
    /// Allocate a node `[id, value]` into `slot`.
    Alloc { slot: usize, id: u64, value: u64 },
    /// Make `dst` point to the node of `src` (seen: that node's id).
    Link {
        dst: usize,
        src: usize,
        seen: Option<u64>,
    },
}

/// A committed transaction's log.
#[derive(Debug)]
struct Log {
    /// Serialization point: writers by revision; read-only ones after that revision.
    rev: u64,
    wrote: bool,
    ops: Vec<Op>,
}

struct Config {
    threads: usize,
    segments: usize,
    slots: usize,
    heap: usize,
    fault_rate: f64,
    panic_rate: u64, // per 10_000 transactions
    /// Unreachable 128-byte objects each transaction allocates (work for the collector).
    garbage: usize,
    budget: Budget,
}

enum Budget {
    Transactions(usize),
    Time(Duration),
}

fn plan(rng: &mut Rng, slots: usize, next_id: &mut u64, t: usize, round: u64) -> Vec<Op> {
    let n = 1 + rng.below(6) as usize;
    (0..n)
        .map(|_| {
            let slot = rng.below(slots as u64) as usize;
            match rng.below(10) {
                0..=4 => Op::Read { slot, seen: None },
                5..=7 => Op::Write {
                    slot,
                    value: rng.next(),
                    seen: None,
                },
                8 => {
                    *next_id += 1;
                    Op::Alloc {
                        slot,
                        id: (round << 48) | ((t as u64) << 40) | *next_id,
                        value: rng.next(),
                    }
                }
                _ => Op::Link {
                    dst: slot,
                    src: rng.below(slots as u64) as usize,
                    seen: None,
                },
            }
        })
        .collect()
}

/// Runs `plan` in `tx`, filling in what it observed.
fn execute(tx: &stm_runtime::Tx, table: &Root<VecHead<Slot>>, plan: &[Op]) -> (Vec<Op>, bool) {
    let v = GcVec::<Slot>::from_root(tx, table);
    let mut wrote = false;
    let ops = plan
        .iter()
        .map(|op| match *op {
            Op::Read { slot, .. } => Op::Read {
                slot,
                seen: v.get(slot).map(|h| h.get()),
            },
            Op::Write { slot, value, .. } => {
                let h = v.get(slot);
                let seen = h.map(|h| {
                    let [id, _] = h.get();
                    h.set([id, value]);
                    wrote = true;
                    id
                });
                Op::Write { slot, value, seen }
            }
            Op::Alloc { slot, id, value } => {
                v.set(slot, Some(tx.alloc([id, value])));
                wrote = true;
                Op::Alloc { slot, id, value }
            }
            Op::Link { dst, src, .. } => {
                let h = v.get(src);
                v.set(dst, h);
                wrote = true;
                Op::Link {
                    dst,
                    src,
                    seen: h.map(|h| h.get()[0]),
                }
            }
        })
        .collect();
    (ops, wrote)
}

/// What the run did, for the soak's report.
struct Outcome {
    transactions: usize,
    stats: stm_runtime::Stats,
    gc: stm_runtime::GcStats,
}

/// A runtime and its table of slots, kept across rounds.
struct Heap {
    stm: Stm,
    table: Root<VecHead<Slot>>,
}

impl Heap {
    fn new(cfg: &Config) -> Heap {
        let stm = Stm::builder()
            .segments(cfg.segments)
            .heap_size(cfg.heap)
            .inject_faults(cfg.fault_rate)
            .serial_order(true)
            .build()
            .unwrap();
        let table = stm.atomically(|tx| {
            let v = GcVec::<Slot>::new(tx);
            for _ in 0..cfg.slots {
                v.push(None);
            }
            tx.root(v.as_gc())
        });
        Heap { stm, table }
    }

    /// The slots' nodes (read while no other transaction runs).
    fn contents(&self) -> Vec<Option<Node>> {
        self.stm.atomically(|tx| {
            GcVec::<Slot>::from_root(tx, &self.table)
                .to_vec()
                .into_iter()
                .map(|h| h.map(|h| h.get()))
                .collect()
        })
    }
}

fn run(cfg: Config) -> Outcome {
    let heap = Heap::new(&cfg);
    run_round(&heap, &cfg, 0)
}

/// One checked round on `heap`: the workers, then the replay from the heap's contents at the
/// start of the round.
fn run_round(heap: &Heap, cfg: &Config, round: u64) -> Outcome {
    let (stm, table) = (&heap.stm, &heap.table);
    let initial = heap.contents();
    let before = stm.stats();
    let start = Instant::now();
    let logs: Vec<Log> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng::new(t as u64 * 7919 + 17 + round * 104_729);
                    let mut next_id = 0;
                    let mut logs = Vec::new();
                    for i in 0.. {
                        let done = match cfg.budget {
                            Budget::Transactions(n) => i >= n,
                            Budget::Time(d) => start.elapsed() >= d,
                        };
                        if done {
                            break;
                        }
                        let plan = plan(&mut rng, cfg.slots, &mut next_id, t, round);
                        let panic_now = rng.below(10_000) < cfg.panic_rate;
                        let r = catch_unwind(AssertUnwindSafe(|| {
                            stm.atomically(|tx| {
                                let (ops, wrote) = execute(tx, table, &plan);
                                for k in 0..cfg.garbage {
                                    tx.alloc([k as u64; 15]);
                                }
                                if panic_now {
                                    panic!("injected panic");
                                }
                                (ops, wrote)
                            })
                        }));
                        match r {
                            Ok((ops, wrote)) => logs.push(Log {
                                rev: last_commit_rev(),
                                wrote,
                                ops,
                            }),
                            // Only the injected panics are expected (not, say, a full heap).
                            Err(p) if p.downcast_ref::<&str>() == Some(&"injected panic") => {}
                            Err(p) => std::panic::resume_unwind(p),
                        }
                    }
                    logs
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    check(heap, &initial, logs)
        .map(|transactions| Outcome {
            transactions,
            stats: stm.stats() - before,
            gc: stm.gc_stats(),
        })
        .unwrap_or_else(|e| panic!("serializability violated: {e}"))
}

/// Replays the logs in commit order; returns how many were checked.
fn check(heap: &Heap, initial: &[Option<Node>], mut logs: Vec<Log>) -> Result<usize, String> {
    // Every transaction has its own position (in GIL mode read-only ones share the position
    // of the last writer before them, and come after it).
    logs.sort_by_key(|l| (l.rev, !l.wrote));
    let writers: Vec<u64> = logs.iter().filter(|l| l.wrote).map(|l| l.rev).collect();
    if writers.windows(2).any(|w| w[0] == w[1]) {
        return Err("two writers committed at the same revision".into());
    }
    let mut slot_node: Vec<Option<u64>> = initial.iter().map(|n| n.map(|[id, _]| id)).collect();
    let mut value: HashMap<u64, u64> = initial.iter().flatten().map(|&[id, v]| (id, v)).collect();
    for (k, log) in logs.iter().enumerate() {
        for op in &log.ops {
            match *op {
                Op::Read { slot, seen } => {
                    let model = slot_node[slot].map(|id| [id, value[&id]]);
                    if model != seen {
                        return Err(format!(
                            "transaction #{k} (rev {}) read slot {slot} = {seen:?}, replay says {model:?}",
                            log.rev
                        ));
                    }
                }
                Op::Write {
                    slot,
                    value: v,
                    seen,
                } => {
                    if slot_node[slot] != seen {
                        return Err(format!(
                            "transaction #{k} wrote through a stale slot {slot}"
                        ));
                    }
                    if let Some(id) = seen {
                        value.insert(id, v);
                    }
                }
                Op::Alloc { slot, id, value: v } => {
                    value.insert(id, v);
                    slot_node[slot] = Some(id);
                }
                Op::Link { dst, src, seen } => {
                    if slot_node[src] != seen {
                        return Err(format!("transaction #{k} linked from a stale slot {src}"));
                    }
                    slot_node[dst] = seen;
                }
            }
        }
    }
    let final_heap = heap.contents();
    let model: Vec<Option<Node>> = slot_node
        .iter()
        .map(|s| s.map(|id| [id, value[&id]]))
        .collect();
    if final_heap != model {
        return Err(format!(
            "final heap {final_heap:?} differs from the replay {model:?}"
        ));
    }
    Ok(logs.len())
}

#[test]
fn committed_transactions_are_serializable_in_commit_order() {
    let out = run(Config {
        threads: 3,
        segments: 2,
        slots: 12,
        heap: 8 << 20,
        fault_rate: 0.0,
        panic_rate: 0,
        garbage: 0,
        budget: Budget::Transactions(3_000),
    });
    assert_eq!(out.transactions, 9_000);
}

#[test]
fn rollback_paths_under_fault_injection_and_panics_keep_serializability() {
    let out = run(Config {
        threads: 4, // more threads than segments: threads wait for segments
        segments: 2,
        slots: 8,
        heap: 8 << 20,
        fault_rate: 0.05,
        panic_rate: 50, // 0.5% of transactions panic
        garbage: 0,
        budget: Budget::Transactions(2_000),
    });
    assert!(out.stats.aborts_injected > 100, "{}", out.stats);
    assert!(out.stats.aborts_panic > 0, "{}", out.stats);
}

#[test]
fn the_collector_runs_under_the_checker_in_a_tiny_heap() {
    let out = run(Config {
        threads: 2,
        segments: 2,
        slots: 16,
        heap: 1 << 20,
        fault_rate: 0.01,
        panic_rate: 0,
        garbage: 8,
        budget: Budget::Transactions(2_000),
    });
    assert!(out.gc.collections > 0, "{:?}", out.gc);
}

/// The long soak (ignored by default): `STM_SOAK_SECS=600 cargo test --release -p
/// stm-runtime --test checker -- --ignored --nocapture soak`.
/// The process's resident memory now (VmRSS) and at its peak (VmHWM), in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The long soak (ignored by default): `STM_SOAK_SECS=600 cargo test --release -p
/// stm-runtime --test checker -- --ignored --nocapture soak`. One runtime for the whole run
/// (a 4 MiB heap, so the collector runs constantly, 1% fault injection), checked in rounds of
/// 5 s: each round's transactions are replayed from the heap's contents at its start.
/// Resident memory is sampled after each round, once the round's logs are dropped.
#[test]
#[ignore]
fn soak() {
    let secs: u64 = std::env::var("STM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut cfg = Config {
        threads: 4,
        segments: 2,
        slots: 24,
        heap: 4 << 20,
        fault_rate: 0.01,
        panic_rate: 0,
        garbage: 0,
        budget: Budget::Time(Duration::from_secs(5.min(secs))),
    };
    let heap = Heap::new(&cfg);
    let start = Instant::now();
    let (mut rounds, mut transactions, mut aborts) = (0u64, 0u64, 0u64);
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        cfg.panic_rate = if rounds % 3 == 0 { 20 } else { 0 };
        cfg.garbage = (rounds % 4) as usize;
        let out = run_round(&heap, &cfg, rounds + 1);
        rounds += 1;
        transactions += out.transactions as u64;
        aborts += out.stats.aborts();
        // Give the round's freed logs back to the OS, so RSS shows what stays alive.
        // SAFETY: malloc_trim only releases free memory of the C allocator.
        unsafe { libc::malloc_trim(0) };
        let (now, _) = memory_kib();
        rss.push(now);
        println!(
            "soak: round {rounds}: {} transactions checked; {}; {} collections so far; RSS {now} KiB",
            out.transactions, out.stats, out.gc.collections
        );
    }
    let (_, peak) = memory_kib();
    let gc = heap.stm.gc_stats();
    println!(
        "soak: {:.0} s, {rounds} rounds, {transactions} transactions checked, {aborts} aborts, \
         {} collections, 0 checker failures; RSS after each round {}..{} KiB (first round {} \
         KiB); peak {peak} KiB (includes the checker's own logs)",
        start.elapsed().as_secs_f64(),
        gc.collections,
        rss.iter().min().unwrap_or(&0),
        rss.iter().max().unwrap_or(&0),
        rss.first().unwrap_or(&0),
    );
}
