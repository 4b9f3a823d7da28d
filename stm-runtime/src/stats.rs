//! Counters of commits, aborts by cause and inevitable transactions.
//!
//! Each segment keeps its own counters (written only by the thread that owns the segment, so
//! an increment is a plain load and store, no read-modify-write); each thread keeps its own in
//! a thread-local. [`Stm::stats`](crate::Stm::stats) sums the segments;
//! [`thread_stats`] reads the calling thread's.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a transaction attempt did not commit, or what else is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// A commit that wrote or allocated (`Stats::commits` is this plus `ReadOnlyCommit`, so
    /// that a commit bumps one counter).
    WriteCommit = 0,
    ReadOnlyCommit,
    AbortReadWrite,
    AbortWriteWrite,
    AbortExplicit,
    AbortPanic,
    AbortRetry,
    Inevitable,
    InevitableByPolicy,
    AbortInjected,
    BreakCommit,
    BreakAbort,
}

const COUNTERS: usize = 12;

/// A snapshot of transaction counters, for one thread or for a whole runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transactions committed (read-only ones included).
    pub commits: u64,
    /// Of `commits`, those that wrote and allocated nothing (they commit without validation).
    pub read_only_commits: u64,
    /// Attempts aborted because another transaction committed a write to an object they read.
    pub aborts_read_write: u64,
    /// Attempts aborted because another transaction committed a write to an object they wrote.
    pub aborts_write_write: u64,
    /// Transactions rolled back because the closure of
    /// [`try_atomically`](crate::Stm::try_atomically) returned `Err`.
    pub aborts_explicit: u64,
    /// Attempts rolled back because the closure panicked.
    pub aborts_panic: u64,
    /// Attempts abandoned with [`Tx::retry`](crate::Tx::retry), or restarted by the runtime
    /// (to put a break point before I/O, or when a `Root` names an object whose allocating
    /// transaction is still committing).
    pub aborts_retry: u64,
    /// Transactions that became inevitable (by [`Tx::become_inevitable`](crate::Tx::become_inevitable)
    /// or by the progress policy).
    pub inevitable: u64,
    /// Of `inevitable`, those made inevitable by the progress policy after repeated aborts.
    pub inevitable_by_policy: u64,
    /// Attempts aborted by fault injection ([`Builder::inject_faults`](crate::Builder::inject_faults)).
    pub aborts_injected: u64,
    /// Of `commits`, those cut by a break point of
    /// [`Stm::run_in_transactions`](crate::Stm::run_in_transactions) rather than ending with
    /// their code.
    pub break_commits: u64,
    /// Of the aborted attempts ([`Stats::aborts`]), those of transactions run between break
    /// points (by [`Stm::run_in_transactions`](crate::Stm::run_in_transactions) or the loops
    /// of an `#[stm::in_transactions]` function) rather than by an explicit `atomically`.
    pub break_aborts: u64,
}

impl Stats {
    /// All aborted or rolled-back attempts, whatever the cause.
    pub fn aborts(&self) -> u64 {
        self.aborts_read_write
            + self.aborts_write_write
            + self.aborts_explicit
            + self.aborts_panic
            + self.aborts_retry
            + self.aborts_injected
    }

    /// Aborts caused by conflicts with other transactions.
    pub fn conflicts(&self) -> u64 {
        self.aborts_read_write + self.aborts_write_write
    }

    fn from_array(a: [u64; COUNTERS]) -> Stats {
        Stats {
            commits: a[Counter::WriteCommit as usize] + a[Counter::ReadOnlyCommit as usize],
            read_only_commits: a[Counter::ReadOnlyCommit as usize],
            aborts_read_write: a[Counter::AbortReadWrite as usize],
            aborts_write_write: a[Counter::AbortWriteWrite as usize],
            aborts_explicit: a[Counter::AbortExplicit as usize],
            aborts_panic: a[Counter::AbortPanic as usize],
            aborts_retry: a[Counter::AbortRetry as usize],
            inevitable: a[Counter::Inevitable as usize],
            inevitable_by_policy: a[Counter::InevitableByPolicy as usize],
            aborts_injected: a[Counter::AbortInjected as usize],
            break_commits: a[Counter::BreakCommit as usize],
            break_aborts: a[Counter::BreakAbort as usize],
        }
    }
}

impl std::ops::Add for Stats {
    type Output = Stats;
    fn add(self, o: Stats) -> Stats {
        Stats {
            commits: self.commits + o.commits,
            read_only_commits: self.read_only_commits + o.read_only_commits,
            aborts_read_write: self.aborts_read_write + o.aborts_read_write,
            aborts_write_write: self.aborts_write_write + o.aborts_write_write,
            aborts_explicit: self.aborts_explicit + o.aborts_explicit,
            aborts_panic: self.aborts_panic + o.aborts_panic,
            aborts_retry: self.aborts_retry + o.aborts_retry,
            inevitable: self.inevitable + o.inevitable,
            inevitable_by_policy: self.inevitable_by_policy + o.inevitable_by_policy,
            aborts_injected: self.aborts_injected + o.aborts_injected,
            break_commits: self.break_commits + o.break_commits,
            break_aborts: self.break_aborts + o.break_aborts,
        }
    }
}

impl std::ops::Sub for Stats {
    type Output = Stats;
    /// The counts between two snapshots (`later - earlier`).
    fn sub(self, o: Stats) -> Stats {
        Stats {
            commits: self.commits - o.commits,
            read_only_commits: self.read_only_commits - o.read_only_commits,
            aborts_read_write: self.aborts_read_write - o.aborts_read_write,
            aborts_write_write: self.aborts_write_write - o.aborts_write_write,
            aborts_explicit: self.aborts_explicit - o.aborts_explicit,
            aborts_panic: self.aborts_panic - o.aborts_panic,
            aborts_retry: self.aborts_retry - o.aborts_retry,
            inevitable: self.inevitable - o.inevitable,
            inevitable_by_policy: self.inevitable_by_policy - o.inevitable_by_policy,
            aborts_injected: self.aborts_injected - o.aborts_injected,
            break_commits: self.break_commits - o.break_commits,
            break_aborts: self.break_aborts - o.break_aborts,
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commits ({} read-only, {} at break points), {} aborts ({} read-write, {} write-write, {} explicit, \
             {} panic, {} retry, {} injected; {} between break points), {} inevitable ({} by policy)",
            self.commits,
            self.read_only_commits,
            self.break_commits,
            self.aborts(),
            self.aborts_read_write,
            self.aborts_write_write,
            self.aborts_explicit,
            self.aborts_panic,
            self.aborts_retry,
            self.aborts_injected,
            self.break_aborts,
            self.inevitable,
            self.inevitable_by_policy
        )
    }
}

/// One segment's counters.
#[derive(Default)]
pub(crate) struct SegmentStats {
    counts: [AtomicU64; COUNTERS],
}

impl SegmentStats {
    /// Counts one event. Only the segment's owner calls this, so load + store cannot lose an
    /// increment; readers from other threads may see a slightly old value.
    #[inline]
    pub(crate) fn bump(&self, c: Counter) {
        let a = &self.counts[c as usize];
        a.store(a.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        THREAD.with(|t| {
            let cell = &t[c as usize];
            cell.set(cell.get() + 1);
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats::from_array(std::array::from_fn(|i| {
            self.counts[i].load(Ordering::Relaxed)
        }))
    }
}

thread_local! {
    static THREAD: [Cell<u64>; COUNTERS] = const { [const { Cell::new(0) }; COUNTERS] };
}

/// The attempts the calling thread has lost to conflicts (and injected faults, which stand
/// for them), over every runtime: what the series budget halves on.
pub(crate) fn thread_conflicts() -> u64 {
    THREAD.with(|t| {
        t[Counter::AbortReadWrite as usize].get()
            + t[Counter::AbortWriteWrite as usize].get()
            + t[Counter::AbortInjected as usize].get()
    })
}

/// The calling thread's counters, over every runtime it has used.
pub fn thread_stats() -> Stats {
    Stats::from_array(THREAD.with(|t| std::array::from_fn(|i| t[i].get())))
}

/// What a collection found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcStats {
    /// Collections run so far.
    pub collections: u64,
    /// Objects alive after the last collection.
    pub live_objects: u64,
    /// Bytes of live objects after the last collection (headers included).
    pub live_bytes: u64,
    /// Objects freed by the last collection.
    pub freed_objects: u64,
    /// Bytes freed by the last collection.
    pub freed_bytes: u64,
}

/// The collector's state, behind the runtime's `gc` mutex (one collection at a time).
#[derive(Default)]
pub(crate) struct GcState {
    pub stats: GcStats,
}
