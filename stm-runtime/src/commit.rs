//! The commit protocol: start, validation (import), commit, rollback, inevitability.
//!
//! This is stmgc c8's design, adapted:
//!
//! * **Snapshots.** Each segment is a private copy of the heap. Its contents change only
//!   when its own thread validates ([`validate`]): at transaction start, at commit, when the
//!   transaction becomes inevitable, and when it follows a [`Root`](crate::Root) born after
//!   its snapshot. Between validations the running transaction sees one committed state plus
//!   its own writes, so it never observes a state no serial order could produce (opacity), even
//!   if it is doomed to abort. Validation applies whole log entries only, never part of one.
//! * **Reads** store the segment's `version` into the object's read marker (one `u16` store,
//!   no branch). **Writes** test the header's `FLAG_WRITE_BARRIER`; the first write to a
//!   committed object saves a before-image, records the object, marks it read and clears the
//!   flag ([`write_slow`]). Objects allocated by the transaction have no flag: no barrier.
//! * **Validation** walks the log entries newer than the segment's last applied one. If an
//!   entry wrote an object whose marker equals `version`, the transaction read (or wrote: a
//!   write marks read) something another transaction changed after its snapshot: conflict.
//!   Otherwise the entry's images are copied into the segment. Every entry is checked in full
//!   before any of it is copied, so the segment always holds a prefix of the log.
//! * **Commit** builds an entry with the images of the written and allocated objects, then
//!   loops: validate to the end of the log; compare-and-swap the entry into the last entry's
//!   `next`. The CAS fails only if someone appended first, and then we validate their entry.
//!   First committer wins; no thread ever waits for a committer, and commits never stop other
//!   transactions (stmgc c7 stopped the world at every commit and stopped scaling at ~4 cores).
//!   Read-only transactions commit without validating: they are serialized at their snapshot.
//! * **Inevitable transactions** put the [`INEVITABLE`] sentinel into the last entry's `next`
//!   (after validating to the end), so no one can append until they commit: nothing can
//!   invalidate their snapshot, so they never abort. Others keep running and wait only if they
//!   try to commit or to become inevitable.
//! * **Rollback** copies the before-images back, forgets the allocations, and withdraws the
//!   sentinel if the transaction was inevitable (a panic can roll back an inevitable
//!   transaction: its writes were never visible to anyone).
//!
//! In GIL mode (feature `gil`) there is one segment, owned under the pool's wait, so there is
//! no log: no read markers, no validation, and commit only re-arms the write barriers.

use std::ptr;
use std::sync::atomic::Ordering;

use crate::heap::{Header, FLAG_GUARDED, FLAG_NEW, FLAG_WRITE_BARRIER, GRANULE};
use crate::log::{self, Entry, INEVITABLE};
use crate::owner::{self, CATCHING_UP, FREE};
use crate::pool::Shared;
use crate::report::{ConflictKind, ConflictSite, WriteSite};
use crate::segment::{Conflict, Guard, Segment, SegmentLocal};
use crate::stats::Counter;
use std::panic::Location;
use std::time::Instant;

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
/// `Root::born` when the creating attempt rolled back: the object never existed.
pub(crate) const ROLLED_BACK: u64 = u64::MAX;

/// Whether barriers and validation are compiled in (false in GIL mode).
pub(crate) const STM: bool = !cfg!(feature = "gil");

/// Starts an attempt in an owned segment: a new marker `version` (when it wraps, after 65535
/// transactions, every marker is reset to zero with one `madvise`), then catch up with the log.
#[inline(always)]
pub(crate) fn begin(shared: &Shared, seg: &Segment, local: &mut SegmentLocal) {
    local.attempt += 1;
    local.user_inevitable = false;
    local.cut_by_break = false;
    local.series_left = u32::MAX;
    local.series_budget = u32::MAX;
    local.reporting = shared.recorder.enabled();
    if local.reporting {
        begin_reporting(local);
    }
    local.bump.begin();
    debug_assert!(local.modified.is_empty() && local.allocated.is_empty());
    if STM {
        local.version = local.version.wrapping_add(1);
        if local.version == 0 {
            wrap_version(local);
        }
        // Nothing is marked with the new version yet, so this cannot conflict.
        let r = validate(shared, seg, local, false);
        debug_assert!(r.is_ok());
    }
}

/// The bookkeeping of an attempt whose conflicts are reported.
#[cold]
#[inline(never)]
fn begin_reporting(local: &mut SegmentLocal) {
    local.started = Some(crate::sys::thread_cpu_time());
    local.write_sites.clear();
    local.alloc_sites.clear();
}

/// The marker version wrapped: every marker is reset to zero with one `madvise`, and the
/// versions start again at 1.
#[cold]
#[inline(never)]
fn wrap_version(local: &mut SegmentLocal) {
    // SAFETY: markers are only accessed by the owner (invariant 1), through raw pointers
    // derived from the mapping at each access; no reference into it is alive (invariant 20).
    unsafe { crate::sys::discard(&local.markers) }
        .expect("madvise(MADV_DONTNEED) on the read markers failed");
    local.version = 1;
}

/// Brings the segment up to the newest committed entry, unless an entry wrote an object
/// this attempt has read (`check`), which is a conflict.
#[inline(always)]
pub(crate) fn validate(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
    check: bool,
) -> Result<(), Box<Conflict>> {
    // The common case, nothing new: one load of the last applied entry's link.
    // SAFETY: see `import` (invariant 4).
    let next = unsafe { (*local.last).next.load(Ordering::Acquire) };
    if next.is_null() || next == INEVITABLE {
        return Ok(());
    }
    import(shared, seg, local, check)
}

/// [`validate`] when there is at least one entry to apply.
#[inline(never)]
fn import(
    _shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
    check: bool,
) -> Result<(), Box<Conflict>> {
    loop {
        // SAFETY: `local.last` is never freed while this segment's applied revision is at or
        // below it (the trimmer frees only entries older than every segment's, invariant 4).
        let last = unsafe { &*local.last };
        // Acquire: pairs with the Release CAS that linked the entry, so its contents are
        // visible.
        let next = last.next.load(Ordering::Acquire);
        if next.is_null() || next == INEVITABLE {
            return Ok(());
        }
        // SAFETY: a linked entry is live for the same reason as `last` and immutable
        // (invariant 4).
        let entry = unsafe { &*next };
        if check {
            for (i, rec) in entry.records().enumerate() {
                // SAFETY: record granules are objects of this heap, so the marker is in bounds
                // of the marker mapping (invariant 3); only the owner accesses it (invariant 1).
                if unsafe { *local.marker(rec.granule) } == local.version {
                    let mine = local.modified.iter().position(|&g| g == rec.granule);
                    return Err(Box::new(Conflict {
                        granule: rec.granule,
                        write_write: mine.is_some(),
                        other_segment: entry.segment,
                        other_site: entry.sites.get(i).copied(),
                        our_site: mine.and_then(|m| local.write_sites.get(m).copied()),
                        injected: false,
                        swallowed: false,
                    }));
                }
            }
        }
        for rec in entry.records() {
            // SAFETY: the image is `granules * 16` bytes of an object that lies inside the
            // heap (invariant 3); the destination is this segment's private mapping, owned by us
            // (invariant 1), and no reference into it is alive (user code only ever holds
            // copies, invariant 5).
            unsafe {
                log::copy_words(
                    rec.image.as_ptr(),
                    local.header(rec.granule).cast(),
                    rec.image.len(),
                );
            }
        }
        local.last = next;
        local.snapshot_rev = entry.rev;
        seg.applied_rev.store(entry.rev, Ordering::Release);
    }
}

/// The write barrier's slow path: the first write of this attempt to a committed object, or
/// any write to an object with a borrowed field ([`FLAG_GUARDED`]). The write is to bytes
/// `start..start + len` of the object's value.
///
/// The common case (a committed object of one or two granules, no borrowed field, no fault
/// injection or reporting, room in the write set) is straight-line code here; every other case is a tail call into
/// [`write_slow_rare`], so this function saves no registers.
///
/// # Safety
/// `granule` is a live object of this heap (invariant 3) and the caller owns the segment
/// (invariant 1).
#[inline(never)]
pub(crate) unsafe fn write_slow(
    local: &mut SegmentLocal,
    granule: u32,
    start: u32,
    len: u32,
    site: &'static Location<'static>,
    type_name: &'static str,
) {
    let hdr = local.header(granule);
    // SAFETY: the object is live (caller, invariant 3), so its header is in the mapping; we
    // own it (invariant 1).
    let (flags, granules) = unsafe { ((*hdr).flags, (*hdr).granules) };
    let words = granules as usize * (GRANULE / 8);
    if flags & (FLAG_GUARDED | FLAG_WRITE_BARRIER) != FLAG_WRITE_BARRIER
        || words > 2 * SMALL_GRANULES
        || local.fault_threshold != 0
        || local.reporting
        || local.backups.capacity() - local.backups.len() < words
        || local.modified.len() == local.modified.capacity()
    {
        // SAFETY: forwarded from our caller.
        return unsafe { write_slow_rare(local, granule, start, len, site, type_name) };
    }
    // SAFETY: the common case: see `save_before_image`; the object is 1 to SMALL_GRANULES
    // granules long (objects are at least one), which `copy_small` copies without a call.
    unsafe { save_before_image(local, granule, hdr, words, true) }
}

/// The largest object (in granules) whose before-image [`write_slow`] copies inline.
const SMALL_GRANULES: usize = 8;

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
    start: u32,
    len: u32,
    site: &'static Location<'static>,
    type_name: &'static str,
) {
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
    if local.fault_threshold != 0 || local.reporting {
        write_extras(local, site, type_name);
    }
    // SAFETY: as above (invariants 1 and 3).
    let granules = unsafe { (*hdr).granules };
    let words = granules as usize * (GRANULE / 8);
    if local.backups.capacity() - local.backups.len() < words
        || local.modified.len() == local.modified.capacity()
    {
        grow_write_set(local, words);
    }
    // SAFETY: the write set has room now; the object is live and ours (caller).
    unsafe { save_before_image(local, granule, hdr, words, false) }
}

/// The first write of this attempt to the committed object at `granule` (header `hdr`,
/// `words` words long): marks it read, saves its before-image, lists it as modified and
/// clears its write-barrier flag.
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
    if STM {
        // A write marks the object read too, so a concurrent commit of it is a conflict.
        // SAFETY: in bounds (live object, invariant 3), owned (invariant 1).
        unsafe { *local.marker(granule) = local.version };
    }
    let len = local.backups.len();
    let n = local.modified.len();
    debug_assert!(local.backups.capacity() - len >= words && local.modified.capacity() > n);
    // SAFETY: both vectors have room (caller); the source is the object's `words` words in
    // our segment (invariants 1 and 3), 8-aligned, and a Vec buffer never overlaps the heap
    // mapping.
    unsafe {
        let dst = local.backups.as_mut_ptr().add(len);
        if small {
            debug_assert!(words >= 2 && words % 2 == 0 && words <= 2 * SMALL_GRANULES);
            log::copy_granules(hdr.cast(), dst, words / 2);
        } else {
            log::copy_words(hdr.cast(), dst, words);
        }
        local.backups.set_len(len + words);
        local.modified.as_mut_ptr().add(n).write(granule);
        local.modified.set_len(n + 1);
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
/// other borrow, is a few stores; returns whether an enclosing update was moved to the list.
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
) -> bool {
    let nested = local.update.granule != 0;
    if nested || !local.guards.is_empty() {
        begin_update_slow(local, granule, start, len, site);
    }
    local.update = Guard {
        granule,
        start,
        len,
    };
    // SAFETY: a live object's header in our own segment; we own it (invariants 1 and 3).
    unsafe { (*local.header(granule)).flags |= FLAG_GUARDED };
    nested
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

/// Ends the update [`begin_update`] started (`nested`: what it returned).
#[inline(always)]
pub(crate) fn end_update(local: &mut SegmentLocal, granule: u32, nested: bool) {
    local.update = if nested {
        local.guards.pop().unwrap_or(Guard::NONE)
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
    if local.reporting {
        local.write_sites.push(WriteSite {
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
    local.modified.reserve(16);
}

/// Makes the running attempt the inevitable transaction, waiting while another one is.
pub(crate) fn become_inevitable(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<(), Box<Conflict>> {
    if local.inevitable {
        return Ok(());
    }
    if STM {
        loop {
            validate(shared, seg, local, true)?;
            // SAFETY: see `validate` (invariant 4).
            let last = unsafe { &*local.last };
            match last.next.compare_exchange(
                ptr::null_mut(),
                INEVITABLE,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(INEVITABLE) => wait_for_inevitable(shared, local),
                Err(_) => {} // a new entry: validate it
            }
        }
    }
    local.inevitable = true;
    seg.stats.bump(Counter::Inevitable);
    Ok(())
}

fn wait_for_inevitable(shared: &Shared, local: &SegmentLocal) {
    let last = local.last;
    let start = local.reporting.then(Instant::now);
    shared.inevitable_done.wait_until(|| {
        // SAFETY: `last` is our segment's last applied entry: not freed (see `validate`,
        // invariant 4).
        unsafe { (*last).next.load(Ordering::SeqCst) != INEVITABLE }
    });
    if let Some(start) = start {
        shared.recorder.record(ConflictSite {
            kind: ConflictKind::Inevitable,
            object_type: None,
            this_side: local.tx_site,
            other_side: None,
            count: 1,
            time_lost: start.elapsed(),
            between_breaks: local.in_series(),
        });
    }
}

/// Withdraws the inevitable sentinel (or replaces it with `entry`) and wakes the waiters.
fn end_inevitable(shared: &Shared, local: &mut SegmentLocal, entry: *mut Entry) {
    if STM {
        // SAFETY: see `validate` (invariant 4). SeqCst: pairs with the waiters' SeqCst load
        // (Monitor).
        unsafe { (*local.last).next.store(entry, Ordering::SeqCst) };
        shared.inevitable_done.notify();
    }
    local.inevitable = false;
}

/// What a successful commit did.
pub(crate) enum Committed {
    /// Nothing was written or allocated; serialized at this snapshot revision.
    ReadOnly(u64),
    /// The attempt's writes are committed at this revision.
    Wrote(u64),
}

/// Commits the running attempt, or reports the conflict that prevents it (the caller then
/// rolls back).
#[inline(always)]
pub(crate) fn commit(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<Committed, Box<Conflict>> {
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
    if local.modified.is_empty() && local.allocated.is_empty() {
        if local.inevitable {
            end_inevitable(shared, local, ptr::null_mut());
        }
        // A root is pending only for an object this attempt allocated (invariant 11), so
        // there is none here; if there were, its object never existed.
        debug_assert!(local.pending_roots.is_empty());
        if !local.pending_roots.is_empty() {
            for born in local.pending_roots.drain(..) {
                born.store(ROLLED_BACK, Ordering::Release);
            }
        }
        let at = if STM {
            local.snapshot_rev
        } else {
            shared.gil_commits.load(Ordering::Acquire)
        };
        return Ok(Committed::ReadOnly(at));
    }
    commit_writes(shared, seg, local)
}

/// [`commit`] of an attempt that wrote or allocated something.
#[inline(never)]
fn commit_writes(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<Committed, Box<Conflict>> {
    // Re-arm the write barrier of every object we wrote or created, and copy the images
    // (in GIL mode there is no log: only the barriers are re-armed). With one segment there
    // is no other segment to import them, and no other committer to conflict with: the
    // entry carries its revision only (a long single-thread program then writes each image
    // once, not twice).
    let mut entry = if STM {
        Some(new_entry(shared, local))
    } else {
        None
    };
    let images = shared.segments.len() > 1;
    let mut record = |g: u32, site: Option<&WriteSite>| {
        let hdr: *mut Header = local.header(g);
        // SAFETY: live objects of this heap in our own segment (invariants 1 and 3).
        unsafe {
            if (*hdr).flags & FLAG_WRITE_BARRIER != 0 {
                // Listed twice: written before and after an `or_else` checkpoint, or
                // allocated and then written inside an `or_else`.
                return;
            }
            (*hdr).flags = ((*hdr).flags & !(FLAG_NEW | FLAG_GUARDED)) | FLAG_WRITE_BARRIER;
            if let Some(entry) = entry.as_mut().filter(|_| images) {
                Entry::push_record(&mut entry.data, g, (*hdr).granules, hdr.cast());
                if let Some(&site) = site {
                    entry.sites.push(site);
                }
            }
        }
    };
    if local.reporting {
        for (i, &g) in local.modified.iter().enumerate() {
            record(g, local.write_sites.get(i));
        }
        for (i, &g) in local.allocated.iter().enumerate() {
            record(g, local.alloc_sites.get(i));
        }
    } else {
        for &g in &local.modified {
            record(g, None);
        }
        for &g in &local.allocated {
            record(g, None);
        }
    }
    let rev = if let Some(mut entry) = entry {
        entry.segment = seg.index;
        let entry = Box::into_raw(entry);
        loop {
            if !local.inevitable {
                if let Err(c) = validate(shared, seg, local, true) {
                    // SAFETY: the entry was never published; we still own it.
                    local.entry_cache.push(unsafe { Box::from_raw(entry) });
                    return Err(c);
                }
            }
            // SAFETY: see `validate` (invariant 4).
            let last = unsafe { &*local.last };
            // SAFETY: the entry is not published yet: we are its only user.
            unsafe { (*entry).rev = last.rev + 1 };
            if local.inevitable {
                end_inevitable(shared, local, entry);
                break;
            }
            // Release: the entry's contents happen before anyone who reads this link.
            match last.next.compare_exchange(
                ptr::null_mut(),
                entry,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(INEVITABLE) => wait_for_inevitable(shared, local),
                Err(_) => {} // someone committed first: validate against it
            }
        }
        // SAFETY: the entry is linked and live (it is our last applied one from now on,
        // invariant 4).
        let rev = unsafe { (*entry).rev };
        local.last = entry;
        local.snapshot_rev = rev;
        seg.applied_rev.store(rev, Ordering::Release);
        rev
    } else {
        let rev = shared.gil_commits.fetch_add(1, Ordering::Release) + 1;
        local.inevitable = false;
        rev
    };
    local.modified.clear();
    local.backups.clear();
    if !local.allocated.is_empty() {
        local.committed_objects.append(&mut local.allocated);
    }
    if !local.pending_roots.is_empty() {
        for born in local.pending_roots.drain(..) {
            born.store(rev, Ordering::Release);
        }
    }
    // After the roots are settled: `retry` and `Root::get` of a pending root wait on this.
    shared.committed.notify_cheap();
    if STM && rev % TRIM_EVERY == 0 {
        trim(shared, rev);
    }
    Ok(Committed::Wrote(rev))
}

/// A cleared log entry: recycled from this segment's cache or the runtime's pool, or new.
fn new_entry(shared: &Shared, local: &mut SegmentLocal) -> Box<Entry> {
    if local.entry_cache.is_empty() {
        let mut pool = shared.entry_pool.lock().unwrap_or_else(|e| e.into_inner());
        let take = pool.len().min(ENTRY_BATCH);
        let at = pool.len() - take;
        local.entry_cache.extend(pool.drain(at..));
    }
    match local.entry_cache.pop() {
        Some(mut e) => {
            e.next = ptr::null_mut::<Entry>().into();
            e.data.clear();
            e.sites.clear();
            e
        }
        None => Box::new(Entry::empty()),
    }
}

/// Entries a segment takes from the pool at once.
const ENTRY_BATCH: usize = 64;
/// Most entries kept in the pool; the trimmer frees the rest.
const POOL_MAX: usize = 4096;

/// Undoes the running attempt: restores before-images, forgets allocations, ends
/// inevitability.
pub(crate) fn rollback(shared: &Shared, local: &mut SegmentLocal) {
    restore_backups(local, 0, 0);
    local.modified.clear();
    local.backups.clear();
    local.allocated.clear();
    local.bump.rollback();
    local.doomed = None;
    local.guards.clear();
    local.update = Guard::NONE;
    if local.inevitable {
        end_inevitable(shared, local, ptr::null_mut());
    }
    if !local.pending_roots.is_empty() {
        for born in local.pending_roots.drain(..) {
            born.store(ROLLED_BACK, Ordering::Release);
        }
        shared.committed.notify_cheap();
    }
}

/// Copies back the before-images saved after `modified[from]` / `backups[from_word]`, newest
/// first, so that an object saved twice (see [`checkpoint`]) ends with its oldest image.
fn restore_backups(local: &mut SegmentLocal, from: usize, from_word: usize) {
    let mut at = local.backups.len();
    for &g in local.modified[from..].iter().rev() {
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
            log::copy_words(local.backups.as_ptr().add(at), hdr.cast(), words);
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
    for &g in local.modified.iter().chain(&local.allocated) {
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
        modified: local.modified.len(),
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
    local.modified.truncate(cp.modified);
    local.backups.truncate(cp.backups);
    local.write_sites.truncate(cp.modified);
    keep_since(local, cp);
}

/// Frees every log entry but the newest. The caller owns every segment and has brought each
/// up to the newest entry.
pub(crate) fn trim_all(shared: &Shared) {
    let mut head = shared.log_head.lock().unwrap_or_else(|e| e.into_inner());
    let keep_from = shared
        .segments
        .iter()
        .map(|s| s.applied_rev.load(Ordering::Acquire))
        .min()
        .unwrap_or(0);
    // SAFETY: every segment's last applied entry has revision >= keep_from (invariant 4); we
    // hold the trimming lock.
    unsafe { log::free_before(&mut head.0, keep_from, drop) };
}

/// A free segment this many revisions behind is brought up to date by the trimmer.
const IDLE_LAG: u64 = 1024;

/// How often (in revisions) a committer tries to free old log entries.
const TRIM_EVERY: u64 = 64;

/// Frees the log entries every segment has applied. Idle segments are brought up to date
/// first, so an unused segment does not hold the log back.
fn trim(shared: &Shared, newest: u64) {
    let Ok(mut head) = shared.log_head.try_lock() else {
        return; // someone else is trimming
    };
    let mut keep_from = u64::MAX;
    for seg in shared.segments.iter() {
        // Only a segment that has fallen far behind is idle: an active one catches up by
        // itself at its next transaction, and taking it here would make its thread wait.
        let lagging = seg.applied_rev.load(Ordering::Relaxed) + IDLE_LAG < newest;
        let taken = if lagging {
            owner::try_take(&seg.state, seg.id(), CATCHING_UP)
        } else {
            None
        };
        if let Some(bias) = taken {
            // SAFETY: we took the segment (out of FREE, a revoked bias or our own), so we own
            // its local state until we give it back (invariant 1).
            let local = unsafe { &mut *seg.local.get() };
            let r = validate(shared, seg, local, false);
            debug_assert!(r.is_ok());
            match bias {
                Some(slot) => owner::release_biased(&seg.state, slot, false),
                None => seg.state.store(FREE, Ordering::SeqCst),
            }
            shared.segment_free.notify();
        }
        keep_from = keep_from.min(seg.applied_rev.load(Ordering::Acquire));
    }
    let mut pool = shared.entry_pool.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: every segment's last applied entry has revision >= keep_from (revisions only
    // grow), so entries before it are unreachable (invariant 4); we hold the trimming lock.
    unsafe {
        log::free_before(&mut head.0, keep_from, |e| {
            if pool.len() < POOL_MAX {
                pool.push(e);
            }
        })
    };
}

#[cfg(all(test, not(feature = "gil")))]
mod tests {
    use super::*;
    use crate::handle::Gc;
    use crate::runtime::Stm;
    use crate::tx::Tx;

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
                match owner::try_take(&seg.state, seg.id(), owner::OWNED) {
                    Some(None) => return seg,
                    // Biased to this thread (by earlier transactions): drop the bias, then
                    // take it again by compare-and-swap.
                    Some(Some(slot)) => owner::release_biased(&seg.state, slot, true),
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

    #[test]
    fn a_read_marks_the_object_and_a_newer_commit_of_it_conflicts() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, a, local(a));
        begin(sh, b, local(b));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        assert_eq!(gx.get(), 1);
        // SAFETY: in bounds (invariant 3); the test owns the segment (invariant 1).
        let (mx, my) = unsafe { (*local(a).marker(x), *local(a).marker(y)) };
        assert_eq!(mx, local(a).version, "read marker set");
        assert_ne!(my, local(a).version, "y was not read");
        // B writes x and commits.
        let tb = tx_for(&stm, b);
        Gc::<u64>::new(&tb, x).set(10);
        assert!(commit(sh, b, local(b)).is_ok());
        // A still sees its snapshot, and validation reports a read-write conflict.
        assert_eq!(gx.get(), 1);
        let c = validate(sh, a, local(a), true).unwrap_err();
        assert_eq!(
            (c.granule, c.write_write, c.other_segment),
            (x, false, b.index)
        );
        rollback(sh, local(a));
        // A fresh attempt imports the commit.
        begin(sh, a, local(a));
        let ta = tx_for(&stm, a);
        assert_eq!(Gc::<u64>::new(&ta, x).get(), 10);
    }

    #[test]
    fn disjoint_writes_both_commit_and_are_imported() {
        let (stm, x, y) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, a, local(a));
        begin(sh, b, local(b));
        Gc::<u64>::new(&tx_for(&stm, a), x).set(11);
        Gc::<u64>::new(&tx_for(&stm, b), y).set(22);
        assert!(commit(sh, b, local(b)).is_ok());
        assert!(
            commit(sh, a, local(a)).is_ok(),
            "no conflict: a never touched y"
        );
        // A imported B's write while validating its commit; B sees A's at its next start.
        begin(sh, a, local(a));
        begin(sh, b, local(b));
        for seg in [a, b] {
            let t = tx_for(&stm, seg);
            assert_eq!(
                (Gc::<u64>::new(&t, x).get(), Gc::<u64>::new(&t, y).get()),
                (11, 22)
            );
        }
    }

    #[test]
    fn concurrent_writes_to_one_object_are_a_write_write_conflict() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let (a, b) = two_segments(&stm);
        begin(sh, a, local(a));
        begin(sh, b, local(b));
        Gc::<u64>::new(&tx_for(&stm, a), x).set(5);
        assert_eq!(local(a).modified, vec![x]);
        Gc::<u64>::new(&tx_for(&stm, b), x).set(6);
        assert!(commit(sh, b, local(b)).is_ok());
        let c = commit(sh, a, local(a)).err().expect("a must lose");
        assert!(c.write_write);
        rollback(sh, local(a));
        // The backup restored a's copy to the value of its snapshot (1), and the barrier flag.
        let hdr = local(a).header(x);
        // SAFETY: a live object's header in a segment the test owns (invariants 1 and 3).
        assert_ne!(unsafe { (*hdr).flags } & FLAG_WRITE_BARRIER, 0);
        begin(sh, a, local(a));
        assert_eq!(Gc::<u64>::new(&tx_for(&stm, a), x).get(), 6);
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
            assert!(tx.local().modified.is_empty(), "no backup of a new object");
            assert_eq!(tx.local().allocated, vec![o.granule]);
        });
        let g = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
        stm.atomically(|tx| {
            g.get(tx).set(1);
            assert_eq!(
                tx.local().modified.len(),
                1,
                "committed objects do need one"
            );
        });
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
        begin(sh, a, local(a));
        let ta = tx_for(&stm, a);
        let gx = Gc::<u64>::new(&ta, x);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gx.debug_check_marked()));
        assert!(r.is_err(), "an unmarked committed object passed the check");
        gx.read_barrier();
        gx.debug_check_marked();
        // An update marks the object through its write barrier before its unbarriered read.
        rollback(sh, local(a));
        begin(sh, a, local(a));
        let ta = tx_for(&stm, a);
        Gc::<u64>::new(&ta, x).update(|v| *v += 1);
        rollback(sh, local(a));
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
            begin(sh, a, local(a));
            let ta = tx_for(stm, a);
            let h = Gc::<[u64; N]>::new(&ta, g);
            h.set([9u64; N]);
            assert_eq!(h.get(), [9u64; N]);
            rollback(sh, local(a));
            begin(sh, a, local(a));
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
            begin(sh, b, local(b));
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
        check::<40>(&stm);
    }

    #[test]
    fn the_marker_version_wraps_by_clearing_every_marker() {
        let (stm, x, _) = setup();
        let sh = &stm.shared;
        let a = unbiased(&stm);
        begin(sh, a, local(a));
        Gc::<u64>::new(&tx_for(&stm, a), x).get();
        assert!(commit(sh, a, local(a)).is_ok());
        local(a).version = u16::MAX;
        // SAFETY: in bounds (invariant 3); owned (invariant 1).
        unsafe { *local(a).marker(x) = 1 };
        begin(sh, a, local(a));
        assert_eq!(local(a).version, 1);
        // SAFETY: in bounds (invariant 3); owned (invariant 1).
        assert_eq!(unsafe { *local(a).marker(x) }, 0, "old markers cleared");
    }

    #[test]
    fn the_log_is_trimmed_once_every_segment_has_passed() {
        let stm = Stm::builder()
            .segments(2)
            .heap_size(1 << 20)
            .build()
            .unwrap();
        let g = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
        for _ in 0..(IDLE_LAG + 3 * TRIM_EVERY) {
            stm.atomically(|tx| g.get(tx).update(|v| *v += 1));
        }
        let head_rev = {
            let head = stm.shared.log_head.lock().unwrap();
            // SAFETY: the head entry is live while we hold the trimming lock.
            unsafe { (*head.0).rev }
        };
        // The unused second segment was caught up by the trimmer, so it does not pin rev 0.
        assert!(
            head_rev >= 2 * TRIM_EVERY,
            "log not trimmed: head at {head_rev}"
        );
        assert_eq!(
            stm.shared.segments[1].applied_rev.load(Ordering::Relaxed),
            head_rev
        );
    }
}
