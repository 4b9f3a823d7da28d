//! The workloads, the runner that times them on an engine, and the result checks.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::ctx::{attempts, Ctx, Engine, Res, TxFn};
use crate::engines::{Layout, SETUP};
use crate::stamp;
use crate::structs::Kind;

/// The examples' generator (xorshift64*), one per thread.
pub use stm_examples::Rng;

/// A workload of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One shared counter incremented by every transaction.
    Counter,
    /// Bank transfers among `accounts` accounts.
    Bank {
        /// 10 000 (low contention) or 16 (high contention).
        accounts: usize,
        /// Each thread moves money only among its own share of the accounts (no data is
        /// shared between threads: what the runtime itself costs when threads run together).
        disjoint: bool,
    },
    /// A map structure with `updates` percent of puts and deletes, the rest lookups.
    Map {
        /// The structure.
        kind: Kind,
        /// Percent of updates.
        updates: u64,
        /// Keys are drawn from `0..range`; the even ones are present at the start.
        range: u64,
    },
    /// Long transactions: each reads 64 of 1024 shared chains of 4 objects (256 objects),
    /// mixes their contents (about 1 µs of work, like an interpreter's transaction), and adds
    /// the result to one of 1024 counters.
    Long,
    /// STAMP's vacation, low contention (see [`crate::stamp`]).
    Vacation {
        /// Items per table (and customers).
        relations: u64,
    },
    /// STAMP's kmeans: points added to 40 shared cluster accumulators (see [`crate::stamp`]).
    Kmeans,
    /// A Duhton demo (our runtime only; see [`crate::duhton_demos`]).
    Duhton(&'static str),
}

/// Every workload of the full matrix, in table order.
pub const ALL: &[Workload] = &[
    Workload::Counter,
    Workload::Bank {
        accounts: 10_000,
        disjoint: false,
    },
    Workload::Bank {
        accounts: 10_000,
        disjoint: true,
    },
    Workload::Bank {
        accounts: 16,
        disjoint: false,
    },
    list(10),
    list(50),
    list(90),
    hash(10),
    hash(50),
    hash(90),
    tree(10),
    tree(50),
    tree(90),
    Workload::Long,
    Workload::Vacation {
        relations: stamp::RELATIONS,
    },
    Workload::Kmeans,
];

/// The Duhton demos, as workloads (run by our runtime only).
pub fn duhton_workloads() -> Vec<Workload> {
    crate::duhton_demos::DEMOS
        .iter()
        .map(|(d, _, _)| Workload::Duhton(d))
        .collect()
}

const fn list(updates: u64) -> Workload {
    Workload::Map {
        kind: Kind::List,
        updates,
        range: 256,
    }
}
const fn hash(updates: u64) -> Workload {
    Workload::Map {
        kind: Kind::Hash { buckets: 16_384 },
        updates,
        range: 65_536,
    }
}
const fn tree(updates: u64) -> Workload {
    Workload::Map {
        kind: Kind::Tree,
        updates,
        range: 65_536,
    }
}

const LONG_CHAINS: usize = 1024;
const LONG_DEPTH: usize = 4;
const LONG_READS: usize = 64;
const INITIAL_BALANCE: i64 = 1_000;

impl Workload {
    /// The name used on the command line and in the results.
    pub fn name(self) -> String {
        match self {
            Workload::Counter => "counter".into(),
            Workload::Bank {
                accounts: 16,
                disjoint: false,
            } => "bank-high".into(),
            Workload::Bank {
                accounts: 10_000,
                disjoint: false,
            } => "bank-low".into(),
            Workload::Bank {
                accounts: 10_000,
                disjoint: true,
            } => "bank-disjoint".into(),
            Workload::Bank {
                accounts,
                disjoint: false,
            } => format!("bank-{accounts}"),
            Workload::Bank {
                accounts,
                disjoint: true,
            } => format!("bank-disjoint-{accounts}"),
            Workload::Map { kind, updates, .. } => {
                let k = match kind {
                    Kind::List => "list",
                    Kind::Hash { .. } => "hash",
                    Kind::Tree => "rbtree",
                };
                format!("{k}-{updates}")
            }
            Workload::Long => "long".into(),
            Workload::Vacation { .. } => "vacation".into(),
            Workload::Kmeans => "kmeans".into(),
            Workload::Duhton(d) => format!("duhton-{d}"),
        }
    }

    /// Whether an operation's work grows with the number of operations run: vacation's
    /// reservations accumulate in its one hash map, so a run of more operations works on
    /// bigger tables. Runs of such a workload compare fairly only at the same count (the
    /// others reach a steady size: fixed accounts, key ranges, points and clusters).
    pub fn work_grows_with_ops(self) -> bool {
        matches!(self, Workload::Vacation { .. })
    }

    /// Operations (transactions) of a full run, all threads together.
    pub fn ops(self) -> u64 {
        match self {
            Workload::Counter | Workload::Bank { .. } => 1_000_000,
            Workload::Map {
                kind: Kind::List, ..
            } => 50_000,
            Workload::Map {
                kind: Kind::Hash { .. },
                ..
            } => 300_000,
            Workload::Map {
                kind: Kind::Tree, ..
            } => 100_000,
            Workload::Long => 30_000,
            Workload::Vacation { .. } => 200_000,
            Workload::Kmeans => 400_000,
            Workload::Duhton(_) => 0,
        }
    }

    /// Keys are drawn from `0..range` (maps); the even ones are present at the start.
    fn range(self) -> u64 {
        match self {
            Workload::Map { range, .. } => range,
            _ => 0,
        }
    }

    /// The same workload on a small structure (for tests in debug builds).
    pub fn tiny(self) -> Workload {
        match self {
            Workload::Map {
                kind,
                updates,
                range,
            } => Workload::Map {
                kind: match kind {
                    Kind::Hash { .. } => Kind::Hash { buckets: 64 },
                    k => k,
                },
                updates,
                range: range.min(512),
            },
            Workload::Vacation { .. } => Workload::Vacation { relations: 256 },
            w => w,
        }
    }

    /// The slots and nodes a run of `ops` operations on `threads` threads needs.
    pub fn layout(self, threads: usize, ops: u64) -> Layout {
        let per_thread = ops.div_ceil(threads as u64) as usize;
        let (slots, setup_nodes, thread_nodes) = match self {
            Workload::Counter => (1, 0, 0),
            Workload::Bank { accounts, .. } => (accounts, 0, 0),
            Workload::Map { kind, .. } => {
                let slots = match kind {
                    Kind::Hash { buckets } => buckets,
                    _ => 1,
                };
                (slots, self.range() as usize / 2, per_thread)
            }
            Workload::Long => (2 * LONG_CHAINS, LONG_CHAINS * LONG_DEPTH, 0),
            // Three tables of items and the customers; a task adds a customer and two
            // reservations at most (an update adds two items).
            Workload::Vacation { relations } => (
                stamp::tables(relations).buckets(),
                4 * relations as usize,
                3 * per_thread,
            ),
            Workload::Kmeans => (stamp::CLUSTERS * (stamp::DIMS + 1), 0, 0),
            Workload::Duhton(_) => (0, 0, 0),
        };
        Layout {
            slots,
            setup_nodes,
            thread_nodes,
            threads,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Operations (committed transactions) timed.
    pub ops: u64,
    /// Wall-clock seconds of the timed phase.
    pub seconds: f64,
    /// Committed transactions.
    pub commits: u64,
    /// Aborted attempts (attempts - commits).
    pub aborts: u64,
    /// The worker threads' CPU time during the timed phase, summed (`None` where it is not
    /// measured): against `seconds × threads`, whether the threads really ran at once.
    pub cpu_seconds: Option<f64>,
    /// The result check: a summary, or what went wrong.
    pub check: Result<String, String>,
}

// ---- operations ------------------------------------------------------------------------

struct Incr;
impl TxFn for Incr {
    type Out = ();
    #[inline]
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        let v = c.val(0)?;
        c.set_val(0, v + 1)
    }
}

struct Transfer {
    from: usize,
    to: usize,
    amount: i64,
}
impl TxFn for Transfer {
    type Out = bool;
    #[inline]
    fn call<C: Ctx>(&self, c: &mut C) -> Res<bool> {
        let a = c.val(self.from)?;
        if a < self.amount {
            return Ok(false);
        }
        let b = c.val(self.to)?;
        c.set_val(self.from, a - self.amount)?;
        c.set_val(self.to, b + self.amount)?;
        Ok(true)
    }
}

enum MapOp {
    Get(u64),
    Put(u64, u64),
    Del(u64),
}
struct OnMap(Kind, MapOp);
impl TxFn for OnMap {
    type Out = Option<u64>;
    fn read_only(&self) -> bool {
        matches!(self.1, MapOp::Get(_))
    }
    #[inline]
    fn call<C: Ctx>(&self, c: &mut C) -> Res<Option<u64>> {
        match self.1 {
            MapOp::Get(k) => self.0.get(c, k),
            MapOp::Put(k, v) => self.0.put(c, k, v),
            MapOp::Del(k) => self.0.del(c, k),
        }
    }
}

struct Dump(Kind);
impl TxFn for Dump {
    type Out = Result<Vec<(u64, u64)>, String>;
    fn read_only(&self) -> bool {
        true
    }
    fn call<C: Ctx>(&self, c: &mut C) -> Res<Self::Out> {
        self.0.dump(c)
    }
}

struct Fill(Kind, Vec<u64>);
impl TxFn for Fill {
    type Out = ();
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        for &k in &self.1 {
            self.0.put(c, k, k)?;
        }
        Ok(())
    }
}

struct SetVals(std::ops::Range<usize>, i64);
impl TxFn for SetVals {
    type Out = ();
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        for i in self.0.clone() {
            c.set_val(i, self.1)?;
        }
        Ok(())
    }
}

struct SumVals(std::ops::Range<usize>);
impl TxFn for SumVals {
    type Out = (i64, i64);
    fn read_only(&self) -> bool {
        true
    }
    fn call<C: Ctx>(&self, c: &mut C) -> Res<(i64, i64)> {
        let (mut sum, mut min) = (0, i64::MAX);
        for i in self.0.clone() {
            let v = c.val(i)?;
            sum += v;
            min = min.min(v);
        }
        Ok((sum, min))
    }
}

/// Builds the long workload's chains: slot `i < LONG_CHAINS` heads a chain of
/// `LONG_DEPTH` nodes with pseudo-random keys.
struct BuildChains(std::ops::Range<usize>, u64);
impl TxFn for BuildChains {
    type Out = ();
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        let mut rng = Rng::new(self.1);
        for i in self.0.clone() {
            let mut next = None;
            for _ in 0..LONG_DEPTH {
                let n = c.alloc(crate::ctx::NodeV {
                    right: next,
                    ..crate::ctx::NodeV::leaf(rng.next_u64(), rng.next_u64(), false)
                })?;
                next = Some(n);
            }
            c.set_link(i, next)?;
        }
        Ok(())
    }
}

/// One long transaction: the work of an interpreter's transaction over shared objects.
struct LongTx(u64);
impl TxFn for LongTx {
    type Out = i64;
    #[inline]
    fn call<C: Ctx>(&self, c: &mut C) -> Res<i64> {
        let mut rng = Rng::new(self.0);
        let mut h = self.0;
        for _ in 0..LONG_READS {
            let mut cur = c.link(rng.below(LONG_CHAINS as u64) as usize)?;
            while let Some(n) = cur {
                let v = c.node(n)?;
                h = mix(mix(h ^ v.key) ^ v.val);
                cur = v.right;
            }
        }
        let counter = LONG_CHAINS + (h % LONG_CHAINS as u64) as usize;
        let add = 1 + (h >> 60) as i64;
        let v = c.val(counter)?;
        c.set_val(counter, v + add)?;
        Ok(add)
    }
}

#[inline(always)]
fn mix(mut h: u64) -> u64 {
    for _ in 0..3 {
        h = (h ^ (h >> 31))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(27);
    }
    h
}

// ---- the runner ------------------------------------------------------------------------

/// What one worker thread reports.
enum Work {
    Counted(i64),
    Sums(Vec<i64>),
    Model(Result<BTreeMap<u64, u64>, String>),
}

/// Runs workload `w` with `ops` operations on `threads` threads of engine `e` (already
/// built for `w.layout(threads, ops)`), and checks the result.
pub fn run<E: Engine>(e: &E, w: Workload, threads: usize, ops: u64) -> Outcome {
    let per_thread = ops.div_ceil(threads as u64);
    let ops = per_thread * threads as u64;
    // Setup, on this thread.
    e.enter(SETUP);
    let mut initial = BTreeMap::new();
    match w {
        Workload::Counter => {}
        Workload::Bank { accounts, .. } => {
            // Small setup transactions: some crates' write sets are linear lists.
            for lo in (0..accounts).step_by(64) {
                e.atomically(&SetVals(lo..(lo + 64).min(accounts), INITIAL_BALANCE));
            }
        }
        Workload::Map { kind, .. } => {
            let mut keys: Vec<u64> = (0..w.range()).step_by(2).collect();
            let mut rng = Rng::new(99);
            for i in (1..keys.len()).rev() {
                keys.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for chunk in keys.chunks(64) {
                e.atomically(&Fill(kind, chunk.to_vec()));
            }
            initial = keys.iter().map(|&k| (k, k)).collect();
        }
        Workload::Duhton(_) => unreachable!("the Duhton demos run in crate::duhton_demos"),
        Workload::Vacation { relations } => {
            for lo in (0..relations).step_by(64) {
                let hi = (lo + 64).min(relations);
                e.atomically(&stamp::VacationSetup(lo..hi, lo, relations));
            }
        }
        Workload::Kmeans => {}
        Workload::Long => {
            let mut rng = Rng::new(12345);
            for lo in (0..LONG_CHAINS).step_by(16) {
                e.atomically(&BuildChains(lo..lo + 16, rng.next_u64()));
            }
        }
    }
    let barrier = Barrier::new(threads);
    let results: Vec<(Work, u64, Instant, Instant, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, initial) = (&barrier, &initial);
                s.spawn(move || {
                    e.enter(t);
                    let mut rng = Rng::new(t as u64 + 1);
                    let a0 = attempts();
                    barrier.wait();
                    let start = Instant::now();
                    let cpu = stm_runtime::thread_cpu_time();
                    let work = worker(e, w, t, threads, per_thread, &mut rng, initial);
                    let cpu = stm_runtime::thread_cpu_time() - cpu;
                    let end = Instant::now();
                    (work, attempts() - a0, start, end, cpu)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // From the first thread's start to the last thread's end.
    let start = results.iter().map(|r| r.2).min().expect("a thread");
    let end = results.iter().map(|r| r.3).max().expect("a thread");
    let seconds = (end - start).as_secs_f64();
    let attempts: u64 = results.iter().map(|r| r.1).sum();
    let cpu: Duration = results.iter().map(|r| r.4).sum();
    e.enter(SETUP);
    let check = check(
        e,
        w,
        threads,
        ops,
        results.into_iter().map(|r| r.0).collect(),
        &initial,
    );
    Outcome {
        ops,
        seconds,
        commits: ops,
        aborts: attempts.saturating_sub(ops),
        cpu_seconds: Some(cpu.as_secs_f64()),
        check,
    }
}

fn worker<E: Engine>(
    e: &E,
    w: Workload,
    t: usize,
    threads: usize,
    ops: u64,
    rng: &mut Rng,
    initial: &BTreeMap<u64, u64>,
) -> Work {
    match w {
        Workload::Counter => {
            for _ in 0..ops {
                black_box(e).atomically(&Incr);
            }
            Work::Counted(ops as i64)
        }
        Workload::Bank { accounts, disjoint } => {
            // This thread's accounts: all of them, or its own share.
            let (base, n) = if disjoint {
                let share = accounts / threads;
                (t * share, share as u64)
            } else {
                (0, accounts as u64)
            };
            let mut moved = 0;
            for _ in 0..ops {
                let from = base + rng.below(n) as usize;
                let mut to = base + rng.below(n - 1) as usize;
                if to >= from {
                    to += 1;
                }
                let amount = rng.below(100) as i64;
                moved += i64::from(black_box(e).atomically(&Transfer { from, to, amount }));
            }
            Work::Counted(moved)
        }
        Workload::Map { kind, updates, .. } => {
            let (t64, n64) = (t as u64, threads as u64);
            let mut model: BTreeMap<u64, u64> = initial
                .iter()
                .filter(|(k, _)| *k % n64 == t64)
                .map(|(&k, &v)| (k, v))
                .collect();
            for i in 0..ops {
                let key = rng.below(w.range() / n64) * n64 + t64;
                let op = rng.below(100);
                let (got, want) = if op < updates / 2 {
                    let v = i * n64 + t64 + (1 << 32);
                    (
                        black_box(e).atomically(&OnMap(kind, MapOp::Put(key, v))),
                        model.insert(key, v),
                    )
                } else if op < updates {
                    (
                        black_box(e).atomically(&OnMap(kind, MapOp::Del(key))),
                        model.remove(&key),
                    )
                } else {
                    (
                        black_box(e).atomically(&OnMap(kind, MapOp::Get(key))),
                        model.get(&key).copied(),
                    )
                };
                if got != want {
                    return Work::Model(Err(format!(
                        "thread {t}: op {i} on key {key}: got {got:?}, the model says {want:?}"
                    )));
                }
            }
            Work::Model(Ok(model))
        }
        Workload::Duhton(_) => unreachable!("not an engine workload"),
        Workload::Vacation { relations } => {
            let mut made = 0;
            for _ in 0..ops {
                made += black_box(e).atomically(&stamp::Task::random(rng, relations));
            }
            Work::Counted(made)
        }
        Workload::Kmeans => {
            let centres = stamp::centres();
            let mut sums = vec![0i64; stamp::CLUSTERS * (stamp::DIMS + 1)];
            for _ in 0..ops {
                let (p, k) = stamp::point(rng, &centres);
                black_box(e).atomically(&stamp::AddPoint(p, k));
                let base = k * (stamp::DIMS + 1);
                for (d, x) in p.iter().enumerate() {
                    sums[base + d] += x;
                }
                sums[base + stamp::DIMS] += 1;
            }
            Work::Sums(sums)
        }
        Workload::Long => {
            let mut added = 0;
            for _ in 0..ops {
                added += black_box(e).atomically(&LongTx(rng.next_u64()));
            }
            Work::Counted(added)
        }
    }
}

fn check<E: Engine>(
    e: &E,
    w: Workload,
    _threads: usize,
    ops: u64,
    work: Vec<Work>,
    _initial: &BTreeMap<u64, u64>,
) -> Result<String, String> {
    let counted = || -> i64 {
        work.iter()
            .map(|w| match w {
                Work::Counted(n) => *n,
                Work::Model(_) | Work::Sums(_) => 0,
            })
            .sum()
    };
    match w {
        Workload::Counter => {
            let (v, _) = e.atomically(&SumVals(0..1));
            if v != ops as i64 {
                return Err(format!("counter is {v}, expected {ops}"));
            }
            Ok(format!("counter = {v} = transactions"))
        }
        Workload::Bank { accounts, .. } => {
            let (sum, min) = e.atomically(&SumVals(0..accounts));
            let expected = INITIAL_BALANCE * accounts as i64;
            if sum != expected {
                return Err(format!("total is {sum}, expected {expected}"));
            }
            if min < 0 {
                return Err(format!("a balance went negative: {min}"));
            }
            Ok(format!(
                "total {sum} conserved, no negative balance, {} transfers",
                counted()
            ))
        }
        Workload::Map { kind, .. } => {
            let mut expected = BTreeMap::new();
            for w in work {
                if let Work::Model(m) = w {
                    expected.extend(m?);
                }
            }
            let got = e.atomically(&Dump(kind))?;
            let want: Vec<(u64, u64)> = expected.into_iter().collect();
            if got != want {
                return Err(format!(
                    "final structure differs from the sequential model ({} vs {} entries)",
                    got.len(),
                    want.len()
                ));
            }
            Ok(format!(
                "every result and the final {} entries match the model",
                got.len()
            ))
        }
        Workload::Duhton(_) => unreachable!("not an engine workload"),
        Workload::Vacation { relations } => {
            let dump = e.atomically(&Dump(stamp::tables(relations)))?;
            stamp::check_vacation(&dump, counted())
        }
        Workload::Kmeans => {
            let mut want = vec![0i64; stamp::CLUSTERS * (stamp::DIMS + 1)];
            for w in &work {
                if let Work::Sums(s) = w {
                    for (a, b) in want.iter_mut().zip(s) {
                        *a += b;
                    }
                }
            }
            let got = e.atomically(&stamp::ReadClusters);
            if got != want {
                return Err("the cluster accumulators differ from the threads' sums".into());
            }
            let points: i64 = (0..stamp::CLUSTERS)
                .map(|k| got[k * (stamp::DIMS + 1) + stamp::DIMS])
                .sum();
            Ok(format!(
                "{points} points: every accumulator equals the threads' sums"
            ))
        }
        Workload::Long => {
            let (sum, _) = e.atomically(&SumVals(LONG_CHAINS..2 * LONG_CHAINS));
            let expected = counted();
            if sum != expected {
                return Err(format!("counters sum to {sum}, expected {expected}"));
            }
            Ok(format!("counters sum to {sum} as the threads computed"))
        }
    }
}
