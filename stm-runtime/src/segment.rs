//! Segments: each is a private view of the whole heap plus the bookkeeping of the transaction
//! running in it.
//!
//! A thread must *own* a segment to run a transaction ([`Segment::state`] goes `FREE` ->
//! `OWNED` by compare-and-swap, or the thread takes a segment biased to it; see `owner.rs`).
//! The owner is the only thread that touches the segment's mapping and [`SegmentLocal`] (the
//! collector takes every segment before it looks at any). That exclusive ownership
//! (invariant 1) is what every `unsafe` access to `SegmentLocal` and to segment memory relies
//! on.
//!
//! A segment is a private cache of the committed heap (`committed.rs`): `copies` says, per
//! granule, which version of the object its image is, and the read barrier's slow path
//! imports a newer one before the attempt's first read of an object.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use memmap2::MmapMut;

use crate::footprint::Footprint;
use crate::heap::{Bump, Header, SideArray, GRANULE};
use crate::report::{Site, WriteSite};
use crate::stats::SegmentStats;
use crate::sys;

/// What a transaction ran into when validation found another commit touching its reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The object (granule number).
    pub granule: u32,
    /// Whether this transaction had written the object too.
    pub write_write: bool,
    /// The segment that committed the conflicting write.
    pub other_segment: u32,
    /// Where the winner wrote the object (when it was reporting).
    pub other_site: Option<WriteSite>,
    /// Where this transaction first wrote the object (write-write, when reporting).
    pub our_site: Option<WriteSite>,
    /// Not a real conflict: fault injection.
    pub injected: bool,
    /// Not a conflict at all: user code caught one of the runtime's unwinds (a retry, a
    /// restart) and went on, so the attempt runs again instead of committing.
    pub swallowed: bool,
}

/// A field borrowed by a write-back guard: bytes `start..start + len` of the value of the
/// object at `granule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Guard {
    pub granule: u32,
    pub start: u32,
    pub len: u32,
}

impl Guard {
    /// No field (granule 0 is never an object).
    pub(crate) const NONE: Guard = Guard {
        granule: 0,
        start: 0,
        len: 0,
    };

    /// Whether the bytes `start..start + len` of the same object overlap this field.
    #[inline]
    pub(crate) fn overlaps(&self, granule: u32, start: u32, len: u32) -> bool {
        self.granule == granule
            && start < self.start + self.len.max(1)
            && self.start < start + len.max(1)
    }
}

impl Conflict {
    /// The conflict fault injection pretends to have found.
    pub(crate) fn injected() -> Box<Conflict> {
        Box::new(Conflict {
            granule: 0,
            write_write: false,
            other_segment: u32::MAX,
            other_site: None,
            our_site: None,
            injected: true,
            swallowed: false,
        })
    }

    /// What dooms an attempt whose code caught a retry or restart unwind and went on.
    pub(crate) fn swallowed() -> Box<Conflict> {
        let mut c = Conflict::injected();
        c.injected = false;
        c.swallowed = true;
        c
    }
}

impl SegmentLocal {
    /// Fault injection: whether to fail here (never in an inevitable transaction).
    #[inline]
    pub(crate) fn inject_fault(&mut self) -> bool {
        // Never while unwinding: a second unwind from a destructor would abort the process.
        if self.faults.threshold == 0 || self.fp.inevitable || std::thread::panicking() {
            return false;
        }
        let mut x = self.faults.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.faults.rng = x;
        x < self.faults.threshold
    }
}

/// One segment. Aligned to two cache lines so that segments owned by different threads never
/// share one (each transaction writes its segment's state and counters).
#[repr(align(128))]
pub(crate) struct Segment {
    /// Position in the runtime's segment table.
    pub index: u32,
    /// Who may use it: `FREE`, `OWNED`, `REVOKING` or the bias slot of the
    /// thread it is biased to (see `owner.rs`).
    pub state: AtomicUsize,
    /// Twice the writing commits made in this segment so far, plus one while a commit is
    /// publishing its images (written by the owner only). Importers compare the sum over
    /// the segments with the one of their last validation to skip validating again
    /// (`commit.rs`), and `retry` waits for it to grow.
    pub commits: AtomicU64,
    /// A commit is in progress here (between its check of `Shared::inevitable` and the end
    /// of its publication): a transaction becoming inevitable waits until it is false.
    pub committing: AtomicBool,
    /// Counters, written by the owner only.
    pub stats: SegmentStats,
    /// Everything only the owner touches.
    pub local: UnsafeCell<SegmentLocal>,
}

// SAFETY: `local` (the only non-Sync part) is accessed only by the thread that took the
// segment (moved `state` out of FREE or a revoked bias, or took it through its own bias) until
// it gives it back; the Acquire/Release orderings on `state` and on the bias slots order one
// owner's accesses before the next owner's (invariant 1, `owner.rs`).
unsafe impl Sync for Segment {}
// SAFETY: the raw pointers in SegmentLocal point into mappings and log entries owned by the
// runtime, not by any thread; moving the segment between threads moves nothing thread-bound.
unsafe impl Send for Segment {}

/// The state of a segment that only its owner touches: its memory, what the commit
/// protocol sees of the running attempt, and the attempt's own bookkeeping around it.
pub(crate) struct SegmentLocal {
    /// The segment's memory: its images, read markers and copy versions.
    pub view: View,
    /// What the commit protocol (`protocol.rs`) sees of the running attempt.
    pub fp: Footprint,
    /// Before-images of `fp.modified`, concatenated in the same order.
    pub backups: Vec<MaybeUninit<u64>>,
    /// Objects this segment allocated and committed that the collector has not freed.
    pub committed_objects: Vec<u32>,
    /// This `atomically` call may still collect once if the heap is full.
    pub may_collect: bool,
    /// Bump allocation state.
    pub bump: Bump,
    /// The running transaction is inevitable because its code called `become_inevitable`
    /// (not only the progress policy).
    pub user_inevitable: bool,
    /// The running attempt's place in a series cut at break points.
    pub series: Series,
    /// The attempt must not commit: validation found a conflict, or user code caught one of
    /// the runtime's unwinds (an abort, a retry, a restart) and carried on.
    pub doomed: Option<Box<Conflict>>,
    /// Fields borrowed by live write-back guards (and updates that started inside another
    /// update), innermost last (see `FLAG_GUARDED`).
    pub guards: Vec<Guard>,
    /// The field borrowed by the innermost update in progress (`x.f += ..`), kept apart from
    /// `guards` so that the common update touches no vector (`Guard::NONE` if none).
    pub update: Guard,
    /// Counts attempts in this segment (identifies the running one).
    pub attempt: u64,
    /// Births of roots to objects allocated by the running attempt, settled at its end.
    pub pending_roots: Vec<Arc<AtomicU64>>,
    /// Conflict reporting's state for the running attempt.
    pub report: Reporting,
    /// Fault injection's state.
    pub faults: Faults,
    /// Who used the segment last (a bias slot's address) and how many times in a row: a
    /// release after [`BIAS_AFTER`](crate::owner::BIAS_AFTER) leaves it biased.
    pub streak: (usize, u32),
}

/// A segment's memory: its private view of the heap, one read marker and one copy version
/// per granule, and how the barriers read them.
pub(crate) struct View {
    /// This segment's private view of the heap (kept for its lifetime; accessed through
    /// `heap_ptr`).
    _heap: MmapMut,
    /// Read markers: one `u16` per heap granule.
    pub markers: MmapMut,
    /// `_heap`'s base address (taken once: the mapping never moves).
    heap_ptr: *mut u8,
    /// `markers`' base address.
    markers_ptr: *mut u16,
    /// Per granule, the version word (`committed.rs`) of the image this segment holds
    /// (kept for its lifetime; accessed through `copies_ptr`).
    _copies: MmapMut,
    /// `_copies`' base address.
    copies_ptr: *mut u64,
    /// One bit per block of [`FAULT_BLOCK`] granules: this segment has faulted in its
    /// markers and copy versions there ([`View::fault_in`]).
    faulted: Vec<u64>,
    /// The value the read barrier stores into a marker; bumped at every transaction start.
    pub version: u16,
    /// Whether the runtime has a committed heap (STM mode, more than one segment), so that
    /// this segment's images may be old: the barriers then test and write the read markers.
    /// Without one, the segment is the committed state, markers are neither tested nor
    /// stored, and `version` stays 0. Set once by `Shared::new`.
    pub imports: bool,
}

/// The granules of a block of the heap whose read markers and copy versions a segment
/// faults in at once ([`View::fault_in`]): 64 KiB of heap, 8 KiB of markers, 32 KiB of copy
/// versions (whole pages of both).
pub(crate) const FAULT_BLOCK: u32 = 4096;

impl View {
    /// Before this segment's first import of an object in a block of [`FAULT_BLOCK`]
    /// granules: faults in, for writing, the block's read markers and copy versions
    /// (why: `sys::populate_write`), once per block. The first import in a block still
    /// meets the pages of that one object with a read first; the block's other pages are
    /// filled here, and only for the blocks this segment reads.
    #[cold]
    #[inline(never)]
    pub(crate) fn fault_in(&mut self, granule: u32) {
        let block = (granule / FAULT_BLOCK) as usize;
        let (word, bit) = (block / 64, 1u64 << (block % 64));
        if self.faulted.get(word).is_none_or(|w| w & bit != 0) {
            return;
        }
        self.faulted[word] |= bit;
        let granules = self.markers.len() / 2;
        let first = block * FAULT_BLOCK as usize;
        let n = (FAULT_BLOCK as usize).min(granules - first);
        // Both arrays have one entry per granule of the heap (`first < granules`: `granule`
        // is an object's).
        let markers = SideArray {
            base: self.markers_ptr as usize,
            per_granule: 2,
        };
        let copies = SideArray {
            base: self.copies_ptr as usize,
            per_granule: 8,
        };
        let _ = markers.populate(first, n) && copies.populate(first, n);
    }

    /// The markers read as the kernel's zero page again (they were given back to it,
    /// `commit::wrap_version`): fault them in again at the next import into each block.
    pub(crate) fn forget_faulted(&mut self) {
        self.faulted.fill(0);
    }
}

/// Where the running attempt stands in a series cut at break points (`run_in_transactions`
/// or an `#[in_transactions]` loop).
pub(crate) struct Series {
    /// The running attempt ends at a break point, not at the end of its code: its commit is
    /// counted as a break.
    pub cut_by_break: bool,
    /// Steps left before the running attempt commits at a break point; set to the budget
    /// when the attempt starts, to 1 when the transaction becomes inevitable (so that the
    /// next break point ends it).
    pub left: u32,
    /// The steps the running attempt may do (its budget, or fewer to end just before a step
    /// that needs to become inevitable); `u32::MAX` when the attempt is not one of a series
    /// (see [`SegmentLocal::in_series`]).
    pub budget: u32,
}

/// Conflict reporting's state for the running attempt (`report.rs`).
pub(crate) struct Reporting {
    /// Reporting is on for the running attempt.
    pub on: bool,
    /// Reporting is on or faults are injected: a first write takes the write barrier's rare
    /// path, which notes its site or may inject a fault (`commit::write_extras`). Set with
    /// `on`, by `commit::begin_reporting`.
    pub extras: bool,
    /// Where the running attempt's `atomically` was called.
    pub tx_site: Option<Site>,
    /// The thread's CPU time when the running attempt started (only while reporting).
    pub started: Option<std::time::Duration>,
    /// Where each object of `fp.modified` was first written (only while reporting).
    pub write_sites: Vec<WriteSite>,
    /// Where each object of `fp.allocated` was allocated (only while reporting).
    pub alloc_sites: Vec<WriteSite>,
}

/// Fault injection's state (`Config::fault_rate`).
pub(crate) struct Faults {
    /// Abort when the next random number is below this (0: never).
    pub threshold: u64,
    /// The random state (xorshift).
    pub rng: u64,
}

impl Segment {
    /// The segment's identity in bias slots (its address: unique while the runtime lives,
    /// and never 0).
    #[inline]
    pub(crate) fn id(&self) -> usize {
        self as *const Segment as usize
    }

    pub(crate) fn new(index: u32, config: &crate::config::Config) -> std::io::Result<Segment> {
        let heap_size = config.heap_size;
        let mut heap = sys::map_segment(heap_size)?;
        let mut markers = sys::map_zeroed((heap_size / GRANULE) * 2)?;
        let mut copies = sys::map_zeroed((heap_size / GRANULE) * 8)?;
        let heap_ptr = heap.as_mut_ptr();
        let markers_ptr = markers.as_mut_ptr().cast();
        let copies_ptr = copies.as_mut_ptr().cast();
        let fault_threshold = (config.fault_rate * u64::MAX as f64) as u64;
        Ok(Segment {
            index,
            state: AtomicUsize::new(crate::owner::FREE),
            commits: AtomicU64::new(0),
            committing: AtomicBool::new(false),
            stats: SegmentStats::default(),
            local: UnsafeCell::new(SegmentLocal {
                view: View {
                    _heap: heap,
                    markers,
                    heap_ptr,
                    markers_ptr,
                    _copies: copies,
                    copies_ptr,
                    faulted: vec![0; (heap_size / GRANULE).div_ceil(FAULT_BLOCK as usize * 64)],
                    version: 0,
                    imports: false,
                },
                fp: Footprint::new(index),
                backups: Vec::new(),
                committed_objects: Vec::new(),
                may_collect: false,
                bump: Bump::default(),
                user_inevitable: false,
                series: Series {
                    cut_by_break: false,
                    left: u32::MAX,
                    budget: u32::MAX,
                },
                doomed: None,
                guards: Vec::new(),
                update: Guard::NONE,
                attempt: 0,
                pending_roots: Vec::new(),
                report: Reporting {
                    on: false,
                    extras: fault_threshold != 0,
                    tx_site: None,
                    started: None,
                    write_sites: Vec::new(),
                    alloc_sites: Vec::new(),
                },
                faults: Faults {
                    threshold: fault_threshold,
                    rng: 0x9E37_79B9_7F4A_7C15 ^ (u64::from(index) << 32 | 1),
                },
                streak: (0, 0),
            }),
        })
    }
}

impl SegmentLocal {
    /// Whether a live guard or update borrows any of bytes `start..start + len` of the object
    /// at `granule`.
    pub(crate) fn borrowed(&self, granule: u32, start: u32, len: u32) -> bool {
        self.update.overlaps(granule, start, len)
            || self.guards.iter().any(|g| g.overlaps(granule, start, len))
    }

    /// Whether a live guard or update borrows a field of the object at `granule`.
    pub(crate) fn borrows_in(&self, granule: u32) -> bool {
        self.update.granule == granule || self.guards.iter().any(|g| g.granule == granule)
    }

    /// Whether the running attempt is one of a series cut at break points
    /// (`run_in_transactions` or an `#[in_transactions]` loop): its aborts are counted apart.
    #[inline]
    pub(crate) fn in_series(&self) -> bool {
        self.series.budget != u32::MAX
    }

    /// Base of the heap mapping.
    #[inline]
    pub(crate) fn heap_base(&self) -> *mut u8 {
        self.view.heap_ptr
    }

    /// Base of the read-marker array.
    #[inline]
    pub(crate) fn markers_base(&self) -> *mut u16 {
        self.view.markers_ptr
    }

    /// The header of the object at `granule`.
    #[inline]
    pub(crate) fn header(&self, granule: u32) -> *mut Header {
        // SAFETY (of the arithmetic): granules handed out by the allocator are below
        // heap_size / 16 (invariant 3), so the offset stays inside the mapping.
        self.heap_base()
            .wrapping_add(granule as usize * GRANULE)
            .cast()
    }

    /// The marker of the object at `granule`.
    #[inline]
    pub(crate) fn marker(&self, granule: u32) -> *mut u16 {
        self.markers_base().wrapping_add(granule as usize)
    }

    /// The version word of this segment's image of the object at `granule`.
    #[inline]
    pub(crate) fn copy(&self, granule: u32) -> *mut u64 {
        self.view.copies_ptr.wrapping_add(granule as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_in_fills_the_markers_and_copies_of_one_block_once() {
        let config = crate::config::Config {
            heap_size: 16 << 20,
            ..Default::default()
        };
        let mut seg = Segment::new(0, &config).expect("segment");
        let view = &mut seg.local.get_mut().view;
        let block = |b: u32| {
            let first = (b * FAULT_BLOCK) as usize;
            let n = FAULT_BLOCK as usize;
            (
                (view.markers_ptr as usize + first * 2, n * 2),
                (view.copies_ptr as usize + first * 8, n * 8),
            )
        };
        let ((m1, ml), (c1, cl)) = block(1);
        let ((m2, _), (c2, _)) = block(2);
        assert!(
            !crate::sys::resident(m1, ml) && !crate::sys::resident(c1, cl),
            "fresh mappings are not resident"
        );
        view.fault_in(FAULT_BLOCK + 17);
        if !crate::sys::populate_available() {
            return; // a kernel without MADV_POPULATE_WRITE: nothing to check
        }
        assert!(
            crate::sys::resident(m1, ml) && crate::sys::resident(c1, cl),
            "block 1 faulted in"
        );
        assert!(
            !crate::sys::resident(m2, 4096) && !crate::sys::resident(c2, 4096),
            "block 2 left alone"
        );
        // Markers and copies read zero still.
        // SAFETY: granules of block 1, inside both arrays; nothing else uses the segment.
        unsafe {
            assert_eq!(*view.markers_ptr.add(FAULT_BLOCK as usize + 17), 0);
            assert_eq!(*view.copies_ptr.add(FAULT_BLOCK as usize + 17), 0);
        }
        view.forget_faulted();
        assert_eq!(view.faulted.iter().map(|w| w.count_ones()).sum::<u32>(), 0);
    }
}
