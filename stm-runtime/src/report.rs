//! Conflict reports: which objects and source lines cost the most time in aborts.
//!
//! PyPy-STM's users said the conflict report was what made speed-ups possible. When reporting
//! is on ([`Stm::set_conflict_reports`](crate::Stm::set_conflict_reports), or the environment
//! variable `STM_CONFLICT_REPORT=1` when the runtime is created), every abort is recorded with
//! the object's type, the kind of conflict, the source location of both sides where known, and
//! the time the aborted attempt had run. [`Stm::conflict_report`](crate::Stm::conflict_report)
//! aggregates them, most time lost first.
//!
//! Where the locations come from: writes go through `#[track_caller]` barriers
//! (`Gc::set`, `Gc::update`, `Gc::write_field`, `Tx::alloc`), so the write barrier's slow path
//! knows the line of the first write to each object; a committed entry carries those lines, so
//! the loser learns where the winner wrote. The loser's own side is its first write to the
//! object (write-write), or else the line of its `atomically` call (a read barrier records
//! nothing: it stays one store). With reporting off, the only cost is a flag test at the start
//! of each attempt and in the write barrier's slow path; the fast paths do not change.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A source location (from `#[track_caller]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    /// The source file, as the compiler names it.
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Site {
    /// The location of the caller (through `#[track_caller]` functions).
    #[track_caller]
    #[inline(always)]
    pub(crate) fn caller() -> Site {
        Site::from(Location::caller())
    }
}

impl From<&'static Location<'static>> for Site {
    fn from(l: &'static Location<'static>) -> Site {
        Site {
            file: l.file(),
            line: l.line(),
            column: l.column(),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where an object was written or allocated, and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WriteSite {
    pub site: Site,
    pub type_name: &'static str,
}

/// What kind of conflict cost the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConflictKind {
    /// This transaction read an object another one wrote and committed first.
    ReadWrite,
    /// Both transactions wrote the object; the other committed first.
    WriteWrite,
    /// Time spent waiting for the inevitable transaction to finish (not an abort; wall time).
    Inevitable,
    /// Not a conflict: transactions that became inevitable at this site, on their code's
    /// request (`Tx::become_inevitable`, which the macros call before I/O). Such a transaction
    /// never aborts, and holds up every other commit until it ends.
    BecameInevitable,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictKind::ReadWrite => "read-write",
            ConflictKind::WriteWrite => "write-write",
            ConflictKind::Inevitable => "inevitable (waiting)",
            ConflictKind::BecameInevitable => "became inevitable",
        })
    }
}

/// One line of a report: every abort with the same kind, object type and sites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictSite {
    /// The kind of conflict.
    pub kind: ConflictKind,
    /// The Rust type of the contended object, when known.
    pub object_type: Option<&'static str>,
    /// Where the transaction that lost touched the object (its first write), or else where it
    /// was started.
    pub this_side: Option<Site>,
    /// Where the transaction that won wrote the object.
    pub other_side: Option<Site>,
    /// Aborted attempts (or waits, for [`ConflictKind::Inevitable`]).
    pub count: u64,
    /// Thread CPU time those attempts had run before aborting (for
    /// [`ConflictKind::Inevitable`], the wall time waited; for
    /// [`ConflictKind::BecameInevitable`], zero).
    pub time_lost: Duration,
    /// The losing transactions ran between break points (`Stm::run_in_transactions` or the
    /// loops of an `#[stm::in_transactions]` function), not as an explicit `atomically`:
    /// such rows are kept apart from the explicit ones.
    pub between_breaks: bool,
}

/// Aborts grouped by site, most time lost first. `Display` prints it for people.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConflictReport {
    /// The groups, most time lost first.
    pub sites: Vec<ConflictSite>,
    /// Thread CPU time that transactions ran while reporting was on (attempts that committed
    /// and attempts that aborted): what the time lost is a share of.
    pub transaction_time: Duration,
}

impl ConflictReport {
    /// Total time lost over every site.
    pub fn time_lost(&self) -> Duration {
        self.sites.iter().map(|s| s.time_lost).sum()
    }

    /// Total aborted attempts (and inevitable waits) over every site.
    pub fn count(&self) -> u64 {
        self.sites
            .iter()
            .filter(|s| s.kind != ConflictKind::BecameInevitable)
            .map(|s| s.count)
            .sum()
    }

    /// `time` as a percentage of [`ConflictReport::transaction_time`] (0 if none was measured).
    pub fn percent(&self, time: Duration) -> f64 {
        if self.transaction_time.is_zero() {
            0.0
        } else {
            100.0 * time.as_secs_f64() / self.transaction_time.as_secs_f64()
        }
    }
}

impl fmt::Display for ConflictReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sites.is_empty() {
            return writeln!(f, "STM conflict report: no conflicts recorded");
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "STM conflict report: {:.3} ms lost in {} aborts and waits ({:.1}% of the {:.3} ms \
             of thread CPU time transactions ran; waits are wall time); top sites:",
            ms(self.time_lost()),
            self.count(),
            self.percent(self.time_lost()),
            ms(self.transaction_time)
        )?;
        let unknown = "unknown".to_string();
        let breaks = |s: &ConflictSite| {
            if s.between_breaks {
                " (between break points)"
            } else {
                ""
            }
        };
        for s in self.sites.iter().take(10) {
            if s.kind == ConflictKind::BecameInevitable {
                writeln!(
                    f,
                    "  {:>7}x became inevitable{} at {}",
                    s.count,
                    breaks(s),
                    s.this_side.map_or(unknown.clone(), |x| x.to_string())
                )?;
                continue;
            }
            writeln!(
                f,
                "  {:>9.3} ms ({:>4.1}%) lost in {:>7}x {} on {}{}",
                ms(s.time_lost),
                self.percent(s.time_lost),
                s.count,
                s.kind,
                s.object_type.unwrap_or("an object"),
                breaks(s),
            )?;
            writeln!(
                f,
                "      this side:  {}",
                s.this_side.map_or(unknown.clone(), |x| x.to_string())
            )?;
            writeln!(
                f,
                "      other side: {}",
                s.other_side.map_or(unknown.clone(), |x| x.to_string())
            )?;
        }
        Ok(())
    }
}

type Key = (
    ConflictKind,
    Option<&'static str>,
    Option<Site>,
    Option<Site>,
    bool,
);

/// The runtime's recorder: a switch and the aggregated rows.
#[derive(Default)]
pub(crate) struct Recorder {
    enabled: AtomicBool,
    rows: Mutex<HashMap<Key, (u64, Duration)>>,
    /// Nanoseconds of thread CPU time transactions ran while reporting was on.
    tx_nanos: std::sync::atomic::AtomicU64,
    /// Where the last reporting committer of each object wrote it (for the losers' rows;
    /// forgotten past [`WRITERS_KEPT`] objects).
    writers: Mutex<HashMap<u32, WriteSite>>,
}

/// The most objects whose last writer's site [`Recorder`] keeps.
const WRITERS_KEPT: usize = 1 << 16;

impl Recorder {
    pub(crate) fn new(enabled: bool) -> Recorder {
        Recorder {
            enabled: AtomicBool::new(enabled),
            rows: Mutex::default(),
            tx_nanos: std::sync::atomic::AtomicU64::new(0),
            writers: Mutex::default(),
        }
    }

    /// A reporting committer wrote the object at `granule` at `site` (called before the
    /// commit publishes it, so a transaction that loses to it finds the site).
    pub(crate) fn note_writer(&self, granule: u32, site: WriteSite) {
        let mut w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= WRITERS_KEPT && !w.contains_key(&granule) {
            w.clear();
        }
        w.insert(granule, site);
    }

    /// Where the object at `granule` was last written by a reporting committer, if known.
    pub(crate) fn writer_of(&self, granule: u32) -> Option<WriteSite> {
        let w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        w.get(&granule).copied()
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Counts thread CPU time that a transaction ran.
    pub(crate) fn add_transaction_time(&self, d: Duration) {
        self.tx_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, row: ConflictSite) {
        let key = (
            row.kind,
            row.object_type,
            row.this_side,
            row.other_side,
            row.between_breaks,
        );
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let e = rows.entry(key).or_default();
        e.0 += row.count;
        e.1 += row.time_lost;
    }

    pub(crate) fn report(&self) -> ConflictReport {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut sites: Vec<ConflictSite> = rows
            .iter()
            .map(
                |(
                    &(kind, object_type, this_side, other_side, between_breaks),
                    &(count, time_lost),
                )| {
                    ConflictSite {
                        kind,
                        object_type,
                        this_side,
                        other_side,
                        count,
                        time_lost,
                        between_breaks,
                    }
                },
            )
            .collect();
        sites.sort_by(|a, b| {
            b.time_lost
                .cmp(&a.time_lost)
                .then(b.count.cmp(&a.count))
                .then(a.kind.cmp(&b.kind))
        });
        ConflictReport {
            sites,
            transaction_time: Duration::from_nanos(self.tx_nanos.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn clear(&self) {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.tx_nanos.store(0, Ordering::Relaxed);
    }
}

/// Whether `STM_CONFLICT_REPORT` asks for reports (any value but empty, `0` or `false`).
pub(crate) fn env_enabled() -> bool {
    std::env::var("STM_CONFLICT_REPORT")
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}
