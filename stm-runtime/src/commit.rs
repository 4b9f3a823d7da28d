//! The attempt around the commit protocol: start, the read barrier's slow path, the write
//! barrier's slow path (before-images, guards), commit, rollback, checkpoints,
//! inevitability. The protocol's own steps (catching up with a newer image, the read-set
//! checks, lock/check/publish, the inevitable handshake) are in `protocol.rs`, which loom
//! checks; what this module adds is the attempt's bookkeeping and its unwinding.
//!
//! Segments are private caches of the committed heap (`committed.rs`), filled lazily; conflicts
//! are found through per-object version words, as in TL2 and Silo, without a global clock:
//!
//! * **Snapshots.** A segment's memory changes only in its own thread's barriers, and only for
//!   objects the running attempt has not read yet: the first read of an object in an attempt
//!   ([`read_slow`]) compares the segment's copy version with the object's version word and,
//!   if a newer commit exists, imports its image and then checks that everything the attempt
//!   read before is still current (`protocol::catch_up`). So every attempt, even a doomed one,
//!   sees at every moment the values all its reads had at one instant: a state some serial
//!   order produced (opacity), which memory safety relies on (invariant 2). (Except in the
//!   destructors that run while a lost attempt unwinds, see [`doom`]: their reads see whole
//!   committed images, newest first, which may not fit the attempt's earlier reads.)
//! * **Reads** store the attempt's `version` into the object's read marker on the first read
//!   of each object; later reads of it test the marker and touch nothing else. A segment that
//!   works on its own data never reads a line another core wrote.
//! * **Writes** test the marker and the header's `FLAG_WRITE_BARRIER`; the first write saves
//!   a before-image, lists the object and clears the flag ([`write_slow`]). Objects the attempt
//!   allocated carry its mark and no flag: no barrier.
//! * **Commit** ([`commit_writes`], then `protocol::commit`): lock the version words of
//!   the written objects (compare-and-swap from the version this segment holds: a newer
//!   version or another holder is a conflict), check that every object read is still at the
//!   version read and not locked by another committer, then copy the images into the
//!   committed heap (the attempt's new objects first, so that nothing can reach a new object
//!   before its image is there) and unlock each with the next version. The commit is
//!   serialized between taking its last lock and its read check (Silo's argument); read-only
//!   attempts commit with nothing to do, serialized at their last import (or their start).
//!   Nothing is written that other segments' commits write, unless they write the same
//!   objects.
//! * **Inevitable transactions** set `Shared::inevitable` and wait until no commit is in
//!   flight (a committer announces itself in its segment's `committing` flag before it checks
//!   `inevitable`: Dekker's pattern, made cheap for committers with `membarrier`). From then on
//!   no other transaction commits, so nothing the inevitable one read can change: it never
//!   aborts. Others keep running and wait only when they try to commit.
//! * **Rollback** copies the before-images back and forgets the allocations; imported
//!   images stay (they are committed data, and `copies` says which version they are).
//!
//! With one segment (and in GIL mode, feature `gil`, where the one segment is the global lock)
//! there is no committed heap: the segment is the whole committed state, there is no read set,
//! no validation, and commit only re-arms the write barriers.

use std::panic::Location;
use std::sync::atomic::Ordering;

use crate::committed;
use crate::heap::{Header, FLAG_GUARDED, FLAG_WRITE_BARRIER, GRANULE};
use crate::pool::Shared;
use crate::protocol::{self, rearm, Lost};
use crate::report::WriteSite;
use crate::segment::{Conflict, Guard, Segment, SegmentLocal};
use crate::stats::Counter;

/// Why an attempt unwinds out of user code (private: user code cannot forge it).
pub(crate) enum AbortSignal {
    /// Validation found a conflict.
    Conflict(Box<Conflict>),
    /// [`Tx::retry`]: wait for a commit, then run again.
    Retry,
    /// Internal request: run again at once.
    Restart,
    /// The heap is full: collect garbage, then run again.
    Collect,
    /// A root's object was allocated by a transaction of another thread that has not ended:
    /// give the segment back, wait until the cell is settled, then run again.
    WaitFor(std::sync::Arc<std::sync::atomic::AtomicU64>),
}

/// `Root::born` while the creating attempt has not ended.
pub(crate) const PENDING: u64 = 0;
/// `Root::born` once the creating attempt committed (the object's image is published).
pub(crate) const BORN: u64 = 1;
/// `Root::born` when the creating attempt rolled back: the object never existed.
pub(crate) const ROLLED_BACK: u64 = u64::MAX;

/// Whether barriers and validation are compiled in (false in GIL mode).
pub(crate) const STM: bool = !cfg!(feature = "gil");

/// Starts an attempt in an owned segment: with a committed heap, a new marker `version`,
/// even (when it wraps, after 32,767 transactions, every marker is reset to zero, see
/// [`wrap_version`], and versions start again at 2); with one segment the markers are
/// unused. Nothing is imported: the segment catches up object by object, at the attempt's
/// first read of each.
#[inline(always)]
pub(crate) fn begin(
    shared: &Shared,
    local: &mut SegmentLocal,
    reporting: bool,
    site: &'static Location<'static>,
) {
    local.attempt += 1;
    local.user_inevitable = false;
    local.series.cut_by_break = false;
    local.series.left = u32::MAX;
    local.series.budget = u32::MAX;
    if reporting || local.report.on {
        begin_reporting(local, reporting, site);
    }
    local.bump.begin();
    debug_assert!(local.fp.modified.is_empty() && local.fp.allocated.is_empty());
    debug_assert!(local.fp.reads.is_empty());
    local.fp.seen = None;
    if local.view.imports {
        // Versions are even: `version + 1` is the mark of an untracked read (`UNTRACKED`).
        local.view.version = local.view.version.wrapping_add(2);
        if local.view.version < 2 {
            wrap_version(shared, local);
        }
    }
}

/// The bookkeeping of an attempt whose conflicts are reported (`reporting`), or of the first
/// attempt after reporting was turned off: [`Reporting::on`](crate::segment::Reporting::on)
/// and [`Reporting::extras`](crate::segment::Reporting::extras) change only here.
#[cold]
#[inline(never)]
fn begin_reporting(local: &mut SegmentLocal, reporting: bool, site: &'static Location<'static>) {
    local.report.on = reporting;
    local.report.extras = reporting || local.faults.threshold != 0;
    if !reporting {
        return;
    }
    local.report.tx_site = Some(site.into());
    local.report.started = Some(crate::sys::thread_cpu_time());
    local.report.write_sites.clear();
    local.report.alloc_sites.clear();
}

/// The marker version wrapped (every 32,767 attempts): every marker is reset to zero, and
/// the versions start again at 2.
///
/// Markers are written only for granules of objects, all below the allocator's high-water
/// mark, so zeroing the markers below it resets them all. Zeroing them in place keeps their
/// pages mapped: giving the pages back (`madvise`) made every first read of an object after
/// the wrap map the kernel's zero page and its marker write then fault again, and with a
/// second thread running in the process each such fault flushes the other core's TLB with an
/// inter-processor interrupt (vacation on 2 threads at `--scale 2`: 16,500 of the process's
/// 81,800 page faults). Once the heap's all-time high-water mark passes
/// [`WRAP_CLEAR_MAX`] granules, every wrap gives the pages back instead.
#[cold]
#[inline(never)]
fn wrap_version(shared: &Shared, local: &mut SegmentLocal) {
    wrap_version_below(shared, local, WRAP_CLEAR_MAX);
}

/// [`wrap_version`], zeroing in place while the high-water mark is at most `max` granules.
fn wrap_version_below(shared: &Shared, local: &mut SegmentLocal, max: usize) {
    let used = shared.chunks.high_water() as usize;
    if used <= max {
        // SAFETY: the markers of granules `0..used` lie inside the marker array, which has one
        // u16 per granule of the heap (`heap_size / 16`): `high_water` is at most the heap's
        // end (raised only to ends of ranges inside it, from FIRST_GRANULE, which the minimum
        // heap size exceeds). Markers are only accessed by the owner (invariant 1), through
        // raw pointers, and no reference into them is alive (invariant 20).
        unsafe { std::ptr::write_bytes(local.markers_base(), 0, used) };
    } else {
        // SAFETY: as above, for the whole mapping (re-read through raw pointers after).
        unsafe { crate::sys::discard(&local.view.markers) }
            .expect("madvise(MADV_DONTNEED) on the read markers failed");
        local.view.forget_faulted();
    }
    local.view.version = 2;
}

/// The largest used heap (in granules: 4 Mi, 64 MiB of heap, 8 MiB of markers, about a
/// millisecond to zero once every 32,767 attempts) whose markers a wrap of the marker
/// version zeroes in place rather than gives back to the kernel.
const WRAP_CLEAR_MAX: usize = 4 << 20;

/// Added to an attempt's version, the read mark of an object read only untracked
/// ([`read_slow_untracked`]): its image is current for the attempt, but it is not in the read
/// set, so the read barrier (which wants exactly `version`) still takes its slow path once.
pub(crate) const UNTRACKED: u16 = 1;

/// The read barrier's slow path: the attempt's first read of the object at `granule`. Makes
/// this segment's image of it current (importing a newer committed image if there is one,
/// then checking the attempt's earlier reads), lists it in the read set and marks it.
///
/// Unwinds with a conflict if an earlier read is no longer current (the attempt must not see
/// the new image beside the old ones).
///
/// The common case (the image is current, the read set has room) is straight-line code that
/// calls nothing, so it saves no registers; every other case is a tail call into
/// [`read_slow_rare`].
///
/// # Safety
/// `granule` is a live object of this heap (invariant 3) and the caller owns the segment
/// (invariant 1).
#[inline(never)]
pub(crate) unsafe fn read_slow(shared: &Shared, local: &mut SegmentLocal, granule: u32) {
    if let Some(heap) = &shared.heap {
        // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
        let have = unsafe { *local.copy(granule) };
        // Acquire: if it is a newer version, its image (published before it) is visible.
        if heap.word(granule).load(Ordering::Acquire) != have
            || local.fp.reads.len() == local.fp.reads.capacity()
        {
            // SAFETY: forwarded from our caller.
            return unsafe { read_slow_rare(shared, local, granule) };
        }
        // SAFETY: room was checked just above; a Vec's buffer is its own.
        unsafe {
            let n = local.fp.reads.len();
            local.fp.reads.as_mut_ptr().add(n).write(granule);
            local.fp.reads.set_len(n + 1);
        }
    }
    // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
    unsafe { *local.marker(granule) = local.view.version };
}

/// [`read_slow`] when the image is not current or the read set is full.
///
/// # Safety
/// As [`read_slow`].
#[cold]
#[inline(never)]
unsafe fn read_slow_rare(shared: &Shared, local: &mut SegmentLocal, granule: u32) {
    // SAFETY: forwarded from our caller.
    unsafe { read_slow_inner(shared, local, granule, true) }
}

/// [`read_slow`] without listing the object in the read set: it is marked `version +
/// UNTRACKED` instead of `version` (`Gc::read_field_untracked`, for fields that no concurrent
/// commit writes).
///
/// # Safety
/// As [`read_slow`].
#[inline(never)]
pub(crate) unsafe fn read_slow_untracked(shared: &Shared, local: &mut SegmentLocal, granule: u32) {
    // SAFETY: forwarded from our caller.
    unsafe { read_slow_inner(shared, local, granule, false) }
}

/// # Safety
/// As [`read_slow`].
#[inline(always)]
unsafe fn read_slow_inner(shared: &Shared, local: &mut SegmentLocal, granule: u32, track: bool) {
    if let Some(heap) = &shared.heap {
        // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
        let have = unsafe { *local.copy(granule) };
        // Acquire: if it is a newer version, its image (published before it) is visible.
        if heap.word(granule).load(Ordering::Acquire) != have {
            local.view.fault_in(granule);
            // SAFETY: forwarded from our caller.
            if let Err(lost) = unsafe { protocol::catch_up(shared, heap, local, granule) } {
                doom(local, lost);
            }
        }
        if !track {
            // Marked as read untracked (unless the attempt is doomed, in a destructor run by
            // its unwind): later untracked reads skip this path, while a read through the read
            // barrier still lists it and a write still takes the slow path.
            if local.doomed.is_none() {
                // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
                unsafe { *local.marker(granule) = local.view.version + UNTRACKED };
            }
            return;
        }
        local.fp.reads.push(granule);
    }
    // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
    unsafe { *local.marker(granule) = local.view.version };
}

/// The read of a new image found an earlier read no longer current ([`protocol::catch_up`]):
/// the attempt is doomed, and unwinds with the conflict, unless it runs in a destructor
/// during an unwind.
#[cold]
#[inline(never)]
fn doom(local: &mut SegmentLocal, lost: Lost) {
    let c = conflict_of(local, lost);
    local.doomed = Some(c.clone());
    if std::thread::panicking() {
        // In a destructor run by an unwind: a second unwind would abort the process. The
        // attempt is doomed and rolls back; the image it reads is a whole committed one
        // (invariant 2 holds per object), its mix with older reads is never committed. (The
        // image the segment held before is not an option: it may be of an object freed and
        // reallocated before the attempt began, another type's bytes; the newest image is of
        // the object the handle names, since no collection runs while we hold the segment.)
        return;
    }
    std::panic::resume_unwind(Box::new(AbortSignal::Conflict(c)));
}

/// Whether nothing the attempt read has changed since it read it (what `retry` waits for).
pub(crate) fn reads_unchanged(shared: &Shared, local: &SegmentLocal) -> bool {
    match &shared.heap {
        Some(heap) => protocol::reads_current(heap, local).is_ok(),
        None => true,
    }
}

/// The conflict the protocol found.
#[cold]
fn conflict_of(local: &SegmentLocal, lost: Lost) -> Box<Conflict> {
    conflict(local, lost.granule, lost.write_write, lost.other)
}

/// The conflict on the object at `granule` (found against segment `other`, or `u32::MAX`
/// when unknown).
#[cold]
fn conflict(local: &SegmentLocal, granule: u32, write_write: bool, other: u32) -> Box<Conflict> {
    let mine = local.fp.modified.iter().position(|&g| g == granule);
    Box::new(Conflict {
        granule,
        write_write: write_write || mine.is_some(),
        other_segment: other,
        other_site: None,
        our_site: mine.and_then(|m| local.report.write_sites.get(m).copied()),
        injected: false,
        swallowed: false,
    })
}

/// The write barrier's slow path: the first write of this attempt to a committed object, or
/// any write to an object with a borrowed field ([`FLAG_GUARDED`]). The write is to bytes
/// `start..start + len` of the object's value, passed as `span` ([`span`]), so that every
/// argument travels in a register.
///
/// The common case (a committed object of 1 to `SMALL_GRANULES` granules, no borrowed field,
/// no fault injection or reporting, room in the write set) is straight-line code here; every
/// other case is a tail call into [`write_slow_rare`], so this function saves no registers.
///
/// A write to an object this attempt has not read yet first runs the read barrier's slow
/// path ([`read_slow`]).
///
/// # Safety
/// `granule` is a live object of this heap (invariant 3) and the caller owns the segment
/// (invariant 1).
#[inline(never)]
pub(crate) unsafe fn write_slow(
    shared: &Shared,
    local: &mut SegmentLocal,
    granule: u32,
    span: u64,
    site: &'static Location<'static>,
    type_name: fn() -> &'static str,
) {
    if let Some(heap) = &shared.heap {
        heap.prefetch_for_commit(granule);
    }
    // (With one segment there is nothing to bring up to date: the image is the committed
    // state, and nothing marks.)
    // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
    if local.view.imports && unsafe { *local.marker(granule) } != local.view.version {
        // SAFETY: forwarded from our caller.
        return unsafe { write_slow_unread(shared, local, granule, span, site, type_name) };
    }
    // SAFETY: forwarded from our caller; the object is marked (or the runtime has one
    // segment, whose images are all current), so its image is current.
    unsafe { write_slow_read(local, granule, span, site, type_name) }
}

/// [`write_slow`] of an object this attempt has not read yet: brings its image up to date
/// first (a write reads), so that the header and the before-image are the committed ones.
///
/// # Safety
/// As [`write_slow`].
#[cold]
#[inline(never)]
unsafe fn write_slow_unread(
    shared: &Shared,
    local: &mut SegmentLocal,
    granule: u32,
    span: u64,
    site: &'static Location<'static>,
    type_name: fn() -> &'static str,
) {
    // SAFETY: forwarded from our caller.
    unsafe { read_slow(shared, local, granule) };
    // SAFETY: forwarded from our caller; `read_slow` made the image current and marked it.
    unsafe { write_slow_read(local, granule, span, site, type_name) }
}

/// [`write_slow`] once the object's image is current (this attempt marked it, or the runtime
/// has one segment): the common case inline, everything else a tail call into
/// [`write_slow_rare`].
///
/// # Safety
/// As [`write_slow`], and this attempt has marked the object or the runtime has no committed
/// heap.
#[inline(always)]
unsafe fn write_slow_read(
    local: &mut SegmentLocal,
    granule: u32,
    span: u64,
    site: &'static Location<'static>,
    type_name: fn() -> &'static str,
) {
    let hdr = local.header(granule);
    // One load and one test of the whole header: armed, no borrowed field, and 1 to
    // SMALL_GRANULES granules (see `SMALL_MASK`).
    // SAFETY: the object is live (caller, invariant 3), so its header is in the mapping; we
    // own it (invariant 1). A header is 8 bytes of two initialised `u32`s at the start of a
    // granule, so 16-aligned: one aligned `u64` read covers it exactly.
    let (both, granules) = unsafe { (hdr.cast::<u64>().read(), (*hdr).granules) };
    let words = granules as usize * (GRANULE / 8);
    if !small_and_armed(both)
        || local.report.extras
        || local.backups.capacity() - local.backups.len() < words
        || local.fp.modified.len() == local.fp.modified.capacity()
    {
        // SAFETY: forwarded from our caller.
        return unsafe { write_slow_rare(local, granule, span, site, type_name) };
    }
    // SAFETY: the common case: see `save_before_image`; the test above left the object 1 to
    // SMALL_GRANULES granules long, which `copy_granules` copies without a call.
    unsafe { save_before_image(local, granule, hdr, words, true) }
}

/// The `span` argument of [`write_slow`]: a write of `len` bytes at byte `start` of a value.
#[inline(always)]
pub(crate) fn span(start: usize, len: usize) -> u64 {
    start as u32 as u64 | (len as u32 as u64) << 32
}

/// The largest object (in granules) whose before-image [`write_slow`] copies inline: a power
/// of two, so that a single mask tests the length (`SMALL_MASK`).
const SMALL_GRANULES: usize = 8;
const _: () = assert!(SMALL_GRANULES.is_power_of_two());

const _: () = assert!(std::mem::size_of::<Header>() == 8 && GRANULE % 8 == 0);
/// A header's 8 bytes as one word (in memory order, whatever the byte order).
const fn header_word(flags: u32, granules: u32) -> u64 {
    let (f, g) = (flags.to_ne_bytes(), granules.to_ne_bytes());
    u64::from_ne_bytes([f[0], f[1], f[2], f[3], g[0], g[1], g[2], g[3]])
}
/// One granule, in a header word's length.
const ONE_GRANULE: u64 = header_word(0, 1);
/// The bits that `write_slow_read` tests of a header word less [`ONE_GRANULE`]: the
/// write-barrier and guard flags, and the bits of `granules - 1` from `SMALL_GRANULES` up.
/// They are all clear but the write-barrier flag exactly when the object is armed, has no
/// borrowed field and is 1 to `SMALL_GRANULES` granules long: a length of 0 borrows (on a
/// little-endian machine `granules - 1` wraps to all ones; on a big-endian one the borrow
/// clears the write-barrier flag), so it takes the rare path.
const SMALL_MASK: u64 = header_word(
    FLAG_GUARDED | FLAG_WRITE_BARRIER,
    !(SMALL_GRANULES as u32 - 1),
);
/// What they are in the common case: armed, no guard, a small object.
const SMALL_ARMED: u64 = header_word(FLAG_WRITE_BARRIER, 0);

/// Whether a header word is the write barrier's common case: armed, no borrowed field, 1 to
/// `SMALL_GRANULES` granules (see [`SMALL_MASK`]).
#[inline(always)]
fn small_and_armed(header: u64) -> bool {
    header.wrapping_sub(ONE_GRANULE) & SMALL_MASK == SMALL_ARMED
}

/// Everything of [`write_slow`] but its common case: a borrowed field, an object already
/// written by this attempt, a larger object, fault injection, reporting, a full write set.
///
/// # Safety
/// As [`write_slow`].
#[cold]
#[inline(never)]
unsafe fn write_slow_rare(
    local: &mut SegmentLocal,
    granule: u32,
    span: u64,
    site: &'static Location<'static>,
    type_name: fn() -> &'static str,
) {
    let (start, len) = (span as u32, (span >> 32) as u32);
    let hdr = local.header(granule);
    // SAFETY: the object is live (caller, invariant 3), so its header is in the mapping; we
    // own it (invariant 1).
    let flags = unsafe { (*hdr).flags };
    if flags & FLAG_GUARDED != 0 {
        check_guards(local, granule, start, len, site);
    }
    if flags & FLAG_WRITE_BARRIER == 0 {
        return; // written before in this attempt (or allocated by it): only the guard check
    }
    if local.report.extras {
        write_extras(local, site, type_name());
    }
    // SAFETY: as above (invariants 1 and 3).
    let granules = unsafe { (*hdr).granules };
    let words = granules as usize * (GRANULE / 8);
    if local.backups.capacity() - local.backups.len() < words
        || local.fp.modified.len() == local.fp.modified.capacity()
    {
        grow_write_set(local, words);
    }
    // SAFETY: the write set has room now; the object is live and ours (caller).
    unsafe { save_before_image(local, granule, hdr, words, false) }
}

/// The first write of this attempt to the committed object at `granule` (header `hdr`,
/// `words` words long): saves its before-image, lists it as modified and clears its
/// write-barrier flag.
///
/// # Safety
/// `hdr` is the header of the live object at `granule` in the caller's own segment
/// (invariants 1 and 3), and `backups` / `modified` have room for `words` words and one
/// granule; with `small`, `words` is even and at most `2 * SMALL_GRANULES`.
#[inline(always)]
unsafe fn save_before_image(
    local: &mut SegmentLocal,
    granule: u32,
    hdr: *mut Header,
    words: usize,
    small: bool,
) {
    // No read mark is stored here: with a committed heap, `write_slow` only comes here for
    // an object this attempt has marked (it read it, or `write_slow_unread` just did, which
    // also listed it in the read set, so that a concurrent commit of it is a conflict); with
    // one segment the marks are unused. (A store here cost a cache miss a write with one
    // segment: the marker array is an eighth of the heap, and nothing else touches it then.)
    #[cfg(debug_assertions)]
    {
        // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
        let mark = unsafe { *local.marker(granule) };
        assert!(
            !local.view.imports || mark == local.view.version,
            "a first write of an object this attempt has not marked"
        );
    }
    let len = local.backups.len();
    let n = local.fp.modified.len();
    debug_assert!(local.backups.capacity() - len >= words && local.fp.modified.capacity() > n);
    // SAFETY: both vectors have room (caller); the source is the object's `words` words in
    // our segment (invariants 1 and 3), 8-aligned, and a Vec buffer never overlaps the heap
    // mapping.
    unsafe {
        let dst = local.backups.as_mut_ptr().add(len);
        if small {
            debug_assert!(words >= 2 && words % 2 == 0 && words <= 2 * SMALL_GRANULES);
            committed::copy_granules::<SMALL_GRANULES>(hdr.cast(), dst, words / 2);
        } else {
            committed::copy_words(hdr.cast(), dst, words);
        }
        local.backups.set_len(len + words);
        local.fp.modified.as_mut_ptr().add(n).write(granule);
        local.fp.modified.set_len(n + 1);
        (*hdr).flags &= !FLAG_WRITE_BARRIER;
    }
}

/// A write to bytes `start..start + len` of a guarded object: refused if a live guard
/// borrows any of those bytes (its write-back would overwrite this write when it ends); a
/// stale flag (no guard of the object is left) is cleared.
#[cold]
#[inline(never)]
fn check_guards(
    local: &mut SegmentLocal,
    granule: u32,
    start: u32,
    len: u32,
    site: &'static Location<'static>,
) {
    if local.borrowed(granule, start, len) {
        borrowed_field_written(site);
    }
    if !local.borrows_in(granule) {
        // SAFETY: a live object's header in our own segment (caller of `write_slow`;
        // invariants 1 and 3).
        unsafe { (*local.header(granule)).flags &= !FLAG_GUARDED };
    }
}

#[cold]
#[inline(never)]
fn borrowed_field_written(site: &'static Location<'static>) -> ! {
    panic!(
        "{site}: this write changes a field of a shared object that is still borrowed \
         mutably (by `&mut h.field`, a `&mut self` method called on the field, an `if let` \
         or `match` on `h.field.as_mut()`, or a compound assignment in progress); when that \
         borrow ends it writes its copy back and this write would be lost. rustc rejects the \
         same code on an ordinary struct (E0506): finish with the borrowed place first, or \
         copy the field into a local and write it back once"
    )
}

/// Starts a write-back guard on bytes `start..start + len` of the object at `granule`:
/// writes that overlap them are refused until [`end_guard`].
///
/// # Panics
/// If a live guard borrows any of those bytes already (two mutable borrows of one field).
pub(crate) fn begin_guard(
    local: &mut SegmentLocal,
    granule: u32,
    start: u32,
    len: u32,
    site: &'static Location<'static>,
) {
    if local.borrowed(granule, start, len) {
        borrowed_twice(site);
    }
    local.guards.push(Guard {
        granule,
        start,
        len,
    });
    // SAFETY: a live object's header in our own segment; we own it (invariants 1 and 3).
    unsafe { (*local.header(granule)).flags |= FLAG_GUARDED };
}

/// Ends the guard [`begin_guard`] started (the object's flag is cleared when nothing borrows
/// a field of it any more).
pub(crate) fn end_guard(local: &mut SegmentLocal, granule: u32, start: u32, len: u32) {
    let me = Guard {
        granule,
        start,
        len,
    };
    if let Some(i) = local.guards.iter().rposition(|g| *g == me) {
        local.guards.remove(i);
    }
    if !local.borrows_in(granule) {
        // SAFETY: a live object's header in our own segment; we own it (invariants 1 and 3).
        unsafe { (*local.header(granule)).flags &= !FLAG_GUARDED };
    }
}

/// Starts an update of bytes `start..start + len` of the object at `granule` (the field is
/// borrowed while the update's operator runs, see `Gc::update_field`). The common case, no
/// other borrow, is a few stores; returns the enclosing update, moved to the list of guards
/// for as long as this one runs (`Guard::NONE` if there is none), for [`end_update`].
///
/// # Panics
/// If a live guard or update borrows any of those bytes already.
#[inline(always)]
pub(crate) fn begin_update(
    local: &mut SegmentLocal,
    granule: u32,
    start: u32,
    len: u32,
    site: &'static Location<'static>,
) -> Guard {
    let outer = local.update;
    if outer.granule != 0 || !local.guards.is_empty() {
        begin_update_slow(local, granule, start, len, site);
    }
    local.update = Guard {
        granule,
        start,
        len,
    };
    // SAFETY: a live object's header in our own segment; we own it (invariants 1 and 3).
    unsafe { (*local.header(granule)).flags |= FLAG_GUARDED };
    outer
}

#[cold]
#[inline(never)]
fn begin_update_slow(
    local: &mut SegmentLocal,
    granule: u32,
    start: u32,
    len: u32,
    site: &'static Location<'static>,
) {
    if local.borrowed(granule, start, len) {
        borrowed_twice(site);
    }
    if local.update.granule != 0 {
        let outer = std::mem::replace(&mut local.update, Guard::NONE);
        local.guards.push(outer);
    }
}

/// Ends the update [`begin_update`] started (`outer`: what it returned), making the
/// enclosing update, if any, the current one again.
#[inline(always)]
pub(crate) fn end_update(local: &mut SegmentLocal, granule: u32, outer: Guard) {
    local.update = if outer.granule != 0 {
        // Taken out of the list by identity, not from its top: a guard begun while this
        // update ran (a `WriteBack` kept past it) lies above the enclosing update, and
        // still borrows its field.
        if let Some(i) = local.guards.iter().rposition(|g| *g == outer) {
            local.guards.remove(i);
        }
        outer
    } else {
        Guard::NONE
    };
    if local.update.granule != granule && (local.guards.is_empty() || !local.borrows_in(granule)) {
        // SAFETY: a live object's header in our own segment; we own it (invariants 1 and 3).
        unsafe { (*local.header(granule)).flags &= !FLAG_GUARDED };
    }
}

#[cold]
#[inline(never)]
fn borrowed_twice(site: &'static Location<'static>) -> ! {
    panic!(
        "{site}: this field of a shared object is already borrowed mutably by a place \
         that is still alive (rustc rejects the same code on an ordinary struct, E0499): \
         finish with the first borrow before taking another"
    )
}

/// The rarely used parts of the write barrier's slow path: fault injection and the sites
/// kept for conflict reports.
#[cold]
#[inline(never)]
fn write_extras(
    local: &mut SegmentLocal,
    site: &'static Location<'static>,
    type_name: &'static str,
) {
    if local.inject_fault() {
        local.doomed = Some(Conflict::injected());
        std::panic::resume_unwind(Box::new(AbortSignal::Conflict(Conflict::injected())));
    }
    if local.report.on {
        local.report.write_sites.push(WriteSite {
            site: site.into(),
            type_name,
        });
    }
}

/// Makes room in the write set for one more object of `words` words.
#[cold]
#[inline(never)]
fn grow_write_set(local: &mut SegmentLocal, words: usize) {
    local.backups.reserve(words.max(64));
    local.fp.modified.reserve(16);
}

/// Makes the running attempt the inevitable transaction, waiting while another one is.
/// Fails (the attempt must abort) if something it read has changed since.
pub(crate) fn become_inevitable(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<(), Box<Conflict>> {
    if local.fp.inevitable {
        return Ok(());
    }
    match &shared.heap {
        Some(heap) => protocol::become_inevitable(shared, heap, seg, local)
            .map_err(|lost| conflict_of(local, lost))?,
        None => local.fp.inevitable = true,
    }
    seg.stats.bump(Counter::Inevitable);
    Ok(())
}

/// Ends inevitability (with one segment there is nobody to wake).
fn end_inevitable(shared: &Shared, local: &mut SegmentLocal) {
    if shared.heap.is_some() {
        protocol::end_inevitable(shared, local);
    } else {
        local.fp.inevitable = false;
    }
}

/// Commits the running attempt, or reports the conflict that prevents it (the caller then
/// rolls back). Counts the commit in the segment's statistics (read-only or not) and returns
/// its position in the serial order (`Config::serial_order`, else 0; in GIL mode the count of
/// commits).
#[inline(always)]
pub(crate) fn commit(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<u64, Box<Conflict>> {
    if local.doomed.is_some() {
        return Err(local.doomed.take().unwrap_or_else(Conflict::injected));
    }
    if local.inject_fault() {
        return Err(Conflict::injected());
    }
    // Guards end with their statement; one leaked by hand (`mem::forget` of a
    // `__private::place`) is dropped here (commit also clears the objects' flags).
    local.guards.clear();
    local.update = Guard::NONE;
    if local.fp.modified.is_empty() && local.fp.allocated.is_empty() {
        // A root is pending only for an object this attempt allocated (invariant 11; an
        // `or_else` rollback keeps its allocations), so there is none here.
        debug_assert!(local.pending_roots.is_empty());
        let at = if !STM {
            shared.gil_commits.load(Ordering::Acquire)
        } else if shared.config.serial_order {
            serial_read_only(shared, local)?
        } else {
            0
        };
        if local.fp.inevitable {
            end_inevitable(shared, local);
        }
        local.fp.reads.clear();
        seg.stats.bump(Counter::ReadOnlyCommit);
        return Ok(at);
    }
    // `imports` says whether there is a committed heap (`Shared::new`), and is at hand here.
    if !local.view.imports {
        return Ok(commit_alone(shared, seg, local));
    }
    commit_writes(shared, seg, local)
}

/// With `Config::serial_order`, a read-only attempt takes a position in the order and then
/// checks its reads, as a writer does (so it is serialized at that position).
#[cold]
fn serial_read_only(shared: &Shared, local: &SegmentLocal) -> Result<u64, Box<Conflict>> {
    let at = protocol::serial_position(shared);
    if let Some(heap) = &shared.heap {
        protocol::reads_current(heap, local).map_err(|lost| conflict_of(local, lost))?;
    }
    Ok(at)
}

/// [`commit`] of an attempt that wrote or allocated something, in a runtime of one segment
/// (or GIL mode): the segment is the committed state. Nothing to lock, check or publish:
/// re-arm the write barrier of what we wrote (see `protocol::commit`) and of our new objects.
/// Apart from [`commit_writes`], so that this short path saves only the registers it uses.
#[inline(never)]
fn commit_alone(shared: &Shared, seg: &Segment, local: &mut SegmentLocal) -> u64 {
    // The heap's address once: the compiler would reload it after each header store.
    let heap = local.heap_base();
    let rearm_at = |g: u32| {
        // SAFETY: `g` is a live object of this heap (it is in the write set or was allocated
        // by this attempt, invariant 3), so its header lies inside our own segment's mapping
        // (invariant 1), at `heap + g * GRANULE` as `SegmentLocal::header` computes it.
        unsafe { rearm(heap.add(g as usize * GRANULE).cast()) };
    };
    local.fp.modified.iter().for_each(|&g| rearm_at(g));
    local.fp.allocated.iter().for_each(|&g| rearm_at(g));
    let rev = if STM {
        protocol::serial_position(shared)
    } else {
        shared.gil_commits.fetch_add(1, Ordering::Release) + 1
    };
    if local.fp.inevitable {
        end_inevitable(shared, local);
    }
    // Counted as two steps at once (odd while publishing, with nothing to publish).
    // Release: see `Shared::commit_count`.
    let c = seg.commits.load(Ordering::Relaxed);
    seg.commits.store(c + 2, Ordering::Release);
    finish(shared, seg, local, rev)
}

/// [`commit`] of an attempt that wrote or allocated something: through the commit protocol,
/// or [`commit_alone`] without a committed heap.
#[inline(never)]
fn commit_writes(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<u64, Box<Conflict>> {
    let Some(heap) = &shared.heap else {
        return Ok(commit_alone(shared, seg, local));
    };
    let rev =
        protocol::commit(shared, heap, seg, local).map_err(|lost| conflict_of(local, lost))?;
    if local.report.on {
        for (&g, &site) in local.fp.modified.iter().zip(&local.report.write_sites) {
            shared.recorder.note_writer(g, site);
        }
    }
    Ok(finish(shared, seg, local, rev))
}

/// The bookkeeping after a writing commit at position `rev`.
#[inline(always)]
fn finish(shared: &Shared, seg: &Segment, local: &mut SegmentLocal, rev: u64) -> u64 {
    seg.stats.bump(Counter::WriteCommit);
    local.fp.modified.clear();
    local.backups.clear();
    local.fp.reads.clear();
    local.fp.writes.clear();
    if !local.fp.allocated.is_empty() || !local.pending_roots.is_empty() {
        finish_allocations(local);
    }
    // After the roots are settled: `retry` and `Root::get` of a pending root wait on this.
    shared.committed.notify_cheap();
    rev
}

/// [`finish`] of an attempt that allocated: its objects are committed, and their pending
/// roots are settled. Out of line: most transactions allocate nothing.
#[inline(never)]
fn finish_allocations(local: &mut SegmentLocal) {
    local.committed_objects.append(&mut local.fp.allocated);
    for born in local.pending_roots.drain(..) {
        born.store(BORN, Ordering::Release);
    }
}

/// Undoes the running attempt: restores before-images, forgets allocations, ends
/// inevitability.
pub(crate) fn rollback(shared: &Shared, local: &mut SegmentLocal) {
    restore_backups(local, 0, 0);
    local.fp.modified.clear();
    local.backups.clear();
    local.fp.allocated.clear();
    local.fp.reads.clear();
    local.bump.rollback();
    local.doomed = None;
    local.guards.clear();
    local.update = Guard::NONE;
    if local.fp.inevitable {
        end_inevitable(shared, local);
    }
    if !local.pending_roots.is_empty() {
        for born in local.pending_roots.drain(..) {
            born.store(ROLLED_BACK, Ordering::Release);
        }
        shared.committed.notify_cheap();
    }
}

/// first, so that an object saved twice (see [`checkpoint`]) ends with its oldest image.
fn restore_backups(local: &mut SegmentLocal, from: usize, from_word: usize) {
    let mut at = local.backups.len();
    for &g in local.fp.modified[from..].iter().rev() {
        let hdr = local.header(g);
        // SAFETY: a live object of our segment (invariants 1 and 3); its backup is the
        // `granules * 2` words that `write_slow` appended for this entry of `modified` (same
        // order, so walking both from the end pairs them). `granules` never changes, even
        // across a restore.
        unsafe {
            let words = (*hdr).granules as usize * (GRANULE / 8);
            at -= words;
            // A field borrowed now stays borrowed: the backup's flag is from before the guard.
            let guarded = (*hdr).flags & FLAG_GUARDED;
            committed::copy_words(local.backups.as_ptr().add(at), hdr.cast(), words);
            (*hdr).flags = ((*hdr).flags & !FLAG_GUARDED) | guarded;
        }
    }
    debug_assert_eq!(at, from_word);
}

/// A point inside an attempt to which [`rollback_to`] can return (`Tx::or_else`).
pub(crate) struct Checkpoint {
    modified: usize,
    backups: usize,
    /// The objects this checkpoint armed (their barrier was clear): only these are disarmed
    /// when the code after it ends, so that an enclosing checkpoint's arming survives a
    /// nested `or_else`.
    armed: Vec<u32>,
}

/// Marks a point inside the running attempt. Every object written or allocated so far gets
/// its write barrier back, so that a write after this point saves a before-image of it (the
/// older backup of a written object stays, for a full rollback; an object allocated by the
/// attempt gets its first one).
pub(crate) fn checkpoint(local: &mut SegmentLocal) -> Checkpoint {
    let mut armed = Vec::new();
    for &g in local.fp.modified.iter().chain(&local.fp.allocated) {
        let hdr = local.header(g);
        // SAFETY: a live object of our own segment (invariants 1 and 3).
        unsafe {
            if (*hdr).flags & FLAG_WRITE_BARRIER == 0 {
                (*hdr).flags |= FLAG_WRITE_BARRIER;
                armed.push(g);
            }
        }
    }
    Checkpoint {
        modified: local.fp.modified.len(),
        backups: local.backups.len(),
        armed,
    }
}

/// The code after a checkpoint is over (kept or undone): the objects the checkpoint armed
/// are written objects again (barrier cleared), as they were at the checkpoint; objects an
/// enclosing checkpoint armed stay armed.
pub(crate) fn keep_since(local: &mut SegmentLocal, cp: Checkpoint) {
    for &g in &cp.armed {
        // SAFETY: a live object of our own segment (invariants 1 and 3).
        unsafe { (*local.header(g)).flags &= !FLAG_WRITE_BARRIER };
    }
}

/// Undoes the writes the attempt made after `cp`, to every object, including the ones it
/// allocated before `cp`. Objects allocated after `cp` stay allocated: handles to them may
/// still exist in this attempt (they name valid objects, which nothing reaches unless the
/// code keeps them); they commit with the attempt and the collector frees them later.
pub(crate) fn rollback_to(local: &mut SegmentLocal, cp: Checkpoint) {
    restore_backups(local, cp.modified, cp.backups);
    local.fp.modified.truncate(cp.modified);
    local.backups.truncate(cp.backups);
    local.report.write_sites.truncate(cp.modified);
    keep_since(local, cp);
}

#[cfg(all(test, not(feature = "gil")))]
mod tests {
    use super::*;
    use crate::handle::Gc;
    use crate::protocol::ONE;
    use crate::runtime::Stm;
    use crate::tx::Tx;

    /// [`super::begin`] of an attempt without conflict reports.
    #[track_caller]
    fn begin(shared: &Shared, local: &mut SegmentLocal) {
        super::begin(shared, local, false, Location::caller());
    }

    /// Two segments owned by this thread, as two concurrent transactions would own them
    /// (taken by [`unbiased`]).
    fn two_segments(stm: &Stm) -> (&Segment, &Segment) {
        let a = unbiased(stm);
        let b = unbiased(stm);
        assert_ne!(a.index, b.index);
        (a, b)
    }

    /// A segment taken as a thief takes it (never through this thread's bias, so that the
    /// tests may give it back with `release_segment(seg, None)` or not at all).
    fn unbiased(stm: &Stm) -> &Segment {
        loop {
            for seg in stm.shared.segments.iter() {
                match crate::owner::try_take(&seg.state, seg.id(), crate::owner::OWNED) {
                    Some(None) => return seg,
                    // Biased to this thread (by earlier transactions): drop the bias, then
                    // take it again by compare-and-swap.
                    Some(Some(slot)) => crate::owner::release_biased(&seg.state, slot, true),
                    None => {}
                }
            }
        }
    }

    #[allow(clippy::mut_from_ref)]
    fn local(seg: &Segment) -> &mut SegmentLocal {
        // SAFETY: the test owns both segments (acquired above) and uses one at a time
        // (invariant 1).
        unsafe { &mut *seg.local.get() }
    }

    fn tx_for(stm: &Stm, seg: &Segment) -> Tx {
        Tx::new(local(seg), seg, &stm.shared)
    }

    fn setup() -> (Stm, u32, u32) {
        let stm = Stm::builder()
            .segments(2)
            .heap_size(1 << 20)
            .build()
            .unwrap();
        let (x, y) = stm.atomically(|tx| (tx.alloc(1u64).granule, tx.alloc(2u64).granule));
        (stm, x, y)
    }

    /// One attempt in `seg` that writes `value` into the `u64` at `g`, committed.
    fn committed_write(stm: &Stm, seg: &Segment, g: u32, value: u64) {
        begin(&stm.shared, local(seg));
        Gc::<u64>::new(&tx_for(stm, seg), g).set(value);
        assert!(commit(&stm.shared, seg, local(seg)).is_ok());
    }

    fn word(stm: &Stm, g: u32) -> u64 {
        stm.shared
            .heap
            .as_ref()
            .unwrap()
            .word(g)
            .load(Ordering::Acquire)
    }

    #[test]
    fn a_first_read_imports_the_newer_commit_and_lists_the_object() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        // B writes x and commits; A has never read x, so its image is old (or empty).
        committed_write(&stm, b, x, 10);
        assert_eq!(
            word(&stm, x),
            2 * ONE,
            "allocated at version 1, written at 2"
        );
        // SAFETY: in bounds (invariant 3); the test owns the segment (invariant 1).
        assert_ne!(unsafe { *local(a).copy(x) }, word(&stm, x));
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        assert_eq!(
            Gc::<u64>::new(&ta, x).get(),
            10,
            "imported at the first read"
        );
        // SAFETY: as above.
        let (mx, my, cx) = unsafe { (*local(a).marker(x), *local(a).marker(y), *local(a).copy(x)) };
        assert_eq!(mx, local(a).view.version, "read marker set");
        assert_ne!(my, local(a).view.version, "y was not read");
        assert_eq!(cx, word(&stm, x), "the image's version is recorded");
        assert_eq!(local(a).fp.reads, vec![x]);
        assert!(commit(sh, a, local(a)).is_ok());
        assert!(local(a).fp.reads.is_empty());
    }

    #[test]
    fn a_read_of_an_object_committed_since_conflicts_at_commit() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, local(a));
        begin(sh, local(b));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        assert_eq!(gx.get(), 1);
        // B writes x and commits.
        Gc::<u64>::new(&tx_for(&stm, b), x).set(10);
        assert!(commit(sh, b, local(b)).is_ok());
        // A still sees the value it read, and loses when it commits a write of y.
        assert_eq!(gx.get(), 1);
        Gc::<u64>::new(&ta, y).set(3);
        let c = commit(sh, a, local(a)).expect_err("a must lose");
        assert_eq!((c.granule, c.write_write), (x, false));
        rollback(sh, local(a));
        assert_eq!(word(&stm, y), ONE, "y was unlocked, unchanged");
        // A fresh attempt reads the new value.
        begin(sh, local(a));
        assert_eq!(Gc::<u64>::new(&tx_for(&stm, a), x).get(), 10);
        assert_eq!(
            Gc::<u64>::new(&tx_for(&stm, a), y).get(),
            2,
            "y rolled back"
        );
    }

    /// Opacity: an attempt that read x before a commit of x and y must not see the new y
    /// beside the old x. Its first read of y imports y, finds x changed, and unwinds.
    #[test]
    fn an_import_that_would_mix_two_states_aborts_the_attempt() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        assert_eq!(Gc::<u64>::new(&ta, x).get(), 1);
        begin(sh, local(b));
        let tb = tx_for(&stm, b);
        Gc::<u64>::new(&tb, x).set(10);
        Gc::<u64>::new(&tb, y).set(20);
        assert!(commit(sh, b, local(b)).is_ok());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Gc::<u64>::new(&ta, y).get()
        }));
        let payload = r.expect_err("reading y must abort");
        match payload.downcast_ref::<AbortSignal>() {
            Some(AbortSignal::Conflict(c)) => assert_eq!(c.granule, x),
            _ => panic!("not a conflict"),
        }
        assert!(local(a).doomed.is_some(), "the attempt cannot commit");
        rollback(sh, local(a));
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        assert_eq!(
            (Gc::<u64>::new(&ta, x).get(), Gc::<u64>::new(&ta, y).get()),
            (10, 20)
        );
    }

    #[test]
    fn disjoint_writes_both_commit_and_each_keeps_its_own_image_current() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        for round in 0..3u64 {
            begin(sh, local(a));
            begin(sh, local(b));
            Gc::<u64>::new(&tx_for(&stm, a), x).update(|v| *v += 1);
            Gc::<u64>::new(&tx_for(&stm, b), y).update(|v| *v += 1);
            assert!(commit(sh, b, local(b)).is_ok());
            assert!(
                commit(sh, a, local(a)).is_ok(),
                "no conflict: a never touched y"
            );
            // SAFETY: in bounds (invariant 3); owned (invariant 1).
            unsafe {
                assert_eq!(*local(a).copy(x), word(&stm, x), "round {round}");
                assert_eq!(*local(b).copy(y), word(&stm, y), "round {round}");
            }
        }
        for seg in [a, b] {
            begin(sh, local(seg));
            let t = tx_for(&stm, seg);
            assert_eq!(
                (Gc::<u64>::new(&t, x).get(), Gc::<u64>::new(&t, y).get()),
                (4, 5)
            );
            assert!(commit(sh, seg, local(seg)).is_ok());
        }
    }

    #[test]
    fn concurrent_writes_to_one_object_are_a_write_write_conflict() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, local(a));
        begin(sh, local(b));
        Gc::<u64>::new(&tx_for(&stm, a), x).set(5);
        assert_eq!(local(a).fp.modified, vec![x]);
        Gc::<u64>::new(&tx_for(&stm, b), x).set(6);
        assert!(commit(sh, b, local(b)).is_ok());
        let c = commit(sh, a, local(a)).expect_err("a must lose");
        assert!(c.write_write);
        rollback(sh, local(a));
        // The backup restored a's image to the value it read (1), and the barrier flag.
        let hdr = local(a).header(x);
        // SAFETY: a live object's header in a segment the test owns (invariants 1 and 3).
        assert_ne!(unsafe { (*hdr).flags } & FLAG_WRITE_BARRIER, 0);
        begin(sh, local(a));
        assert_eq!(Gc::<u64>::new(&tx_for(&stm, a), x).get(), 6);
    }

    /// A committer that finds a written object locked by another committer loses, and leaves
    /// the version words as they were.
    #[test]
    fn a_locked_object_makes_the_second_committer_lose_and_unlock_the_rest() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let a = unbiased(&stm);
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        Gc::<u64>::new(&ta, x).set(5);
        Gc::<u64>::new(&ta, y).set(6);
        let heap = sh.heap.as_ref().unwrap();
        // Another segment (index 1 + 1 = 2 as holder) holds y.
        heap.word(y).store(ONE | 0x7, Ordering::Release);
        let c = commit(sh, a, local(a)).expect_err("y is held");
        assert_eq!((c.granule, c.write_write, c.other_segment), (y, true, 6));
        assert_eq!(word(&stm, x), ONE, "x unlocked again");
        heap.word(y).store(ONE, Ordering::Release);
        rollback(sh, local(a));
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        assert_eq!(Gc::<u64>::new(&ta, x).get(), 1);
        Gc::<u64>::new(&ta, y).set(6);
        assert!(commit(sh, a, local(a)).is_ok());
        assert_eq!(word(&stm, y), 2 * ONE);
    }

    #[test]
    fn new_objects_need_no_write_barrier_until_committed() {
        let stm = Stm::builder()
            .segments(1)
            .heap_size(1 << 20)
            .build()
            .unwrap();
        stm.atomically(|tx| {
            let o = tx.alloc(0u64);
            o.set(1);
            assert!(
                tx.local().fp.modified.is_empty(),
                "no backup of a new object"
            );
            assert!(tx.local().fp.reads.is_empty(), "nor a read");
            assert_eq!(tx.local().fp.allocated, vec![o.granule]);
        });
        let g = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
        stm.atomically(|tx| {
            g.get(tx).set(1);
            assert_eq!(
                tx.local().fp.modified.len(),
                1,
                "committed objects do need one"
            );
        });
    }

    /// A new object is published before the committed object that points to it, so another
    /// segment that follows the pointer finds the new object's image.
    #[test]
    fn a_new_object_reached_through_a_committed_one_is_imported_whole() {
        let stm = Stm::builder()
            .segments(2)
            .heap_size(1 << 20)
            .build()
            .unwrap();
        let sh = &stm.shared;
        let cell = stm.atomically(|tx| tx.alloc([0u64; 2]).granule);
        let (a, b) = two_segments(&stm);
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        let fresh = ta.alloc([7u64, 8, 9]).granule;
        Gc::<[u64; 2]>::new(&ta, cell).set([u64::from(fresh), 1]);
        assert!(commit(sh, a, local(a)).is_ok());
        assert_eq!(word(&stm, fresh), ONE);
        begin(sh, local(b));
        let tb = tx_for(&stm, b);
        let [g, _] = Gc::<[u64; 2]>::new(&tb, cell).get();
        assert_eq!(Gc::<[u64; 3]>::new(&tb, g as u32).get(), [7, 8, 9]);
        assert!(commit(sh, b, local(b)).is_ok());
    }

    /// The runtime skips a read barrier only right after a write barrier on the same object;
    /// debug builds check that the object really carries the attempt's mark, so a mistake
    /// there fails the test suite instead of letting a conflict go undetected.
    #[test]
    #[cfg(debug_assertions)]
    fn a_skipped_read_barrier_on_an_unmarked_object_is_caught_in_debug_builds() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let a = unbiased(&stm);
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gx.debug_check_marked()));
        assert!(r.is_err(), "an unmarked committed object passed the check");
        gx.read_barrier();
        gx.debug_check_marked();
        // An update marks the object through its write barrier before its unbarriered read.
        rollback(sh, local(a));
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        Gc::<u64>::new(&ta, x).update(|v| *v += 1);
        rollback(sh, local(a));
    }

    /// The write barrier's one test of a header word takes exactly the armed, unguarded
    /// objects of 1 to SMALL_GRANULES granules, whatever the other flags.
    #[test]
    fn the_header_test_takes_only_small_armed_unguarded_objects() {
        let lengths = (0..40).chain([u32::MAX / 2, u32::MAX - 1, u32::MAX]);
        for flags in 0..16u32 {
            for granules in lengths.clone() {
                let expected = flags & (FLAG_WRITE_BARRIER | FLAG_GUARDED) == FLAG_WRITE_BARRIER
                    && (1..=SMALL_GRANULES as u32).contains(&granules);
                let header = Header { flags, granules };
                // SAFETY: a `Header` is 8 bytes of two initialised `u32`s (asserted beside
                // `header_word`), so it reads as one `u64`.
                let word = unsafe { std::ptr::from_ref(&header).cast::<u64>().read_unaligned() };
                assert_eq!(word, header_word(flags, granules));
                assert_eq!(
                    small_and_armed(word),
                    expected,
                    "flags {flags:#x}, {granules} granules"
                );
            }
        }
    }

    /// The write barrier copies before-images inline for objects of up to SMALL_GRANULES
    /// granules and through `copy_words` beyond: both must restore every byte on rollback
    /// and publish every byte on commit.
    #[test]
    fn before_images_of_every_size_are_restored_and_committed_whole() {
        fn check<const N: usize>(stm: &Stm) {
            let sh = &stm.shared;
            let g = stm.atomically(|tx| tx.alloc([7u64; N]).granule);
            let (a, b) = two_segments(stm);
            begin(sh, local(a));
            let ta = tx_for(stm, a);
            let h = Gc::<[u64; N]>::new(&ta, g);
            h.set([9u64; N]);
            assert_eq!(h.get(), [9u64; N]);
            rollback(sh, local(a));
            begin(sh, local(a));
            let ta = tx_for(stm, a);
            assert_eq!(
                Gc::<[u64; N]>::new(&ta, g).get(),
                [7u64; N],
                "{N} words restored"
            );
            let mut v = [0u64; N];
            for (i, w) in v.iter_mut().enumerate() {
                *w = i as u64 + 1;
            }
            Gc::<[u64; N]>::new(&ta, g).set(v);
            assert!(commit(sh, a, local(a)).is_ok());
            begin(sh, local(b));
            let tb = tx_for(stm, b);
            assert_eq!(Gc::<[u64; N]>::new(&tb, g).get(), v, "{N} words imported");
            assert!(commit(sh, b, local(b)).is_ok());
            sh.release_segment(a, None);
            sh.release_segment(b, None);
        }
        let stm = Stm::builder()
            .segments(2)
            .heap_size(1 << 20)
            .build()
            .unwrap();
        // Values of 1 to 40 words: objects of 1 to 21 granules (an 8-byte header each).
        check::<1>(&stm);
        check::<3>(&stm);
        check::<5>(&stm);
        check::<14>(&stm);
        check::<15>(&stm);
        check::<16>(&stm);
        // Every length copied inline (1 to SMALL_GRANULES = 8 granules: up to 15 words) and
        // the first one beyond it (16 words: 9 granules).
        check::<7>(&stm);
        check::<9>(&stm);
        check::<11>(&stm);
        check::<13>(&stm);
        check::<40>(&stm);
    }

    #[test]
    fn an_untracked_read_marks_the_image_current_but_leaves_it_out_of_the_read_set() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        committed_write(&stm, b, x, 7);
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        // SAFETY: a plain field of a live object, written by nobody while this runs.
        let v = unsafe { gx.read_field_untracked(|p| p) };
        assert_eq!(v, 7, "imported");
        let v = local(a).view.version;
        // SAFETY: in bounds (invariant 3); owned (invariant 1).
        assert_eq!(unsafe { *local(a).marker(x) }, v + UNTRACKED);
        assert!(local(a).fp.reads.is_empty(), "not listed");
        // A tracked read still lists it (and marks it tracked), once.
        assert_eq!(gx.get(), 7);
        assert_eq!(gx.get(), 7);
        assert_eq!(local(a).fp.reads, vec![x]);
        // SAFETY: as above.
        assert_eq!(unsafe { *local(a).marker(x) }, v);
        // Another untracked read leaves the tracked mark alone.
        // SAFETY: as above.
        assert_eq!(unsafe { gx.read_field_untracked(|p| p) }, 7);
        // SAFETY: as above.
        assert_eq!(unsafe { *local(a).marker(x) }, v);
        assert!(commit(sh, a, local(a)).is_ok());
        // In the next attempt, an untracked read and then a write: the write still saves a
        // backup and lists the object (the untracked mark is not the write barrier's).
        begin(sh, local(a));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        // SAFETY: as above.
        assert_eq!(unsafe { gx.read_field_untracked(|p| p) }, 7);
        gx.set(8);
        assert_eq!(local(a).fp.modified, vec![x]);
        assert_eq!(local(a).fp.reads, vec![x], "a write reads");
        assert!(commit(sh, a, local(a)).is_ok());
    }

    #[test]
    fn the_marker_version_wraps_by_clearing_every_marker() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let a = unbiased(&stm);
        begin(sh, local(a));
        Gc::<u64>::new(&tx_for(&stm, a), x).get();
        assert!(commit(sh, a, local(a)).is_ok());
        local(a).view.version = u16::MAX - 1;
        // SAFETY: in bounds (invariant 3); owned (invariant 1).
        unsafe { *local(a).marker(x) = 2 };
        begin(sh, local(a));
        assert_eq!(local(a).view.version, 2);
        // SAFETY: in bounds (invariant 3); owned (invariant 1).
        assert_eq!(unsafe { *local(a).marker(x) }, 0, "old markers cleared");
    }

    #[test]
    fn a_wrap_clears_the_markers_up_to_the_high_water_mark_in_place_or_by_madvise() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let a = unbiased(&stm);
        // The last granule below the high-water mark: the end of a chunk the allocator
        // handed out (no object there yet, but one may come, and nothing bounds a marker
        // more tightly).
        let top = sh.chunks.high_water() - 1;
        for max in [WRAP_CLEAR_MAX, 0] {
            // SAFETY: both granules are inside the heap; the test owns the segment.
            unsafe {
                *local(a).marker(x) = 4;
                *local(a).marker(top) = 5;
            }
            wrap_version_below(sh, local(a), max);
            assert_eq!(local(a).view.version, 2);
            // SAFETY: both granules are inside the heap; the test owns the segment.
            let (mx, mt) = unsafe { (*local(a).marker(x), *local(a).marker(top)) };
            assert_eq!((mx, mt), (0, 0), "cleared with a limit of {max} granules");
        }
    }
}
