//! # stm-bench: the benchmark suite
//!
//! Workloads (a counter, bank transfers, a sorted list, a hash map, a red-black tree, long
//! transactions) × implementations (the sequential program, our runtime in STM and GIL
//! mode, a global `Mutex`, a global `RwLock`, the Rust STM crates) × thread counts. Every
//! run checks its result (totals conserved, structures equal to a sequential model).
//!
//! The workloads are written once, against [`ctx::Ctx`]; each implementation provides it.
//! See `docs/bench.md`.

#![warn(missing_docs)]

pub mod ctx;
pub mod duhton_demos;
pub mod engines;
pub mod probe;
pub mod report;
pub mod rt;
pub mod schedule;
pub mod stamp;
pub mod structs;
pub mod workloads;

use engines::{FastStm, Kovan, MutexEngine, RwLockEngine, Seq, Stm04, Xstm};
use workloads::{Outcome, Workload};

/// An implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// The plain sequential program (one thread only).
    Seq,
    /// Our runtime, STM mode.
    Stm,
    /// Our runtime, STM mode, with at least two segments even on one thread: the whole
    /// commit protocol (committed heap, version words, imports), which a runtime of one
    /// segment skips. Its 1-thread figure is what the protocol costs a thread alone, apart
    /// from any sharing between threads.
    StmWide,
    /// Our runtime, GIL mode (a second build with `--features gil`).
    Gil,
    /// A global `std::sync::Mutex`.
    Mutex,
    /// A global `std::sync::RwLock` (lookups share it).
    RwLock,
    /// The `stm` crate 0.4.
    StmCrate,
    /// The `fast-stm` crate.
    FastStm,
    /// The `kovan-stm` crate 0.2.0.
    Kovan,
    /// The `xstm` crate.
    Xstm,
}

impl Impl {
    /// Every implementation, in table order.
    pub const ALL: [Impl; 10] = [
        Impl::Seq,
        Impl::Stm,
        Impl::StmWide,
        Impl::Gil,
        Impl::Mutex,
        Impl::RwLock,
        Impl::StmCrate,
        Impl::FastStm,
        Impl::Kovan,
        Impl::Xstm,
    ];

    /// The name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Seq => "seq",
            Impl::Stm => "stm",
            Impl::StmWide => "stm-wide",
            Impl::Gil => "gil",
            Impl::Mutex => "mutex",
            Impl::RwLock => "rwlock",
            Impl::StmCrate => "stm-0.4",
            Impl::FastStm => "fast-stm",
            Impl::Kovan => "kovan-stm",
            Impl::Xstm => "xstm",
        }
    }

    /// The implementation called `name`.
    pub fn parse(name: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Our runtime in the mode this binary was built with (`stm`, or `gil` with the
    /// `gil` feature).
    pub fn runtime_here() -> Impl {
        if stm_runtime::BARRIERS {
            Impl::Stm
        } else {
            Impl::Gil
        }
    }

    /// Whether this binary can run it (our runtime only in the mode it was built with).
    pub fn in_process(self) -> bool {
        match self {
            Impl::Stm | Impl::Gil => self == Impl::runtime_here(),
            Impl::StmWide => Impl::runtime_here() == Impl::Stm,
            _ => true,
        }
    }

    /// Whether it runs with `threads` threads (the sequential program only with one).
    pub fn supports(self, threads: usize) -> bool {
        self != Impl::Seq || threads == 1
    }

    /// Whether it runs workload `w` (the Duhton interpreter runs on our runtime only).
    pub fn runs(self, w: Workload) -> bool {
        !matches!(w, Workload::Duhton(_)) || matches!(self, Impl::Stm | Impl::Gil)
    }
}

/// Runs `w` with `ops` operations on `threads` threads of implementation `i` in this process
/// (for a Duhton demo, `ops` 0 asks for its small sizes, anything else for its full ones).
///
/// # Panics
/// If `i` is not [`Impl::in_process`] or does not support `threads`.
pub fn run(i: Impl, w: Workload, threads: usize, ops: u64) -> Outcome {
    assert!(
        i.in_process() && i.supports(threads) && i.runs(w),
        "{} cannot run here",
        i.name()
    );
    if let Workload::Duhton(d) = w {
        // The demos are fixed programs; `ops` below a full run's picks the small sizes.
        return duhton_demos::run(d, threads, ops == 0);
    }
    let l = w.layout(threads, ops);
    match i {
        Impl::Seq => workloads::run(&Seq::new(&l), w, threads, ops),
        Impl::Stm | Impl::Gil => workloads::run(&rt::Rt::new(&l, 1), w, threads, ops),
        Impl::StmWide => workloads::run(&rt::Rt::new(&l, 2), w, threads, ops),
        Impl::Mutex => workloads::run(&MutexEngine::new(&l), w, threads, ops),
        Impl::RwLock => workloads::run(&RwLockEngine::new(&l), w, threads, ops),
        Impl::StmCrate => workloads::run(&Stm04::new(&l), w, threads, ops),
        Impl::FastStm => workloads::run(&FastStm::new(&l), w, threads, ops),
        Impl::Kovan => workloads::run(&Kovan::new(&l), w, threads, ops),
        Impl::Xstm => workloads::run(&Xstm::new(&l), w, threads, ops),
    }
}
