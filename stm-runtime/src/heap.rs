//! Heap layout: object headers, granules, and the allocator that hands out address ranges.
//!
//! The heap is addressed in *granules* of 16 bytes. A handle is a granule number (a `u32`),
//! valid in every segment: granule `g` lives at byte `16 * g` of each segment's mapping.
//! Granule numbers below [`FIRST_GRANULE`] are never allocated, so 0 can mean "no object".
//!
//! Every object starts on a granule boundary with an 8-byte [`Header`], followed by the value
//! (aligned to 8). Objects are at least one granule long, so no two objects share the first
//! granule, and one read marker per granule identifies an object.
//!
//! Address ranges are handed out in chunks ([`ChunkAllocator`]) so that each segment bumps
//! through its own chunk: two transactions running at once never allocate the same address.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::StmError;

/// Bytes in a granule: the unit of addresses, read markers and object sizes.
pub(crate) const GRANULE: usize = 16;

/// Collections are not asked for before this many granules (16 MiB) were allocated.
pub(crate) const MIN_THRESHOLD: usize = (16 << 20) / GRANULE;
/// Bytes of header in front of every object.
pub(crate) const HEADER_SIZE: usize = 8;
/// The first granule ever allocated (page 0 stays unused, so granule 0 is "null").
pub(crate) const FIRST_GRANULE: u32 = 4096 / GRANULE as u32;
/// Granules per allocation chunk (64 KiB).
const CHUNK_GRANULES: u32 = 4096;

/// Header flag: this object is committed and this transaction has not written it yet, so a
/// write must first go through the write barrier's slow path (save a backup, record it).
pub(crate) const FLAG_WRITE_BARRIER: u32 = 0x1;
/// Header flag: allocated by the transaction running in this segment (not yet committed).
pub(crate) const FLAG_NEW: u32 = 0x2;
/// Header flag: a field of this object is borrowed by a live write-back guard (a mutable
/// place such as `&mut h.field`) or an update in progress, listed in the segment's `guards`.
/// It sends every write to the object through the write barrier's slow path, which refuses
/// writes that overlap a borrowed field (they would be lost when the guard writes back).
/// Never committed: commit clears it.
pub(crate) const FLAG_GUARDED: u32 = 0x4;

/// The 8 bytes in front of every object. Each segment has its own copy, so the flags are
/// per segment: they describe the object from the point of view of that segment's transaction.
#[repr(C)]
pub(crate) struct Header {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The object's length in granules, header included. Never changes.
    pub granules: u32,
}

/// Granules needed for an object whose value is `size` bytes.
pub(crate) const fn granules_for(size: usize) -> usize {
    let bytes = HEADER_SIZE + size;
    bytes.div_ceil(GRANULE)
}

/// Hands out disjoint granule ranges to segments: ranges freed by the collector first, then
/// fresh ones from the start of the heap to its end. Counts what it hands out, and asks for a
/// collection past a threshold.
pub(crate) struct ChunkAllocator {
    next: AtomicU32,
    /// The highest `next` ever reached: no object ever lay at or above it (it only grows,
    /// while `next` goes back down after a collection).
    high: AtomicU32,
    end: u32,
    /// Ranges freed by the last collections, sorted by address.
    free: Mutex<Vec<(u32, u32)>>,
    /// Whether `free` is non-empty (read without the lock).
    has_free: AtomicBool,
    /// Granules handed out since the last collection.
    since_gc: AtomicUsize,
    /// A collection is asked for when `since_gc` passes this.
    threshold: AtomicUsize,
    /// Set when a collection should run (see `gc.rs`).
    pub gc_wanted: AtomicBool,
    /// Side arrays of the heap to fault in when a fresh range is handed out
    /// ([`ChunkAllocator::prefault`]).
    prefault: Vec<SideArray>,
}

/// One array of per-granule entries laid over the heap (a segment's read markers or copy
/// versions, the committed heap's version words or images): its base address and the bytes
/// of one granule's entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SideArray {
    /// The address of granule 0's entry.
    pub base: usize,
    /// The size of one granule's entry.
    pub per_granule: usize,
}

impl SideArray {
    /// Faults in, for writing, the entries of granules `first..first + n`
    /// (`sys::populate_write`); false where the kernel cannot. The array covers them.
    pub(crate) fn populate(&self, first: usize, n: usize) -> bool {
        crate::sys::populate_write(self.base + first * self.per_granule, n * self.per_granule)
    }
}

impl ChunkAllocator {
    pub(crate) fn new(heap_size: usize) -> ChunkAllocator {
        ChunkAllocator {
            next: AtomicU32::new(FIRST_GRANULE),
            high: AtomicU32::new(FIRST_GRANULE),
            end: u32::try_from(heap_size / GRANULE).unwrap_or(u32::MAX),
            free: Mutex::new(Vec::new()),
            has_free: AtomicBool::new(false),
            since_gc: AtomicUsize::new(0),
            threshold: AtomicUsize::new(min_threshold(heap_size)),
            gc_wanted: AtomicBool::new(false),
            prefault: Vec::new(),
        }
    }

    /// The side arrays whose pages a fresh range's objects will use, to fault in for writing
    /// when the range is handed out (`Shared::new`; before any allocation). Each must be a
    /// mapping of the runtime that covers every granule of the heap and lives as long as
    /// this allocator. (Why: `sys::populate_write`. A fresh range's pages were never
    /// touched, so faulting them in here is a plain fill, once per chunk.)
    pub(crate) fn set_prefault(&mut self, arrays: Vec<SideArray>) {
        self.prefault = arrays;
    }

    /// After a collection: every range between live objects (sorted, disjoint) up to the
    /// highest granule ever handed out becomes free; sets the next threshold from the live
    /// size. Only called while no segment allocates (the collector owns them all).
    pub(crate) fn rebuild_free(&self, live: &[(u32, u32)], live_granules: usize) {
        let mut free = Vec::new();
        let mut at = FIRST_GRANULE;
        for &(s, e) in live {
            if s > at {
                free.push((at, s));
            }
            at = at.max(e);
        }
        // The space above the last live object returns to the bump cursor.
        self.next.store(at, Ordering::Relaxed);
        self.has_free.store(!free.is_empty(), Ordering::Relaxed);
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) = free;
        self.since_gc.store(0, Ordering::Relaxed);
        let heap_size = self.end as usize * GRANULE;
        self.threshold.store(
            (2 * live_granules).max(min_threshold(heap_size)),
            Ordering::Relaxed,
        );
    }

    /// Counts `granules` handed out; asks for a collection past the threshold.
    fn count(&self, granules: u32) {
        let n = self
            .since_gc
            .fetch_add(granules as usize, Ordering::Relaxed)
            + granules as usize;
        if n > self.threshold.load(Ordering::Relaxed) {
            self.gc_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// A range from the freed ones, if one is big enough.
    fn take_free(&self, granules: u32) -> Option<(u32, u32)> {
        if !self.has_free.load(Ordering::Relaxed) {
            return None;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let i = free.iter().position(|&(s, e)| e - s >= granules)?;
        let (s, e) = free[i];
        let want = granules.max(CHUNK_GRANULES).min(e - s);
        if e - s - want < 8 {
            free.remove(i); // take the whole range rather than leave a sliver
            self.has_free.store(!free.is_empty(), Ordering::Relaxed);
            return Some((s, e));
        }
        free[i].0 = s + want;
        Some((s, s + want))
    }

    /// Takes a fresh range of at least `granules` granules.
    pub(crate) fn take(&self, granules: u32, heap_size: usize) -> Result<(u32, u32), StmError> {
        let r = self.take_range(granules, heap_size);
        if let Ok((s, e)) = r {
            self.count(e - s);
        } else {
            self.gc_wanted.store(true, Ordering::Relaxed);
        }
        r
    }

    /// A granule above every object there ever was: every granule of every object ever
    /// allocated lies below it. It only grows (every write is a `fetch_max`), and never past
    /// the heap's end. Relaxed is enough for the marker wrap (`commit::wrap_version`): every
    /// marker a segment holds was written for an object whose range was taken (and this
    /// raised) in a happens-before relation with the wrapping thread: its own allocation, a
    /// commit it imported (Release/Acquire on the version word), a `Root` sent to it, the
    /// free list's mutex, or the hand-off of the segment from an earlier owner; so by
    /// coherence its load sees at least that raise.
    pub(crate) fn high_water(&self) -> u32 {
        self.high.load(Ordering::Relaxed)
    }

    /// The fresh range `start..end` just taken from the bump cursor, with the high-water mark
    /// raised to cover it (before anyone can allocate in it).
    fn handed_out(&self, start: u32, end: u32) -> (u32, u32) {
        let before = self.high.fetch_max(end, Ordering::Relaxed);
        // Only above the old mark: below it the pages may have been touched already.
        let from = start.max(before);
        if from < end && !self.prefault.is_empty() {
            self.prefault(from, end);
        }
        (start, end)
    }

    /// Faults in, for writing, the side arrays' pages of granules `start..end`
    /// ([`ChunkAllocator::set_prefault`]).
    #[cold]
    #[inline(never)]
    fn prefault(&self, start: u32, end: u32) {
        for a in &self.prefault {
            if !a.populate(start as usize, (end - start) as usize) {
                return;
            }
        }
    }

    fn take_range(&self, granules: u32, heap_size: usize) -> Result<(u32, u32), StmError> {
        if let Some(r) = self.take_free(granules) {
            return Ok(r);
        }
        let want = granules.max(CHUNK_GRANULES);
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let Some(new_end) = cur.checked_add(want).filter(|&e| e <= self.end) else {
                // Not even a small chunk fits: give out the tail if it is big enough.
                if self.end.saturating_sub(cur) >= granules {
                    match self.next.compare_exchange_weak(
                        cur,
                        self.end,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Ok(self.handed_out(cur, self.end)),
                        Err(seen) => {
                            cur = seen;
                            continue;
                        }
                    }
                }
                return Err(StmError::HeapExhausted {
                    requested: granules as usize * GRANULE,
                    heap_size,
                });
            };
            // Relaxed is enough: the counter only partitions address space; the contents of
            // the range are published through the commit log, not through this counter.
            match self.next.compare_exchange_weak(
                cur,
                new_end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.handed_out(cur, new_end)),
                Err(seen) => cur = seen,
            }
        }
    }
}

/// The smallest allocation volume between two collections: 16 MiB, or a quarter of a small
/// heap.
fn min_threshold(heap_size: usize) -> usize {
    MIN_THRESHOLD.min(heap_size / GRANULE / 4)
}

/// One segment's bump allocator: the current chunk, and chunks given back by aborted
/// transactions (their addresses were never published, so the segment may reuse them).
#[derive(Default)]
pub(crate) struct Bump {
    /// Next free granule of the current chunk.
    pub cur: u32,
    /// End (exclusive) of the current chunk.
    pub end: u32,
    /// `(cur, end)` when the running transaction started.
    pub saved: (u32, u32),
    /// Chunks taken by the running transaction (returned to `spare` if it aborts).
    pub taken: Vec<(u32, u32)>,
    /// Chunks this segment may reuse.
    pub spare: Vec<(u32, u32)>,
}

impl Bump {
    /// Allocates `granules` granules, taking a chunk from `spare` or `global` when needed.
    pub(crate) fn alloc(
        &mut self,
        granules: u32,
        global: &ChunkAllocator,
        heap_size: usize,
    ) -> Result<u32, StmError> {
        if self.end - self.cur < granules {
            let chunk = match self.spare.iter().position(|&(s, e)| e - s >= granules) {
                Some(i) => self.spare.swap_remove(i),
                None => global.take(granules, heap_size)?,
            };
            self.taken.push(chunk);
            (self.cur, self.end) = chunk;
        }
        let at = self.cur;
        self.cur += granules;
        Ok(at)
    }

    /// A transaction starts: remember where allocation stood.
    pub(crate) fn begin(&mut self) {
        self.saved = (self.cur, self.end);
        self.taken.clear();
    }

    /// The transaction aborted: forget everything it allocated.
    pub(crate) fn rollback(&mut self) {
        (self.cur, self.end) = self.saved;
        // Chunks taken during the attempt hold nothing committed: keep them for reuse.
        self.spare.append(&mut self.taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_range_has_its_side_arrays_faulted_in() {
        let heap = 8 << 20;
        let granules = heap / GRANULE;
        let array = crate::sys::map_zeroed(granules * 8).expect("map");
        let base = array.as_ptr() as usize;
        let mut global = ChunkAllocator::new(heap);
        global.set_prefault(vec![SideArray {
            base,
            per_granule: 8,
        }]);
        let (s, e) = global.take(1, heap).expect("a chunk");
        let range = |s: u32, e: u32| (base + s as usize * 8, (e - s) as usize * 8);
        let (at, len) = range(s, e);
        if !crate::sys::populate_available() {
            return; // a kernel without MADV_POPULATE_WRITE
        }
        assert!(
            crate::sys::resident(at, len),
            "the chunk's entries are faulted in"
        );
        let (after, _) = range(e + CHUNK_GRANULES, e + 2 * CHUNK_GRANULES);
        assert!(
            !crate::sys::resident(after, 4096),
            "nothing beyond the chunk"
        );
    }

    #[test]
    fn granules_round_up_and_include_the_header() {
        assert_eq!(granules_for(0), 1);
        assert_eq!(granules_for(8), 1);
        assert_eq!(granules_for(9), 2);
        assert_eq!(granules_for(24), 2);
        assert_eq!(granules_for(25), 3);
    }

    #[test]
    fn chunks_are_disjoint_and_exhaustion_is_an_error() {
        let heap = 1 << 20;
        let global = ChunkAllocator::new(heap);
        let mut seen = Vec::new();
        while let Ok(c) = global.take(1, heap) {
            assert!(c.0 >= FIRST_GRANULE && c.1 as usize <= heap / GRANULE);
            seen.push(c);
        }
        seen.sort();
        for w in seen.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlapping chunks {w:?}");
        }
        assert!(matches!(
            global.take(1, heap),
            Err(StmError::HeapExhausted { .. })
        ));
    }

    #[test]
    fn rollback_returns_the_attempts_allocations() {
        let heap = 1 << 20;
        let global = ChunkAllocator::new(heap);
        let mut bump = Bump::default();
        bump.begin();
        let a = bump.alloc(2, &global, heap).unwrap();
        bump.begin(); // the first transaction committed
        let b = bump.alloc(3, &global, heap).unwrap();
        let big = bump.alloc(CHUNK_GRANULES, &global, heap).unwrap();
        assert_eq!(b, a + 2);
        assert_ne!(
            big,
            b + 3,
            "a full chunk does not fit the rest of the current chunk"
        );
        bump.rollback();
        // The next allocation reuses the aborted one's address.
        assert_eq!(bump.alloc(3, &global, heap).unwrap(), b);
        // And the chunk taken by the aborted attempt is reused, not leaked.
        assert_eq!(bump.alloc(CHUNK_GRANULES, &global, heap).unwrap(), big);
    }
}
