//! The runtime object ([`Stm`]), its shared state, and the segment pool.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::config::{Config, StmError};
use crate::gc::{GcState, GcStats};
use crate::heap::ChunkAllocator;
use crate::log::{self, Entry};
use crate::report::{self, Recorder};
use crate::segment::{Segment, FREE, OWNED};
use crate::stats::Stats;
use crate::sys::HeapFile;
use std::collections::HashMap;

/// A shared heap and the transactions that run on it.
///
/// `Stm` is a cheap handle (an `Arc`): clone it to give it to threads. Objects live as long
/// as the runtime, and the runtime lives as long as any `Stm` clone or
/// [`Root`](crate::Root) refers to it.
///
/// ```
/// use stm_runtime::Stm;
///
/// let stm = Stm::builder().segments(2).heap_size(16 << 20).build().unwrap();
/// let counter = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
/// stm.atomically(|tx| {
///     let c = counter.get(tx);
///     c.set(c.get() + 1);
/// });
/// assert_eq!(stm.atomically(|tx| counter.get(tx).get()), 1);
/// ```
#[derive(Clone)]
pub struct Stm {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Stm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stm")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builds a runtime with chosen settings. See [`Config`] for each setting and its default.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// How many transactions may run at the same moment (default: the number of CPUs).
    pub fn segments(mut self, n: usize) -> Self {
        self.config.segments = n;
        self
    }

    /// The heap size in bytes (default 256 MiB of virtual memory per segment).
    pub fn heap_size(mut self, bytes: usize) -> Self {
        self.config.heap_size = bytes;
        self
    }

    /// Records every conflict for [`Stm::conflict_report`] (default: off, unless the
    /// environment variable `STM_CONFLICT_REPORT=1` is set).
    pub fn conflict_reports(mut self, on: bool) -> Self {
        self.config.conflict_reports = on;
        self
    }

    /// Testing aid: makes write barriers' slow paths, allocations and commits abort at random
    /// with this probability, so that rollback paths run often (default 0).
    pub fn inject_faults(mut self, probability: f64) -> Self {
        self.config.fault_rate = probability;
        self
    }

    /// After this many aborts in a row a transaction runs inevitable (default 8).
    pub fn inevitable_after(mut self, aborts: u32) -> Self {
        self.config.inevitable_after = aborts;
        self
    }

    /// Creates the runtime: the heap image, one mapping per segment, the commit log.
    pub fn build(self) -> Result<Stm, StmError> {
        Shared::new(self.config).map(|s| Stm {
            shared: Arc::new(s),
        })
    }

    /// Creates the runtime and makes it the process-wide one, [`Stm::global`] (which
    /// `#[transactional]` and `#[in_transactions]` functions use): call it at the start of
    /// `main`, before anything uses the global runtime.
    ///
    /// # Errors
    /// [`StmError::Config`] if the global runtime exists already (it is created on first
    /// use), or any error of [`Builder::build`].
    pub fn build_global(self) -> Result<&'static Stm, StmError> {
        let stm = self.build()?;
        let mut fresh = false;
        let global = GLOBAL.get_or_init(|| {
            fresh = true;
            stm
        });
        if fresh {
            report_at_exit();
            Ok(global)
        } else {
            Err(StmError::Config(
                "the global runtime exists already: call `build_global` before anything uses \
                 `Stm::global()`"
                    .into(),
            ))
        }
    }
}

/// The process-wide runtime (see [`Stm::global`]).
static GLOBAL: OnceLock<Stm> = OnceLock::new();

/// With `STM_CONFLICT_REPORT` set, prints the global runtime's report when the process exits
/// (it is never dropped, and `std::process::exit` runs no destructors); registered once.
fn report_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if report::env_enabled() {
        ONCE.call_once(|| crate::sys::at_exit(print_global_report));
    }
}

extern "C" fn print_global_report() {
    // Never unwind out of an `extern "C"` exit handler.
    let _ = std::panic::catch_unwind(|| {
        if let Some(stm) = GLOBAL.get() {
            let r = stm.conflict_report();
            if !r.sites.is_empty() {
                eprint!("{r}");
            }
        }
    });
}

/// The log's oldest entry still allocated, behind the trimming lock.
pub(crate) struct LogHead(pub *mut Entry);
// SAFETY: (invariant 17) the pointer is only dereferenced by the thread holding the Mutex
// around it, and the
// entries it points to are runtime-owned heap allocations, not tied to any thread.
unsafe impl Send for LogHead {}

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

/// Everything the threads of one runtime share.
pub(crate) struct Shared {
    pub config: Config,
    pub segments: Box<[Segment]>,
    pub chunks: ChunkAllocator,
    /// Oldest log entry still allocated; the lock is the trimming lock.
    pub log_head: Mutex<LogHead>,
    /// Commits so far, in GIL mode only (where there is no log); `retry` waits on it.
    pub gil_commits: AtomicU64,
    /// Log entries freed by the trimmer, for reuse by committers (bounded).
    #[allow(clippy::vec_box)] // entries are linked by address: they must stay boxed
    pub entry_pool: Mutex<Vec<Box<Entry>>>,
    /// Threads waiting for a free segment.
    pub segment_free: Monitor,
    /// Threads waiting for the inevitable transaction to end.
    pub inevitable_done: Monitor,
    /// Threads waiting in `retry` for a commit.
    pub committed: Monitor,
    /// Conflict reports.
    pub recorder: Recorder,
    /// Roots: how many `Root`s name each granule.
    pub roots: Mutex<HashMap<u32, u32>>,
    /// The collector (one collection at a time) and its statistics.
    pub gc: Mutex<GcState>,
    /// A collection is taking the segments: transactions wait to start.
    pub collecting: AtomicBool,
    /// Keeps the heap image alive as long as its mappings.
    _image: HeapFile,
}

impl Shared {
    fn new(mut config: Config) -> Result<Shared, StmError> {
        config.validate()?;
        if cfg!(feature = "gil") {
            config.segments = 1;
        }
        let image = HeapFile::create(config.heap_size).map_err(StmError::Map)?;
        let first = Entry::initial();
        let segments = (0..config.segments)
            .map(|i| Segment::new(i as u32, &image, &config, first))
            .collect::<Result<Vec<_>, _>>();
        let segments = match segments {
            Ok(s) => s.into_boxed_slice(),
            Err(e) => {
                // SAFETY: `first` came from Box::into_raw and nothing else refers to it now.
                drop(unsafe { Box::from_raw(first) });
                return Err(StmError::Map(e));
            }
        };
        let recorder = Recorder::new(config.conflict_reports || report::env_enabled());
        Ok(Shared {
            chunks: ChunkAllocator::new(config.heap_size),
            config,
            segments,
            log_head: Mutex::new(LogHead(first)),
            gil_commits: AtomicU64::new(0),
            entry_pool: Mutex::new(Vec::new()),
            segment_free: Monitor::default(),
            inevitable_done: Monitor::default(),
            committed: Monitor::default(),
            recorder,
            roots: Mutex::new(HashMap::new()),
            gc: Mutex::new(GcState::default()),
            collecting: AtomicBool::new(false),
            _image: image,
        })
    }

    /// Takes a segment for the calling thread, preferring the one it used last; waits while
    /// every segment is busy.
    #[inline]
    pub(crate) fn acquire_segment(&self) -> &Segment {
        let key = self as *const Shared as usize;
        let (k, i) = PREFERRED.with(Cell::get);
        // The common case: this thread's segment of last time is free, and no collection
        // waits for the segments (see `acquire_segment_slow`).
        if k == key && !self.collecting.load(Ordering::Acquire) {
            if let Some(seg) = self.segments.get(i) {
                // Acquire: see everything the previous owner (or the trimmer) did to it.
                if seg
                    .state
                    .compare_exchange(FREE, OWNED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return seg;
                }
            }
        }
        self.acquire_segment_slow(if k == key { i } else { 0 })
    }

    /// Takes the first free segment from `preferred` on, waiting for one if none is free.
    #[cold]
    #[inline(never)]
    fn acquire_segment_slow(&self, preferred: usize) -> &Segment {
        let n = self.segments.len();
        let key = self as *const Shared as usize;
        let try_take = |i: usize| {
            let seg = &self.segments[i];
            // Acquire: see everything the previous owner (or the trimmer) did to the segment.
            seg.state
                .compare_exchange(FREE, OWNED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
                .then_some(seg)
        };
        // While a collection is waiting for the segments, take none: otherwise threads that
        // start transaction after transaction could keep the collector waiting forever.
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
        PREFERRED.with(|p| p.set((key, seg.index as usize)));
        seg
    }

    /// Gives a segment back.
    #[inline]
    pub(crate) fn release_segment(&self, seg: &Segment) {
        // Release: our accesses to the segment happen before the next owner's Acquire CAS.
        seg.state.store(FREE, Ordering::Release);
        self.segment_free.notify_cheap();
    }

    /// The newest committed revision any segment has applied (what `retry` waits on).
    pub(crate) fn newest_rev(&self) -> u64 {
        if cfg!(feature = "gil") {
            self.gil_commits.load(Ordering::Acquire)
        } else {
            // A committer stores its entry's revision into its own segment's applied_rev.
            self.segments
                .iter()
                .map(|s| s.applied_rev.load(Ordering::Acquire))
                .max()
                .unwrap_or(0)
        }
    }

    /// Counts one more `Root` naming `granule` (the collector's roots).
    pub(crate) fn add_root(&self, granule: u32) {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        *roots.entry(granule).or_insert(0) += 1;
    }

    /// Counts one `Root` naming `granule` less.
    pub(crate) fn remove_root(&self, granule: u32) {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = roots.get_mut(&granule) {
            *n -= 1;
            if *n == 0 {
                roots.remove(&granule);
            }
        }
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
        let head = self.log_head.get_mut().unwrap_or_else(|e| e.into_inner());
        // Pooled entries are plain boxes: dropping the pool frees them.
        // SAFETY: (invariant 17) we are the last owner of the runtime: no segment is in use and no
        // thread can
        // reach the log any more; every entry from the head on is ours to free.
        unsafe { log::free_all(head.0) };
    }
}

thread_local! {
    /// The segment this thread used last, per runtime (keyed by the runtime's address).
    static PREFERRED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

impl Stm {
    /// A runtime with the default [`Config`].
    pub fn new() -> Result<Stm, StmError> {
        Builder::default().build()
    }

    /// A builder to choose the number of segments, the heap size and the progress policy.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide runtime, created on first use with the default configuration
    /// (overridable by the environment variables `STM_SEGMENTS` and `STM_HEAP_MB`), unless
    /// [`Builder::build_global`] created it first.
    ///
    /// # Panics
    /// If the runtime cannot be created (bad environment values, or the OS refused the
    /// mapping); the message says why.
    pub fn global() -> &'static Stm {
        if let Some(stm) = GLOBAL.get() {
            return stm;
        }
        let stm = GLOBAL.get_or_init(|| {
            let mut b = Stm::builder();
            if let Some(n) = env_number("STM_SEGMENTS") {
                b = b.segments(n);
            }
            if let Some(mb) = env_number("STM_HEAP_MB") {
                b = b.heap_size(mb.saturating_mul(1 << 20));
            }
            b.build()
                .unwrap_or_else(|e| panic!("cannot create the global STM runtime: {e}"))
        });
        report_at_exit();
        stm
    }

    /// The configuration this runtime runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Counters summed over every segment: commits, aborts by cause, inevitable transactions.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Collects garbage now: waits until no transaction of this runtime runs, frees every
    /// object no [`Root`](crate::Root) reaches, and frees the commit log. Collections also run
    /// by themselves as the heap fills.
    ///
    /// # Panics
    /// If called inside a transaction (of any runtime): it would wait for that transaction to
    /// end.
    #[track_caller]
    pub fn collect(&self) -> GcStats {
        crate::tx::refuse_inside_transaction("Stm::collect");
        self.shared.collect();
        self.gc_stats()
    }

    /// What the collections so far found (live and freed sizes of the last one).
    pub fn gc_stats(&self) -> GcStats {
        self.shared
            .gc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
    }

    /// Whether `self` and `other` are the same runtime.
    pub fn same_runtime(&self, other: &Stm) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

fn env_number(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("environment variable {name}={v:?} is not a number"),
    }
}
