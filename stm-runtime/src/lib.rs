//! # stm-runtime: segment-mapped software transactional memory
//!
//! A Rust counterpart of PyPy's stmgc. Ordinary Rust code runs on many cores at once inside
//! *transactions*; a transaction sees one consistent snapshot of a shared heap, conflicting
//! transactions are rolled back and run again, and the result is always that of some serial
//! order.
//!
//! * The heap is mapped privately once per **segment**; each running
//!   transaction owns a segment, so each sees its own version of the heap. Handles are
//!   offsets, valid in every segment.
//! * The **read barrier** is one test of a `u16` read marker; an attempt's first read of an
//!   object lists it in the read set and, if a newer version was committed, copies that
//!   version into the segment first. The **write barrier** is one flag test on the object.
//!   Objects allocated by the running transaction need neither.
//! * A commit locks the version words of what it wrote, checks that what it read is
//!   unchanged, and publishes its images to a **committed heap**; other segments import an
//!   object when they next read it. Commits never stop other threads, and no line is
//!   written by every commit (`ARCHITECTURE.md`, "The commit protocol").
//! * **Inevitable** transactions (for I/O) never abort; at most one runs at a time.
//!
//! ```
//! use stm_runtime::Stm;
//!
//! let stm = Stm::builder().segments(2).heap_size(16 << 20).build()?;
//! // Two accounts, kept alive across transactions by roots.
//! let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(100i64)), tx.root(tx.alloc(0i64))));
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| {
//!             for _ in 0..10 {
//!                 stm.atomically(|tx| {
//!                     let (a, b) = (a.get(tx), b.get(tx));
//!                     a.set(a.get() - 1);
//!                     b.set(b.get() + 1);
//!                 });
//!             }
//!         });
//!     }
//! });
//! assert_eq!(stm.atomically(|tx| (a.get(tx).get(), b.get(tx).get())), (80, 20));
//! # Ok::<(), stm_runtime::StmError>(())
//! ```
//!
//! With the cargo feature `gil`, the same API runs transactions one at a time under a global
//! lock with no read barriers: the baseline that single-thread overhead is measured against.
//!
//! See `ARCHITECTURE.md` in the repository for the design, the commit protocol and the
//! invariants the `unsafe` code relies on.

#![warn(missing_docs)]

mod commit;
mod committed;
mod config;
mod facade;
mod footprint;
mod gc;
mod handle;
mod heap;
mod macro_support;
mod owner;
mod pool;
mod protocol;
mod queue;
mod report;
mod runtime;
mod segment;
mod series;
mod stats;
mod sys;
mod text;
mod tmap;
mod tqueue;
mod tvec;
mod tx;

pub use config::{Config, StmError, MAX_HEAP_SIZE, MAX_SEGMENTS, MIN_HEAP_SIZE};
pub use handle::{Field, Gc, GcRef, Object, Plain, Root, Tracer};
pub use queue::{QueueOrder, RunReport, Tasks, TransactionQueue};
pub use report::{ConflictKind, ConflictReport, ConflictSite, Site};
pub use runtime::{Builder, Stm};
pub use series::{
    set_thread_budget, set_thread_budget_limit, thread_budget, MAX_BUDGET, START_BUDGET,
    TARGET_TIME,
};
pub use stats::{thread_stats, GcStats, Stats};
pub use sys::thread_cpu_time;
pub use text::{GcString, ReadOnlyVec, TString};
pub use tmap::{GcHashMap, MapHead, MapKey, THashMap, MAP_SHARDS};
pub use tqueue::{GcQueue, QueueHead, TQueue, QUEUE_LANES};
pub use tvec::{Element, GcVec, Iter, TVec, VecHead, CARD};
pub use tx::{atomically, in_transaction, last_commit_rev, Tx, BARRIERS};

/// The macros (from the `stm-macros` crate): `#[object]` for shared-object types,
/// `#[transactional]` for functions that access them, `#[in_transactions]` for long-running
/// functions whose loops run as series of transactions cut at break points, `#[atomic]` for
/// loops and blocks in those that must not break, `#[derive(Plain)]` for plain data fields,
/// `tx!()` for the running transaction inside transactional code, and `tx_safe!` to declare a
/// call transaction-safe. See `docs/macros.md`.
pub use stm_macros::{
    atomic, in_transactions, not_transactional, object, transactional, tx, tx_safe, Plain,
};

/// The README's examples, compiled and run as doctests (`cargo test --doc -p stm-runtime`), so
/// that what a newcomer copies from it works.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Support for the code the macros write. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::macro_support::*;
}
