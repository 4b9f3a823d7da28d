//! The commit protocol between segments and the committed heap, over the narrow state it
//! needs: the version words and images of the committed heap, each segment's commit count
//! and `committing` flag, the `inevitable` flag, and of the running attempt only its
//! `Footprint` (`footprint.rs`: read set, written and allocated objects, holder mark,
//! inevitability, last checked commit count) and its segment's images and copy versions
//! (`SegmentLocal::header`, `SegmentLocal::copy`). Everything else an attempt has
//! (barriers, before-images, guards, series, reports, fault injection) is in `commit.rs`,
//! which calls in here; the loom test's `SegmentLocal` has nothing else, so this file
//! cannot name it.
//!
//! **This file is compiled twice.** In the runtime, `super::facade` (`facade.rs`) gives it
//! std's atomics, the mapped committed heap (`committed.rs`) and the runtime's segments. In
//! `tests/loom_protocol.rs`, a facade of the same names gives it loom's atomics and a
//! committed heap made of loom atomics, so that loom runs *this code*, not a model of it,
//! under every interleaving of two or three threads (up to a preemption bound) and checks
//! its memory orderings. So this file names nothing but `super::facade` and itself.
//!
//! The protocol, in short (the whole argument is in `commit.rs` and ARCHITECTURE.md):
//! * an attempt's first read of an object whose version word differs from its segment's
//!   copy version waits out a committer that holds the object, or imports the newer image
//!   between two looks at the version word, seqlock-style ([`catch_up`], [`import`]), and
//!   then checks that everything it read before is still current ([`revalidate`]);
//! * a commit ([`commit`]) announces itself and waits while another transaction is
//!   inevitable, locks the version words of what it wrote by compare-and-swap from the
//!   versions it read, takes its position in the serial order, checks its read set, copies
//!   its images into the committed heap (its new objects first) and unlocks each with the
//!   next version, counting itself in its segment before and after;
//! * a transaction becomes inevitable ([`become_inevitable`]) by setting the `inevitable`
//!   flag, waiting until every committer that may have missed it has finished, and checking
//!   its reads once: from then on nothing it read can change.

use super::facade::{
    compiler_fence, fence, heavy_fence, heavy_fence_available, locks_before_checks,
    wait_for_inevitable, yield_now, Backoff, CommittedHeap, Header, Ordering, Segment,
    SegmentLocal, Shared, FLAG_GUARDED, FLAG_NEW, FLAG_WRITE_BARRIER,
};

/// Low bits of a version word naming the segment that holds the object locked (index + 1).
pub(crate) const HOLDER_BITS: u32 = 9;
/// The holder bits of a version word.
pub(crate) const HOLDER_MASK: u64 = (1 << HOLDER_BITS) - 1;
/// One commit of an object, in version-word units.
pub(crate) const ONE: u64 = 1 << HOLDER_BITS;

/// The holder of a version word: 0 if unlocked, else the locking segment's index + 1.
#[inline(always)]
pub(crate) fn holder(word: u64) -> u64 {
    word & HOLDER_MASK
}

/// The version of a version word (its holder bits cleared).
#[inline(always)]
pub(crate) fn version(word: u64) -> u64 {
    word & !HOLDER_MASK
}

/// Why the protocol refuses an attempt: an object it read or wrote is no longer at the
/// version it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The object.
    pub granule: u32,
    /// Found while locking what the attempt wrote (else while checking what it read).
    pub write_write: bool,
    /// The index of the segment that held the object, or `u32::MAX` when none or unknown.
    pub other: u32,
}

/// The index of the segment named by a version word's holder bits (`u32::MAX` if none).
fn holder_index(word: u64) -> u32 {
    (holder(word) as u32).wrapping_sub(1)
}

/// The sum of the segments' commit counts, unless one of them is publishing a commit now
/// (its count is odd then): `None`.
#[inline]
pub(crate) fn settled_commit_count(shared: &Shared) -> Option<u64> {
    let mut sum = 0u64;
    for s in shared.segments.iter() {
        let c = s.commits.load(Ordering::Acquire);
        if c & 1 != 0 {
            return None;
        }
        sum += c;
    }
    Some(sum)
}

/// The attempt's first read of the object at `granule` found its version word different
/// from the segment's copy version: a committer holds it (wait for its outcome) or a newer
/// image is committed (import it, then check the attempt's earlier reads).
///
/// On `Err` the attempt must not go on reading beside the new image: the object's copy
/// version is then 0 (no version), so that a later read of it imports and fails again.
///
/// # Safety
/// `granule` is a live object of this heap (invariant 3) in the caller's own segment
/// (invariant 1), one the attempt has not read, written or allocated (no handle's earlier
/// read can see its bytes change, invariant 2).
#[cold]
#[inline(never)]
pub(crate) unsafe fn catch_up(
    shared: &Shared,
    heap: &CommittedHeap,
    local: &mut SegmentLocal,
    granule: u32,
) -> Result<(), Lost> {
    let backoff = Backoff::new();
    loop {
        let now = heap.word(granule).load(Ordering::Acquire);
        // SAFETY: in bounds (invariant 3), owned (invariant 1).
        let have = unsafe { *local.copy(granule) };
        if now == have {
            return Ok(()); // the committer that held it gave up
        }
        if holder(now) != 0 {
            // Its committer is publishing or checking: our image may be about to become
            // old, and other objects of the same commit may be new already. Wait.
            backoff.snooze();
            continue;
        }
        // SAFETY: forwarded from our caller.
        let got = unsafe { import(heap, local, granule) };
        // SAFETY: in bounds (invariant 3), owned (invariant 1).
        unsafe { *local.copy(granule) = got };
        if let Err(lost) = revalidate(shared, heap, local, granule) {
            // SAFETY: as above.
            unsafe { *local.copy(granule) = 0 };
            return Err(lost);
        }
        return Ok(());
    }
}

/// Copies the committed image of the object at `granule` into this segment, as one
/// consistent image (seqlock-style: the version word is unlocked and the same before and
/// after the copy); returns that version word.
///
/// # Safety
/// As [`catch_up`].
unsafe fn import(heap: &CommittedHeap, local: &mut SegmentLocal, granule: u32) -> u64 {
    // While the copy is in progress the image is neither version: say so.
    // SAFETY: in bounds (invariant 3), owned (invariant 1).
    unsafe { *local.copy(granule) = 0 };
    let backoff = Backoff::new();
    loop {
        let before = heap.word(granule).load(Ordering::Acquire);
        if holder(before) != 0 {
            backoff.snooze();
            continue;
        }
        // SAFETY: the image of a live object lies inside the committed heap (invariant 3).
        let head = unsafe { heap.head(granule) };
        let granules = (head >> 32) as usize;
        if granules == 0 || granule as usize + granules > heap.granules() {
            // Only a half-written image can look like this: look again, once it is settled.
            fence(Ordering::Acquire);
            assert!(
                heap.word(granule).load(Ordering::Relaxed) != before,
                "stm-runtime bug: the committed image at granule {granule:#x} has no header"
            );
            backoff.snooze();
            continue;
        }
        // SAFETY: the object's granules lie inside the heap (checked above against its
        // size), in our own segment (invariant 1), where no reference into them is alive
        // (invariant 5).
        unsafe { heap.import_image(granule, local.header(granule).cast(), granules) };
        // Acquire: orders the copy's loads before the second look at the version word.
        fence(Ordering::Acquire);
        if heap.word(granule).load(Ordering::Relaxed) == before {
            return before;
        }
        backoff.snooze();
    }
}

/// After an import of `imported`: checks that everything the attempt read before, and the
/// imported image itself, are still current, unless no commit has published anything since
/// the last check.
///
/// The filter: the sum of the segments' commit counts, read *after* the import and before
/// the check, is kept (if no count was odd, i.e. no commit was publishing). A commit counts
/// itself before it publishes an image and after, and the counts only grow. If the sum read
/// after a later import is the same, every commit whose images this attempt has seen (they
/// happen before its count stores, which the Acquire loads then see) had finished before the
/// last check began, so that check saw its versions: nothing read since can be newer than
/// what the check found current. (loom found that reading the count before the import, or
/// leaving the imported object out of the check, lets a commit slip between the two.)
/// A short read set is checked without looking at the counts (one line per segment).
fn revalidate(
    shared: &Shared,
    heap: &CommittedHeap,
    local: &mut SegmentLocal,
    imported: u32,
) -> Result<(), Lost> {
    let check_counts = local.fp.reads.len() > shared.segments.len();
    let count = if check_counts {
        // Acquire loads after the import's: see above.
        settled_commit_count(shared)
    } else {
        None
    };
    if count.is_some() && count == local.fp.seen {
        return Ok(());
    }
    current(
        heap,
        local,
        local.fp.reads.iter().copied().chain([imported]),
    )?;
    local.fp.seen = count;
    Ok(())
}

/// Whether every object the attempt read is still at the version it read, waiting out
/// committers that hold one (they either publish a new version, which is a conflict, or give
/// up). Only for a thread that holds no lock itself (it could wait for a committer that waits
/// for it).
pub(crate) fn reads_current(heap: &CommittedHeap, local: &SegmentLocal) -> Result<(), Lost> {
    current(heap, local, local.fp.reads.iter().copied())
}

/// [`reads_current`] for the objects `granules` (read or imported by the attempt).
fn current(
    heap: &CommittedHeap,
    local: &SegmentLocal,
    granules: impl Iterator<Item = u32>,
) -> Result<(), Lost> {
    for g in granules {
        let backoff = Backoff::new();
        loop {
            let now = heap.word(g).load(Ordering::Acquire);
            if holder(now) != 0 && holder(now) != local.fp.holder {
                backoff.snooze();
                continue;
            }
            // SAFETY: `g` was read, so it is a live object (invariant 3); owned (invariant 1).
            if version(now) != unsafe { *local.copy(g) } {
                return Err(Lost {
                    granule: g,
                    write_write: false,
                    other: u32::MAX,
                });
            }
            break;
        }
    }
    Ok(())
}

/// Makes the running attempt the inevitable transaction, waiting while another one is.
/// Fails (the attempt must abort) if something it read has changed since.
pub(crate) fn become_inevitable(
    shared: &Shared,
    heap: &CommittedHeap,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<(), Lost> {
    while shared
        .inevitable
        .compare_exchange(0, local.fp.holder, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        wait_for_inevitable(shared, local);
    }
    wait_for_committers(shared, seg);
    // No commit runs now, and none will until we end: one check of the reads suffices.
    if let Err(lost) = reads_current(heap, local) {
        shared.inevitable.store(0, Ordering::SeqCst);
        shared.inevitable_done.notify();
        return Err(lost);
    }
    local.fp.inevitable = true;
    Ok(())
}

/// The inevitable side of the Dekker pattern with committers ([`announce`]): once
/// `Shared::inevitable` is set, waits until every commit that may have missed it is over.
fn wait_for_committers(shared: &Shared, me: &Segment) {
    if heavy_fence_available() {
        // Every thread runs a full barrier: a committer that announced itself before it
        // shows here, one that did not will see `inevitable` set (see `announce`). The kernel
        // may refuse for want of memory: try again.
        while !heavy_fence() {
            yield_now();
        }
    } else {
        fence(Ordering::SeqCst);
    }
    for seg in shared.segments.iter() {
        if seg.index != me.index {
            let backoff = Backoff::new();
            while seg.committing.load(Ordering::SeqCst) {
                backoff.snooze();
            }
        }
    }
}

/// A committer announces itself before it looks at `Shared::inevitable`. With `membarrier`
/// the announcement is a plain store and a compiler fence (the inevitable side runs the
/// barrier for us, as biased ownership does, `owner.rs`); without it (and under loom), a
/// store and a SeqCst fence. Either way: the committer sees `inevitable` set, or the
/// transaction becoming inevitable sees `committing` and waits.
#[inline(always)]
fn announce(seg: &Segment) {
    seg.committing.store(true, Ordering::Relaxed);
    if heavy_fence_available() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// Ends inevitability and wakes the waiters.
pub(crate) fn end_inevitable(shared: &Shared, local: &mut SegmentLocal) {
    // SeqCst: pairs with the waiters' SeqCst load (Monitor).
    shared.inevitable.store(0, Ordering::SeqCst);
    shared.inevitable_done.notify();
    local.fp.inevitable = false;
}

/// The next position in the serial order with `Config::serial_order`, else 0.
#[inline]
pub(crate) fn serial_position(shared: &Shared) -> u64 {
    if shared.config.serial_order {
        shared.order.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    }
}

/// Commits the writes of the running attempt (the objects it wrote, `local.fp.modified`, and
/// those it allocated, `local.fp.allocated`): lock, check, publish, as the module says; returns
/// its position in the serial order ([`serial_position`]). An inevitable attempt ends its
/// inevitability here (it cannot fail: nothing it read or wrote can change). On `Err`
/// nothing is published and nothing stays locked.
///
/// Every written committed object's write barrier is re-armed once here (an object is listed
/// twice when written before and after an `or_else` checkpoint); the new objects' barriers
/// when they are published.
#[inline(always)]
pub(crate) fn commit(
    shared: &Shared,
    heap: &CommittedHeap,
    seg: &Segment,
    local: &mut SegmentLocal,
) -> Result<u64, Lost> {
    loop {
        announce(seg);
        if local.fp.inevitable || shared.inevitable.load(Ordering::SeqCst) == 0 {
            break;
        }
        seg.committing.store(false, Ordering::Release);
        wait_for_inevitable(shared, local);
    }
    // One pass over what we wrote: re-arm the write barrier of every committed object, once
    // each, lock it at the version we read, and list it in `writes`. Another version, or
    // another holder, means someone committed it (or is committing it) since: we lose (the
    // rollback restores the before-images, headers and their flags included).
    local.fp.writes.clear();
    for i in 0..local.fp.modified.len() {
        let g = local.fp.modified[i];
        let hdr: *mut Header = local.header(g);
        // SAFETY: a live object of this heap in our own segment (invariants 1 and 3).
        let flags = unsafe { (*hdr).flags };
        // An object allocated by this attempt (written after a checkpoint) is re-armed below,
        // with the allocations; an object listed twice was re-armed at its first entry.
        // SAFETY: as above.
        if flags & FLAG_NEW != 0 || !unsafe { rearm(hdr) } {
            continue;
        }
        // SAFETY: a live object (invariant 3); owned (invariant 1).
        let have = unsafe { *local.copy(g) };
        // SeqCst, as the loads of the read check below: lock-then-check is Dekker's pattern
        // (two committers that each read what the other writes must not both pass), which
        // Acquire/Release alone does not order on weak hardware (the same instructions on
        // x86-64).
        if let Err(now) = heap.word(g).compare_exchange(
            have,
            have | local.fp.holder,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            return Err(give_up(
                heap,
                seg,
                local,
                local.fp.writes.len(),
                Lost {
                    granule: g,
                    write_write: true,
                    other: holder_index(now),
                },
            ));
        }
        local.fp.writes.push(g);
    }
    let written = local.fp.writes.len();
    locks_before_checks();
    let rev = serial_position(shared);
    // Everything we read is still at the version we read, and nobody else holds it: the
    // commit is serialized here. (Nothing changes under an inevitable transaction.)
    if !local.fp.inevitable {
        for &g in &local.fp.reads {
            let now = heap.word(g).load(Ordering::SeqCst);
            // SAFETY: a read object is live (invariant 3); owned (invariant 1).
            let have = unsafe { *local.copy(g) };
            // Current: the version we read (`have` has no holder bits), unlocked or locked
            // by us (we wrote it too).
            if now != have && now != have | local.fp.holder {
                let lost = Lost {
                    granule: g,
                    write_write: false,
                    other: holder_index(now),
                };
                return Err(give_up(heap, seg, local, written, lost));
            }
        }
    }
    // Publish. First count it (odd: publishing; see `revalidate`). Release: the locks and
    // the count are ordered before the images we now write (a seqlock writer's fence), so
    // an importer that sees a byte of ours sees the lock and the count.
    let count = seg.commits.load(Ordering::Relaxed);
    seg.commits.store(count + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    // Our new objects first: nothing reaches them before the objects that point to them
    // are published below, or their roots are settled after this.
    for &g in &local.fp.allocated {
        let hdr = local.header(g);
        // SAFETY: an object this attempt allocated, live in our own segment (invariants 1, 3
        // and 16); nobody else can reach its granules yet (they are in no committed object
        // and no root), so its version word has no other writer and its image no reader.
        unsafe {
            if !rearm(hdr) {
                continue;
            }
            let next = version(heap.word(g).load(Ordering::Relaxed)) + ONE;
            heap.publish_image(hdr.cast(), g, (*hdr).granules as usize);
            heap.word(g).store(next, Ordering::Release);
            *local.copy(g) = next;
        }
    }
    for &g in &local.fp.writes {
        let hdr = local.header(g);
        // SAFETY: a live object we hold locked (above): no other committer writes its image,
        // and importers check the version word around their copy; our own image of it is in
        // our segment (invariant 1).
        unsafe {
            heap.publish_image(hdr.cast(), g, (*hdr).granules as usize);
            let next = *local.copy(g) + ONE;
            // Release: the image happens before anyone who sees this version.
            heap.word(g).store(next, Ordering::Release);
            *local.copy(g) = next;
        }
    }
    seg.committing.store(false, Ordering::Release);
    // Even again. Release, after the versions: see `Shared::commit_count`.
    seg.commits.store(count + 2, Ordering::Release);
    if local.fp.inevitable {
        end_inevitable(shared, local);
    }
    Ok(rev)
}

/// A lost commit: unlocks the first `locked` objects of `writes` at the versions they had,
/// withdraws the announcement and returns `lost`. (An inevitable transaction never gets
/// here: nothing it read or wrote can change.)
#[cold]
fn give_up(
    heap: &CommittedHeap,
    seg: &Segment,
    local: &SegmentLocal,
    locked: usize,
    lost: Lost,
) -> Lost {
    for &g in &local.fp.writes[..locked] {
        // SAFETY: a live object (invariant 3); owned (invariant 1).
        let have = unsafe { *local.copy(g) };
        heap.word(g).store(have, Ordering::Release);
    }
    seg.committing.store(false, Ordering::Release);
    lost
}

/// Re-arms the write barrier of an object committed now and clears the flags that are never
/// committed; false if it was re-armed already (listed twice).
///
/// # Safety
/// `hdr` is the header of a live object in the caller's own segment (invariants 1 and 3).
#[inline(always)]
pub(crate) unsafe fn rearm(hdr: *mut Header) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe {
        let flags = (*hdr).flags;
        if flags & FLAG_WRITE_BARRIER != 0 {
            return false;
        }
        (*hdr).flags = (flags & !(FLAG_NEW | FLAG_GUARDED)) | FLAG_WRITE_BARRIER;
    }
    true
}
