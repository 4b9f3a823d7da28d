//! The runtime's shared state ([`Shared`]): the segments and the pool that hands them to
//! threads, the committed heap, the inevitable transaction's flag, the monitors threads wait
//! on, the root registry. Below the protocol (`commit.rs`), which works on one owned segment
//! and this state.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crossbeam_utils::CachePadded;

use crate::committed::CommittedHeap;
use crate::config::{Config, StmError};
use crate::heap::ChunkAllocator;
use crate::owner::{self, BiasSlot, OWNED};
use crate::report::{self, Recorder};
use crate::segment::Segment;
use crate::stats::{GcState, Stats};

/// A monitor: waiters count themselves so the notifying side can skip the lock when no one
/// waits.
#[derive(Default)]
pub(crate) struct Monitor {
    pub waiters: AtomicUsize,
    pub lock: Mutex<()>,
    pub cond: Condvar,
}

/// How long a waiter sleeps before it looks at its condition again, in case it missed a
/// wake-up sent with [`Monitor::notify_cheap`].
const POLL: std::time::Duration = std::time::Duration::from_micros(200);

impl Monitor {
    /// Wakes every waiter, if there is any. The caller has already made the condition true
    /// with a SeqCst store, so a waiter either sees it or is counted here: no wake-up is lost.
    pub(crate) fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
    }

    /// Like [`Monitor::notify`] for conditions published with a Release store only (no
    /// fence on the hot path): a waiter that raced with this call may miss it, and then sees
    /// the condition at its next poll, at most [`POLL`] later.
    #[inline]
    pub(crate) fn notify_cheap(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }

    /// Blocks until `ready()` holds: spins briefly, then sleeps until notified, looking at
    /// the condition again at least every [`POLL`].
    ///
    /// Once asleep, `ready` runs under the monitor's lock, and [`Monitor::notify`] takes that
    /// lock: no thread may notify while it holds a lock that `ready` takes, or the two
    /// deadlock.
    pub(crate) fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if ready() {
                return;
            }
            backoff.snooze();
        }
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while !ready() {
            g = self
                .cond
                .wait_timeout(g, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One shard of the root registry: how many `Root`s name each granule.
pub(crate) type RootShard = Mutex<HashMap<u32, u32>>;

/// Everything the threads of one runtime share. Aligned to two cache lines so that the
/// reference counts of the `Arc` around it (which every `Root` clones) do not share a line
/// with the fields every transaction reads.
#[repr(align(128))]
pub(crate) struct Shared {
    pub config: Config,
    pub segments: Box<[Segment]>,
    pub chunks: ChunkAllocator,
    /// The committed heap (`committed.rs`): absent in GIL mode and with one segment, where
    /// the one segment is the whole committed state and no other segment ever imports.
    pub heap: Option<CommittedHeap>,
    /// The inevitable transaction's segment index + 1, or 0 if none runs. Read by every
    /// committer, written only when a transaction becomes or stops being inevitable.
    pub inevitable: CachePadded<AtomicU64>,
    /// The serial order counter (`Config::serial_order` only).
    pub order: CachePadded<AtomicU64>,
    /// Commits so far, in GIL mode only; `retry` waits on it.
    pub gil_commits: AtomicU64,
    /// Threads waiting for a free segment.
    pub segment_free: Monitor,
    /// Threads in `acquire_segment_slow` (looking for a segment, spinning or asleep): while
    /// there are any, releases give their bias up and leave segments `FREE`.
    pub wanting: CachePadded<AtomicUsize>,
    /// Threads waiting for the inevitable transaction to end.
    pub inevitable_done: Monitor,
    /// Threads waiting in `retry` for a commit.
    pub committed: Monitor,
    /// Conflict reports.
    pub recorder: Recorder,
    /// Roots: how many `Root`s name each granule, in one shard per segment (a root is
    /// counted in the shard of the segment whose transaction made it), so that threads
    /// making and dropping roots do not share a lock.
    pub roots: Box<[CachePadded<RootShard>]>,
    /// The collector (one collection at a time) and its statistics.
    pub gc: Mutex<GcState>,
    /// A collection is taking the segments: transactions wait to start.
    pub collecting: AtomicBool,
    /// This runtime's number, unique in the process for its whole life (never reused, unlike
    /// the runtime's address): what a thread's [`PREFERRED`] segment is keyed by.
    pub id: u64,
}

/// The next runtime's [`Shared::id`]. Ids start at 1: a thread's [`PREFERRED`] starts at 0,
/// which names no runtime. 64 bits do not wrap in a process's life.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Shared {
    pub(crate) fn new(mut config: Config) -> Result<Shared, StmError> {
        config.validate()?;
        // Biased segment ownership needs `membarrier`; its registration runs meanwhile.
        crate::sys::start_heavy_fence_registration();
        if cfg!(feature = "gil") {
            config.segments = 1;
        }
        let mut segments = (0..config.segments)
            .map(|i| Segment::new(i as u32, &config))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StmError::Map)?
            .into_boxed_slice();
        let heap = if cfg!(feature = "gil") || config.segments == 1 {
            None
        } else {
            Some(CommittedHeap::new(config.heap_size).map_err(StmError::Map)?)
        };
        for seg in segments.iter_mut() {
            seg.local.get_mut().view.imports = heap.is_some();
        }
        let recorder = Recorder::new(config.conflict_reports || report::env_enabled());
        let roots = (0..config.segments)
            .map(|_| CachePadded::new(Mutex::new(HashMap::new())))
            .collect();
        let mut chunks = ChunkAllocator::new(config.heap_size);
        if let Some(heap) = &heap {
            // The committed heap's arrays, which every segment's reads and commits use. (A
            // segment's own markers and copy versions are faulted in by the segment, for the
            // parts of the heap it reads: `View::fault_in`.)
            chunks.set_prefault(heap.side_arrays());
        }
        Ok(Shared {
            chunks,
            config,
            segments,
            heap,
            inevitable: CachePadded::new(AtomicU64::new(0)),
            order: CachePadded::new(AtomicU64::new(0)),
            gil_commits: AtomicU64::new(0),
            segment_free: Monitor::default(),
            wanting: CachePadded::new(AtomicUsize::new(0)),
            inevitable_done: Monitor::default(),
            committed: Monitor::default(),
            recorder,
            roots,
            gc: Mutex::new(GcState::default()),
            collecting: AtomicBool::new(false),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Takes a segment for the calling thread, preferring the one it used last; waits while
    /// every segment is busy. Give it back with [`Shared::release_segment`], passing the
    /// bias slot returned here (the segment was taken through its bias if there is one).
    #[inline]
    pub(crate) fn acquire_segment(&self) -> (&Segment, Option<&'static BiasSlot>) {
        let (id, seg) = PREFERRED.with(Cell::get);
        if id == self.id {
            // SAFETY: ids are never reused (`NEXT_ID`), so `seg` was stored by
            // `acquire_segment_slow` of this very runtime: it points into `self.segments`, a
            // boxed slice that lives (unmoved) as long as `self`.
            let seg = unsafe { &*seg };
            // The common case: the segment of last time is biased to this thread, which
            // takes it with plain stores (`owner.rs`). A collection revokes biases, so
            // this needs no look at `collecting`.
            if let Some(slot) = owner::my_slot() {
                if owner::take_biased(&seg.state, seg.id(), slot) {
                    return (seg, Some(slot));
                }
            }
            // Else the same segment by compare-and-swap, unless a collection waits for
            // the segments (see `acquire_segment_slow`). Acquire: see everything the
            // previous owner (or the collector) did to it.
            if !self.collecting.load(Ordering::Acquire)
                && seg
                    .state
                    .compare_exchange(owner::FREE, OWNED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return (seg, None);
            }
            return self.acquire_segment_slow(seg.index as usize);
        }
        self.acquire_segment_slow(0)
    }

    /// Takes the first free segment from `preferred` on (revoking the bias of an idle one),
    /// waiting for one if none is free.
    #[cold]
    #[inline(never)]
    fn acquire_segment_slow(&self, preferred: usize) -> (&Segment, Option<&'static BiasSlot>) {
        let n = self.segments.len();
        let try_take = |i: usize| {
            let seg = &self.segments[i];
            owner::try_take(&seg.state, seg.id(), OWNED).map(|bias| (seg, bias))
        };
        // While a collection is waiting for the segments, take none: otherwise threads that
        // start transaction after transaction could keep the collector waiting forever.
        // While we look, owners of biased segments give their bias up at release, so that we
        // compete for a FREE segment as if nothing were biased.
        self.wanting.fetch_add(1, Ordering::SeqCst);
        let scan = || {
            if self.collecting.load(Ordering::Acquire) {
                return None;
            }
            (0..n).map(|k| (preferred + k) % n).find_map(try_take)
        };
        let seg = match scan() {
            Some(s) => s,
            None => {
                let mut found = None;
                self.segment_free.wait_until(|| {
                    found = scan();
                    found.is_some()
                });
                found.expect("wait_until returns once a segment was taken")
            }
        };
        self.wanting.fetch_sub(1, Ordering::SeqCst);
        PREFERRED.with(|p| p.set((self.id, std::ptr::from_ref(seg.0))));
        seg
    }

    /// Gives a segment back. A segment this thread took by compare-and-swap and has used
    /// [`BIAS_AFTER`](owner::BIAS_AFTER) times in a row is left biased to it; a biased one is
    /// given back with a plain store, and its bias given up if threads wait for a segment.
    #[inline(always)]
    pub(crate) fn release_segment(&self, seg: &Segment, bias: Option<&'static BiasSlot>) {
        if let Some(slot) = bias {
            if self.wanting.load(Ordering::Relaxed) == 0 {
                // The common case: a plain store into our own slot.
                owner::release_biased(&seg.state, slot, false);
            } else {
                self.release_biased_to_waiters(seg, slot);
            }
            return;
        }
        self.release_owned(seg);
    }

    /// [`Shared::release_segment`] of a biased segment while threads wait for one: the bias
    /// is given up, and they are woken.
    #[cold]
    #[inline(never)]
    fn release_biased_to_waiters(&self, seg: &Segment, slot: &'static BiasSlot) {
        owner::release_biased(&seg.state, slot, true);
        self.segment_free.notify();
    }

    /// [`Shared::release_segment`] of a segment taken by compare-and-swap.
    #[inline(never)]
    fn release_owned(&self, seg: &Segment) {
        let next = match owner::my_slot_or_new() {
            Some(slot) => {
                let me = owner::bias_of(slot);
                // SAFETY: we hold the segment by compare-and-swap (state OWNED, invariant 1)
                // and no other reference to its local state exists.
                let streak = unsafe { &mut (*seg.local.get()).streak };
                *streak = if streak.0 == me {
                    (me, streak.1.saturating_add(1))
                } else {
                    (me, 1)
                };
                if owner::should_bias(streak.1) && self.wanting.load(Ordering::Relaxed) == 0 {
                    me
                } else {
                    owner::FREE
                }
            }
            None => owner::FREE,
        };
        // Release: our accesses to the segment happen before the next owner's Acquire.
        seg.state.store(next, Ordering::Release);
        self.segment_free.notify_cheap();
    }

    /// A count that grows with every writing commit (what `retry` waits on). Each segment
    /// counts its own, once before publishing a commit's images and once after: so a
    /// reader that sees an object unchanged after reading this count will see the count grow
    /// once a commit changes the object (Acquire loads in order, Release stores in order).
    pub(crate) fn commit_count(&self) -> u64 {
        if cfg!(feature = "gil") {
            self.gil_commits.load(Ordering::Acquire)
        } else {
            self.segments
                .iter()
                .map(|s| s.commits.load(Ordering::Acquire))
                .sum()
        }
    }

    /// Counts one more `Root` naming `granule` (the collector's roots), in shard `shard`
    /// (taken modulo the number of shards).
    pub(crate) fn add_root(&self, shard: u32, granule: u32) {
        let mut roots = self.root_shard(shard);
        *roots.entry(granule).or_insert(0) += 1;
    }

    /// Counts one `Root` naming `granule` less, in the shard it was counted in.
    pub(crate) fn remove_root(&self, shard: u32, granule: u32) {
        let mut roots = self.root_shard(shard);
        if let Some(n) = roots.get_mut(&granule) {
            *n -= 1;
            if *n == 0 {
                roots.remove(&granule);
            }
        }
    }

    fn root_shard(&self, shard: u32) -> std::sync::MutexGuard<'_, HashMap<u32, u32>> {
        self.roots[shard as usize % self.roots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every granule some `Root` names.
    pub(crate) fn root_granules(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for shard in self.roots.iter() {
            let roots = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(roots.keys().copied());
        }
        all
    }

    /// Sums the counters of every segment.
    pub(crate) fn stats(&self) -> Stats {
        self.segments
            .iter()
            .map(|s| s.stats.snapshot())
            .fold(Stats::default(), |a, b| a + b)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if report::env_enabled() {
            let r = self.recorder.report();
            if !r.sites.is_empty() {
                eprint!("{r}");
            }
        }
    }
}

thread_local! {
    /// The segment this thread used last, and its runtime's [`Shared::id`] (0: none yet).
    static PREFERRED: Cell<(u64, *const Segment)> = const { Cell::new((0, std::ptr::null())) };
}
