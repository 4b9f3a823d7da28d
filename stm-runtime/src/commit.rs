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

use crate::heap::{Header, FLAG_NEW, FLAG_WRITE_BARRIER, GRANULE};
use crate::log::{self, Entry, INEVITABLE};
use crate::runtime::Shared;
use crate::segment::{Conflict, Segment, SegmentLocal, CATCHING_UP, FREE};
use crate::stats::Counter;

/// Whether barriers and validation are compiled in (false in GIL mode).
pub(crate) const STM: bool = !cfg!(feature = "gil");

/// Starts an attempt in an owned segment: a new marker `version` (when it wraps, after 65535
/// transactions, every marker is reset to zero with one `madvise`), then catch up with the log.
pub(crate) fn begin(shared: &Shared, seg: &Segment, local: &mut SegmentLocal) {
    local.attempt += 1;
    local.bump.begin();
    debug_assert!(local.modified.is_empty() && local.allocated.is_empty());
    if STM {
        local.version = local.version.wrapping_add(1);
        if local.version == 0 {
            // SAFETY: markers are only accessed through raw pointers derived from the mapping
            // at each access; no reference into it is alive.
            unsafe { crate::sys::discard(&local.markers) }
                .expect("madvise(MADV_DONTNEED) on the read markers failed");
            local.version = 1;
        }
        // Nothing is marked with the new version yet, so this cannot conflict.
        let r = validate(shared, seg, local, false);
        debug_assert!(r.is_ok());
    }
}

/// Brings the segment up to the newest committed entry, unless an entry wrote an object
/// this attempt has read (`check`), which is a conflict.
pub(crate) fn validate(
    _shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
    check: bool,
) -> Result<(), Conflict> {
    loop {
        // SAFETY: `local.last` is never freed while this segment's applied revision is at or
        // below it (the trimmer frees only entries older than every segment's).
        let last = unsafe { &*local.last };
        // Acquire: pairs with the Release CAS that linked the entry, so its contents are
        // visible.
        let next = last.next.load(Ordering::Acquire);
        if next.is_null() || next == INEVITABLE {
            return Ok(());
        }
        // SAFETY: a linked entry is live for the same reason as `last` and immutable.
        let entry = unsafe { &*next };
        if check {
            for rec in entry.records() {
                // SAFETY: record granules are objects of this heap, so the marker is in bounds
                // of the marker mapping; only the owner accesses it.
                if unsafe { *local.marker(rec.granule) } == local.version {
                    return Err(Conflict {
                        granule: rec.granule,
                        write_write: local.modified.contains(&rec.granule),
                        other_segment: entry.segment,
                    });
                }
            }
        }
        for rec in entry.records() {
            // SAFETY: the image is `granules * 16` bytes of an object that lies inside the
            // heap; the destination is this segment's private mapping, owned by us, and no
            // reference into it is alive (user code only ever holds copies).
            unsafe {
                ptr::copy_nonoverlapping(
                    rec.image.as_ptr().cast::<u8>(),
                    local.header(rec.granule).cast::<u8>(),
                    rec.image.len() * 8,
                );
            }
        }
        local.last = next;
        seg.applied_rev.store(entry.rev, Ordering::Release);
    }
}

/// The write barrier's slow path: first write of this attempt to a committed object.
///
/// # Safety
/// `granule` is a live object of this heap and the caller owns the segment.
#[cold]
#[inline(never)]
pub(crate) unsafe fn write_slow(local: &mut SegmentLocal, granule: u32) {
    let hdr = local.header(granule);
    // SAFETY: the object is live (caller), so its header is in the mapping; we own it.
    let granules = unsafe { (*hdr).granules };
    if STM {
        // A write marks the object read too, so a concurrent commit of it is a conflict.
        // SAFETY: in bounds (live object), owned.
        unsafe { *local.marker(granule) = local.version };
    }
    let words = granules as usize * (GRANULE / 8);
    local.backups.reserve(words);
    let len = local.backups.len();
    // SAFETY: `reserve` made room; the source is the object's `granules * 16` bytes.
    unsafe {
        ptr::copy_nonoverlapping(
            hdr.cast::<u8>(),
            local.backups.as_mut_ptr().add(len).cast::<u8>(),
            words * 8,
        );
        local.backups.set_len(len + words);
    }
    local.modified.push(granule);
    // SAFETY: as above.
    unsafe { (*hdr).flags &= !FLAG_WRITE_BARRIER };
}

/// Makes the running attempt the inevitable transaction, waiting while another one is.
pub(crate) fn become_inevitable(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<(), Conflict> {
    if local.inevitable {
        return Ok(());
    }
    if STM {
        loop {
            validate(shared, seg, local, true)?;
            // SAFETY: see `validate`.
            let last = unsafe { &*local.last };
            match last.next.compare_exchange(
                ptr::null_mut(),
                INEVITABLE,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(INEVITABLE) => wait_for_inevitable(shared, local.last),
                Err(_) => {} // a new entry: validate it
            }
        }
    }
    local.inevitable = true;
    seg.stats.bump(Counter::Inevitable);
    Ok(())
}

fn wait_for_inevitable(shared: &Shared, last: *const Entry) {
    shared.inevitable_done.wait_until(|| {
        // SAFETY: `last` is our segment's last applied entry: not freed (see `validate`).
        unsafe { (*last).next.load(Ordering::SeqCst) != INEVITABLE }
    });
}

/// Withdraws the inevitable sentinel (or replaces it with `entry`) and wakes the waiters.
fn end_inevitable(shared: &Shared, local: &mut SegmentLocal, entry: *mut Entry) {
    if STM {
        // SAFETY: see `validate`. SeqCst: pairs with the waiters' SeqCst load (Monitor).
        unsafe { (*local.last).next.store(entry, Ordering::SeqCst) };
        shared.inevitable_done.notify();
    }
    local.inevitable = false;
}

/// What a successful commit did.
pub(crate) enum Committed {
    /// Nothing was written or allocated.
    ReadOnly,
    /// The attempt's writes are committed.
    Wrote,
}

/// Commits the running attempt, or reports the conflict that prevents it (the caller then
/// rolls back).
pub(crate) fn commit(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<Committed, Conflict> {
    if let Some(c) = local.doomed.take() {
        return Err(c);
    }
    if local.modified.is_empty() && local.allocated.is_empty() {
        if local.inevitable {
            end_inevitable(shared, local, ptr::null_mut());
        }
        local.pending_roots.clear();
        return Ok(Committed::ReadOnly);
    }
    // Re-arm the write barrier of every object we wrote or created, and copy the images.
    let mut data = Vec::new();
    for &g in local.modified.iter().chain(&local.allocated) {
        let hdr: *mut Header = local.header(g);
        // SAFETY: live objects of this heap in our own segment.
        unsafe {
            (*hdr).flags = ((*hdr).flags & !FLAG_NEW) | FLAG_WRITE_BARRIER;
            if STM {
                Entry::push_record(&mut data, g, (*hdr).granules, hdr.cast());
            }
        }
    }
    let rev = if STM {
        let entry = Box::into_raw(Box::new(Entry {
            next: ptr::null_mut::<Entry>().into(),
            rev: 0,
            segment: seg.index,
            data,
        }));
        loop {
            if !local.inevitable {
                if let Err(c) = validate(shared, seg, local, true) {
                    // SAFETY: the entry was never published; we still own it.
                    drop(unsafe { Box::from_raw(entry) });
                    return Err(c);
                }
            }
            // SAFETY: see `validate`.
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
                Err(INEVITABLE) => wait_for_inevitable(shared, local.last),
                Err(_) => {} // someone committed first: validate against it
            }
        }
        // SAFETY: the entry is linked and live (it is our last applied one from now on).
        let rev = unsafe { (*entry).rev };
        local.last = entry;
        seg.applied_rev.store(rev, Ordering::Release);
        shared.tail_rev.fetch_max(rev, Ordering::SeqCst);
        shared.committed.notify();
        rev
    } else {
        let rev = shared.tail_rev.fetch_add(1, Ordering::SeqCst) + 1;
        shared.committed.notify();
        local.inevitable = false;
        rev
    };
    local.modified.clear();
    local.backups.clear();
    local.allocated.clear();
    for born in local.pending_roots.drain(..) {
        born.store(rev, Ordering::Release);
    }
    if STM && rev % TRIM_EVERY == 0 {
        trim(shared);
    }
    Ok(Committed::Wrote)
}

/// Undoes the running attempt: restores before-images, forgets allocations, ends
/// inevitability.
pub(crate) fn rollback(shared: &Shared, local: &mut SegmentLocal) {
    let mut at = 0;
    for &g in &local.modified {
        let hdr = local.header(g);
        // SAFETY: a live object of our segment; its backup is the next `granules * 2` words
        // (written by `write_slow` in the same order as `modified`).
        unsafe {
            let words = (*hdr).granules as usize * (GRANULE / 8);
            ptr::copy_nonoverlapping(
                local.backups.as_ptr().add(at).cast::<u8>(),
                hdr.cast::<u8>(),
                words * 8,
            );
            at += words;
        }
    }
    local.modified.clear();
    local.backups.clear();
    local.allocated.clear();
    local.bump.rollback();
    local.doomed = None;
    if local.inevitable {
        end_inevitable(shared, local, ptr::null_mut());
    }
    for born in local.pending_roots.drain(..) {
        born.store(crate::handle::ROLLED_BACK, Ordering::Release);
    }
}

/// How often (in revisions) a committer tries to free old log entries.
const TRIM_EVERY: u64 = 64;

/// Frees the log entries every segment has applied. Idle segments are brought up to date
/// first, so an unused segment does not hold the log back.
fn trim(shared: &Shared) {
    let Ok(mut head) = shared.log_head.try_lock() else {
        return; // someone else is trimming
    };
    let mut keep_from = u64::MAX;
    for seg in shared.segments.iter() {
        if seg
            .state
            .compare_exchange(FREE, CATCHING_UP, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: we moved the segment out of FREE, so we own its local state until we
            // store FREE again.
            let local = unsafe { &mut *seg.local.get() };
            let r = validate(shared, seg, local, false);
            debug_assert!(r.is_ok());
            seg.state.store(FREE, Ordering::SeqCst);
            shared.segment_free.notify();
        }
        keep_from = keep_from.min(seg.applied_rev.load(Ordering::Acquire));
    }
    // SAFETY: every segment's last applied entry has revision >= keep_from (revisions only
    // grow), so entries before it are unreachable; we hold the trimming lock.
    unsafe { log::free_before(&mut head.0, keep_from) };
}
