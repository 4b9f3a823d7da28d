//! The garbage collector: a stop-the-world mark-and-sweep over committed objects.
//!
//! **When.** Allocation counts the granules handed out since the last collection; past a
//! threshold (twice the live size after the last collection, at least [`MIN_THRESHOLD`](crate::heap::MIN_THRESHOLD)
//! granules) it asks for a collection, and the next `atomically` call that starts outside any
//! transaction runs it before taking a segment. A transaction that finds the heap full restarts
//! once after a collection before reporting [`StmError::HeapExhausted`](crate::StmError).
//!
//! **Where no unrooted handle exists.** The collector owns *every* segment (it takes each from
//! the pool as the transactions running in them finish), so no transaction is running and no
//! `Gc` handle exists anywhere: handles cannot outlive their transaction. The only roots are
//! the [`Root`](crate::Root)s, counted in a registry by granule.
//!
//! **Steps.** (1) Bring every segment up to the newest commit and free the whole commit log, so
//! every segment holds the same committed heap. (2) Mark from the roots, following
//! [`Object::trace`](crate::Object::trace) of each object's type (the type is recorded in the
//! object's header at allocation). (3) Sweep the list of committed objects: unmarked ones are
//! freed. The chunk allocator's free list is then rebuilt as the complement of the live
//! objects, so freed objects, the unused rest of every segment's chunk and space left by
//! aborted attempts all become reusable: no space is ever lost.
//!
//! A registry entry that names no committed object (a root to an object whose transaction
//! rolled back) is ignored.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, RwLock};

use crate::heap::{Header, GRANULE, HEADER_SIZE};
use crate::owner::{self, BiasSlot, OWNED};
use crate::pool::Shared;
use crate::segment::SegmentLocal;
use crate::stats::{GcState, GcStats};

/// Bits of the header's flag word below the type index.
pub(crate) const TYPE_SHIFT: u32 = 8;

/// A type's trace function: reports to the tracer every handle stored in the object at the
/// pointer.
///
/// # Safety
/// The pointer points to a valid value of the type the function was registered for.
pub(crate) type TraceFn = unsafe fn(*const u8, &mut Tracer);

/// What the collector needs to know about an object type.
#[derive(Clone, Copy)]
struct TypeInfo {
    trace: TraceFn,
    #[allow(dead_code)] // for debugging and future reports
    name: &'static str,
}

/// Object types seen so far, by index; the index is stored in each object's header.
static TYPES: RwLock<Vec<TypeInfo>> = RwLock::new(Vec::new());
static INDEX: Mutex<Option<HashMap<TypeId, u32>>> = Mutex::new(None);

/// The index of the type `id` in the type table (its trace function `trace`, its `name`),
/// registering it if it is new.
#[cold]
pub(crate) fn register_type(id: TypeId, trace: TraceFn, name: &'static str) -> u32 {
    let mut index = INDEX.lock().unwrap_or_else(|e| e.into_inner());
    let index = index.get_or_insert_with(HashMap::new);
    if let Some(&i) = index.get(&id) {
        return i;
    }
    let mut types = TYPES.write().unwrap_or_else(|e| e.into_inner());
    let i = u32::try_from(types.len()).expect("fewer than 2^24 object types");
    assert!(i < 1 << (32 - TYPE_SHIFT), "too many object types");
    types.push(TypeInfo { trace, name });
    index.insert(id, i);
    i
}

/// Collects the handles an object holds (see [`Object::trace`](crate::Object::trace)).
#[derive(Default)]
pub struct Tracer {
    pub(crate) found: Vec<u32>,
}

impl Tracer {
    /// Reports a handle kept as a raw granule number (0: none).
    pub(crate) fn visit_granule(&mut self, granule: u32) {
        if granule != 0 {
            self.found.push(granule);
        }
    }
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("found", &self.found.len())
            .finish()
    }
}

/// A bitmap over the heap's granules.
struct Bits(Vec<u64>);

impl Bits {
    fn new(granules: usize) -> Bits {
        Bits(vec![0; granules.div_ceil(64)])
    }
    fn get(&self, g: u32) -> bool {
        let g = g as usize;
        self.0.get(g / 64).is_some_and(|w| w & (1 << (g % 64)) != 0)
    }
    fn set(&mut self, g: u32) {
        let g = g as usize;
        self.0[g / 64] |= 1 << (g % 64);
    }
}

impl Shared {
    /// Runs a collection now: waits until no transaction runs, then marks and sweeps.
    ///
    /// The caller must not be inside a transaction of this runtime (it would wait for itself).
    pub(crate) fn collect(&self) {
        let state = self.gc.lock().unwrap_or_else(|e| e.into_inner());
        self.collect_locked(state);
    }

    /// Runs a collection if allocation asked for one, unless one is running already (the
    /// caller will then wait for it when it takes a segment).
    #[inline]
    pub(crate) fn maybe_collect(&self) {
        if self.chunks.gc_wanted.load(Ordering::Relaxed) {
            if let Ok(state) = self.gc.try_lock() {
                self.collect_locked(state);
            }
        }
    }

    fn collect_locked(&self, mut state: std::sync::MutexGuard<'_, GcState>) {
        self.chunks.gc_wanted.store(false, Ordering::Relaxed);
        // (0) Own every segment. New transactions wait meanwhile (see `acquire_segment`).
        self.collecting.store(true, Ordering::Release);
        let mut biases = Vec::with_capacity(self.segments.len());
        // Owners give their bias up at release while someone wants segments.
        self.wanting.fetch_add(1, Ordering::SeqCst);
        for seg in self.segments.iter() {
            // A biased segment is revoked once its owner is not using it: owners that see
            // threads waiting give their bias up at release (`Shared::release_segment`).
            let mut bias = None;
            self.segment_free.wait_until(|| {
                bias = owner::try_take(&seg.state, seg.id(), OWNED);
                bias.is_some()
            });
            biases.push(bias.flatten());
        }
        self.wanting.fetch_sub(1, Ordering::SeqCst);
        // From here on every segment is ours; they go back to the pool when this guard drops,
        // also if the collection panics, so that the runtime never stays blocked.
        let _release = ReleaseAll(self, biases);
        let locals: Vec<&mut SegmentLocal> = self
            .segments
            .iter()
            // SAFETY: we own every segment (took each above, invariants 1 and 7)
            // until we release them below, and hold one `SegmentLocal` reference per segment.
            .map(|s| unsafe { &mut *s.local.get() })
            .collect();
        // (1) The committed objects.
        let granules = self.config.heap_size / GRANULE;
        let mut is_object = Bits::new(granules);
        for local in &locals {
            for &g in &local.committed_objects {
                is_object.set(g);
            }
        }
        // (2) Mark from the roots, reading the committed heap (or, with one segment, the
        // segment: it is the committed state).
        let view = CommittedView::of(self, locals[0]);
        let types = TYPES.read().unwrap_or_else(|e| e.into_inner());
        let mut marked = Bits::new(granules);
        let mut stack: Vec<u32> = self.root_granules();
        let mut tracer = Tracer::default();
        let (mut live_objects, mut live_granules) = (0u64, 0u64);
        while let Some(g) = stack.pop() {
            if !is_object.get(g) || marked.get(g) {
                continue;
            }
            marked.set(g);
            let hdr: *const Header = view.header(g);
            // SAFETY: `g` is a committed object (is_object), so its newest committed image,
            // header and value, is in the committed view (invariant 2); no commit or import
            // runs while we own every segment (invariant 7).
            let (flags, size) = unsafe { ((*hdr).flags, (*hdr).granules) };
            live_objects += 1;
            live_granules += u64::from(size);
            let info = types[(flags >> TYPE_SHIFT) as usize];
            // SAFETY: the type index was written by `alloc::<T>` with T's trace function, and
            // the value is a valid T (committed image, invariants 2 and 6).
            unsafe { (info.trace)(hdr.cast::<u8>().add(HEADER_SIZE), &mut tracer) };
            stack.append(&mut tracer.found);
        }
        drop(types);
        // (3) Sweep.
        let (mut freed_objects, mut freed_granules) = (0u64, 0u64);
        let mut live: Vec<(u32, u32)> = Vec::with_capacity(live_objects as usize);
        for local in locals {
            let mut kept = std::mem::take(&mut local.committed_objects);
            kept.retain(|&g| {
                // SAFETY: a committed object's header in the committed view, which nothing
                // writes while we own every segment (invariant 7).
                let size = unsafe { (*view.header(g)).granules };
                if marked.get(g) {
                    live.push((g, g + size));
                    true
                } else {
                    freed_objects += 1;
                    freed_granules += u64::from(size);
                    false
                }
            });
            local.committed_objects = kept;
            // The segment's unused chunk space (the rest of its current chunk, chunks kept
            // from aborted attempts) is free too: the free list is rebuilt from the live
            // objects alone, so no space is ever lost.
            local.bump = Default::default();
        }
        live.sort_unstable();
        self.chunks.rebuild_free(&live, live_granules as usize);
        state.stats = GcStats {
            collections: state.stats.collections + 1,
            live_objects,
            live_bytes: live_granules * GRANULE as u64,
            freed_objects,
            freed_bytes: freed_granules * GRANULE as u64,
        };
    }
}

/// Where the collector reads committed objects: the committed heap, or the one segment.
#[derive(Clone, Copy)]
struct CommittedView(*const u8);

impl CommittedView {
    fn of(shared: &Shared, first: &SegmentLocal) -> CommittedView {
        match &shared.heap {
            Some(heap) => CommittedView(heap.image(0).cast::<u8>().cast_const()),
            None => CommittedView(first.heap_base().cast_const()),
        }
    }

    fn header(self, granule: u32) -> *const Header {
        self.0.wrapping_add(granule as usize * GRANULE).cast()
    }
}

/// Gives every segment back (each as it was taken: through this thread's bias or not) and lets
/// transactions start again (end of a collection).
struct ReleaseAll<'a>(&'a Shared, Vec<Option<&'static BiasSlot>>);

impl Drop for ReleaseAll<'_> {
    fn drop(&mut self) {
        self.0.collecting.store(false, Ordering::Release);
        for (seg, &bias) in self.0.segments.iter().zip(self.1.iter()) {
            self.0.release_segment(seg, bias);
        }
    }
}
