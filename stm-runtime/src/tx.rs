//! Transactions: the [`Tx`] context, and `atomically` with its abort-and-retry loop.
//!
//! A transaction attempt runs the user's closure on the thread's segment. Conflicts are
//! found when the attempt validates: at commit, when it becomes inevitable, and when its
//! first read of an object imports a newer committed image (the barriers' slow path, never
//! their fast path). An abort that must happen in the middle of user code unwinds with a private payload
//! ([`AbortSignal`], raised with `resume_unwind`, so the panic hook stays quiet) that
//! `atomically` catches; then the attempt is rolled back and run again.

use std::cell::Cell;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use crate::commit::{self, STM};
use crate::config::StmError;
use crate::handle::{Gc, Object, Root};
use crate::heap::{granules_for, Header, FLAG_NEW, GRANULE, HEADER_SIZE};
use crate::pool::Shared;
use crate::report::{ConflictKind, ConflictReport, ConflictSite, Site, WriteSite};
use crate::runtime::Stm;
use crate::segment::{Conflict, Segment, SegmentLocal};
use crate::stats::Counter;
use std::panic::Location;

/// The running transaction. Handles ([`Gc`]) borrow it; it is neither `Send` nor `Sync`.
///
/// You get a `&Tx` from [`Stm::atomically`] (or [`Stm::try_atomically`]).
pub struct Tx {
    /// Base of this segment's heap mapping.
    pub(crate) heap: Ptr<u8>,
    /// Base of this segment's read markers.
    pub(crate) markers: Ptr<u16>,
    /// Marker value of this attempt.
    pub(crate) version: u16,
    /// Whether the runtime has a committed heap, so that this segment's images may be old
    /// and the barriers must test the read markers. With one segment (no committed heap)
    /// the segment is the committed state: every image is current, nothing is imported or
    /// validated, and the read barrier has nothing to do.
    pub(crate) imports: bool,
    pub(crate) seg: Ptr<Segment>,
    /// The runtime (the `Stm`'s Arc, for cloning it).
    pub(crate) shared: Ptr<Arc<Shared>>,
    /// The runtime's shared state itself (one load less on hot paths).
    pub(crate) shared_raw: Ptr<Shared>,
    /// The one reason `Tx` is neither `Send` nor `Sync` (and so `&Tx` and every `Gc` cannot
    /// go to another thread): rustc names it in the error, which then says what to do.
    pub(crate) _thread_bound: PhantomData<SendARootNotAHandle>,
}

/// The type rustc names when a `Gc` handle or a `&Tx` is sent to another thread (a spawned
/// thread, a queue task): a handle belongs to one transaction on one thread. Send a
/// [`Root<T>`](crate::Root) instead (`tx.root(handle)`), and `root.get(tx)` over there.
pub struct SendARootNotAHandle(PhantomData<*mut ()>);

/// A raw pointer field of [`Tx`]. `Send + Sync` only so that `Tx`'s own marker
/// ([`SendARootNotAHandle`]) is the one reason `Tx` is not: the assertion below keeps it so.
#[derive(Clone, Copy)]
pub(crate) struct Ptr<T>(pub(crate) *mut T);
// SAFETY: only ever a field of `Tx`, which stays neither `Send` nor `Sync` through its marker
// (checked at compile time just below); the pointers are used by the owning thread only
// (invariant 1).
unsafe impl<T> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Ptr<T> {}

// `Tx` must stay `!Sync` (so `&Tx` and every handle stay on their thread) and `!Send`: this
// fails to compile if it ever became either (each trait is implemented twice for such a type,
// so the item below would be ambiguous).
const _: () = {
    trait AmbiguousIfSendOrSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSendOrSync<()> for T {}
    #[allow(dead_code)]
    struct IfSync;
    impl<T: ?Sized + Sync> AmbiguousIfSendOrSync<IfSync> for T {}
    #[allow(dead_code)]
    struct IfSend;
    impl<T: ?Sized + Send> AmbiguousIfSendOrSync<IfSend> for T {}
    let _ = <Tx as AmbiguousIfSendOrSync<_>>::check;
};

pub(crate) use crate::commit::AbortSignal;

thread_local! {
    /// The innermost transaction running on this thread, for joining nested calls.
    static CURRENT: Cell<*const Tx> = const { Cell::new(ptr::null()) };
    /// Steps the next attempt of this thread's series may do: set when a step needed to
    /// become inevitable after others in the same transaction (0: no such request).
    static CUT_BEFORE: Cell<u32> = const { Cell::new(0) };
}

/// Asks the next attempt of the running series to commit after `steps` steps: the step that
/// follows them becomes inevitable at the start of the next transaction.
fn cut_before(steps: u32) {
    CUT_BEFORE.with(|c| c.set(steps));
}

/// The step limit [`cut_before`] asked the next attempt of the series for (0: none), once.
pub(crate) fn take_cut_before() -> u32 {
    CUT_BEFORE.with(|c| c.replace(0))
}

/// Restores the previous `CURRENT` when a transaction attempt ends (even by unwinding).
struct CurrentGuard(*const Tx);
impl Drop for CurrentGuard {
    #[inline(always)]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// While conflict reports are on: adds the thread CPU time of one outermost `atomically`
/// call (every attempt, waits included) to the report's total, however the call ends.
struct CpuTiming<'a> {
    shared: &'a Arc<Shared>,
    start: std::time::Duration,
}
impl<'a> CpuTiming<'a> {
    #[cold]
    #[inline(never)]
    fn start(shared: &'a Arc<Shared>) -> Self {
        CpuTiming {
            shared,
            start: crate::sys::thread_cpu_time(),
        }
    }
}

impl Drop for CpuTiming<'_> {
    fn drop(&mut self) {
        let now = crate::sys::thread_cpu_time();
        self.shared
            .recorder
            .add_transaction_time(now.saturating_sub(self.start));
    }
}

/// Owns a segment for one `atomically` call; gives it back when dropped (even by unwinding).
struct SegmentGuard<'a> {
    shared: &'a Arc<Shared>,
    seg: &'a Segment,
    /// The bias slot the segment was taken through, if it was.
    bias: Option<&'static crate::owner::BiasSlot>,
}
impl Drop for SegmentGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.shared.release_segment(self.seg, self.bias);
    }
}

impl Tx {
    /// The transaction of the attempt starting in `seg` (owned by the caller) of `shared`.
    pub(crate) fn new(local: &SegmentLocal, seg: &Segment, shared: &Arc<Shared>) -> Tx {
        Tx {
            heap: Ptr(local.heap_base()),
            markers: Ptr(local.markers_base()),
            version: local.view.version,
            imports: local.view.imports,
            seg: Ptr(std::ptr::from_ref(seg).cast_mut()),
            shared: Ptr(std::ptr::from_ref(shared).cast_mut()),
            shared_raw: Ptr(Arc::as_ptr(shared).cast_mut()),
            _thread_bound: PhantomData,
        }
    }

    /// The segment state. Only the thread running this transaction calls it, and never
    /// while another reference from it is alive (runtime functions do not nest).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn local(&self) -> &mut SegmentLocal {
        // SAFETY: this thread owns the segment for the whole transaction (SegmentGuard), Tx is
        // !Send/!Sync, and each runtime entry point takes this reference only for its own
        // duration without calling back into user code, so no two are alive at once
        // (invariant 1).
        unsafe { &mut *(*self.seg.0).local.get() }
    }

    pub(crate) fn segment(&self) -> &Segment {
        // SAFETY: the segment lives as long as the runtime, which outlives the transaction
        // (invariant 18).
        unsafe { &*self.seg.0 }
    }

    pub(crate) fn shared_arc(&self) -> &Arc<Shared> {
        // SAFETY: points to the `Stm`'s Arc, borrowed for the whole `atomically` call
        // (invariant 18).
        unsafe { &*self.shared.0 }
    }

    /// The runtime's shared state.
    #[inline]
    pub(crate) fn shared(&self) -> &Shared {
        // SAFETY: the Arc that owns it is borrowed for the whole `atomically` call (invariant 18).
        unsafe { &*self.shared_raw.0 }
    }

    /// Allocates `value` in the shared heap. The new object needs no barriers in this
    /// transaction and becomes visible to others when it commits.
    ///
    /// # Panics
    /// If the heap is full ([`StmError::HeapExhausted`]); the transaction then rolls back and
    /// the panic reaches the caller of `atomically`. Use [`Tx::try_alloc`] to handle it.
    #[inline]
    #[track_caller]
    pub fn alloc<T: Object>(&self, value: T) -> Gc<'_, T> {
        match self.try_alloc(value) {
            Ok(gc) => gc,
            Err(e) => panic!("{e}"),
        }
    }

    /// Allocates `value` in the shared heap, or says the heap is full.
    #[inline]
    #[track_caller]
    pub fn try_alloc<T: Object>(&self, value: T) -> Result<Gc<'_, T>, StmError> {
        const {
            assert!(
                std::mem::align_of::<T>() <= 8,
                "shared objects are aligned to at most 8 bytes"
            )
        };
        let granules = const { granules_for(std::mem::size_of::<T>()) };
        let shared = self.shared();
        let local = self.local();
        if local.inject_fault() {
            self.abort_with(AbortSignal::Conflict(Conflict::injected()));
        }
        let granule =
            match local
                .bump
                .alloc(granules as u32, &shared.chunks, shared.config.heap_size)
            {
                Ok(g) => g,
                Err(e) => {
                    if local.may_collect && !local.fp.inevitable {
                        // Run the collector (outside this transaction) and try again once.
                        local.may_collect = false;
                        self.abort_with(AbortSignal::Collect);
                    }
                    return Err(e);
                }
            };
        let type_index = crate::handle::type_index::<T>();
        local.fp.allocated.push(granule);
        if local.report.on {
            local.report.alloc_sites.push(WriteSite {
                site: Site::caller(),
                type_name: std::any::type_name::<T>(),
            });
        }
        let hdr = local.header(granule);
        // SAFETY: the allocator gave this attempt `granules` fresh granules of the heap
        // (invariants 3 and 16), inside our own segment's mapping (invariant 1); nobody else
        // uses them until we commit.
        unsafe {
            hdr.write(Header {
                flags: FLAG_NEW | (type_index << crate::gc::TYPE_SHIFT),
                granules: granules as u32,
            });
            hdr.cast::<u8>().add(HEADER_SIZE).cast::<T>().write(value);
            // The attempt's mark: reads and writes of its own new object take the fast paths
            // (nothing to import, nothing to validate).
            if local.view.imports {
                *local.marker(granule) = local.view.version;
            }
        }
        debug_assert!(granules * GRANULE >= HEADER_SIZE + std::mem::size_of::<T>());
        Ok(Gc::new(self, granule))
    }

    /// The runtime this transaction runs on.
    pub fn stm(&self) -> Stm {
        Stm {
            shared: self.shared_arc().clone(),
        }
    }

    /// Keeps `gc`'s object alive beyond this transaction. `gc` must be a handle of this
    /// transaction (the shared lifetime `'tx` makes that a compile-time check).
    #[track_caller]
    pub fn root<'tx, T: Object>(&'tx self, gc: Gc<'tx, T>) -> Root<T> {
        assert!(
            std::ptr::eq(gc.tx, self),
            "Tx::root: the handle belongs to another transaction"
        );
        Root::new(self, gc)
    }

    /// Makes this transaction inevitable: from now on it cannot abort, so it may perform
    /// irreversible effects (I/O). At most one transaction is inevitable at a time; others keep
    /// running, and wait only when they try to commit or to become inevitable themselves.
    ///
    /// Becoming inevitable first validates: if another transaction committed a change to
    /// something this one read, this attempt aborts here and runs again.
    ///
    /// With conflict reports on, the report counts the transactions that became inevitable at
    /// each call site (`ConflictKind::BecameInevitable`).
    ///
    /// In a destructor that runs while the runtime unwinds an attempt that has lost already
    /// (a conflict, `retry`, a restart), nothing can make that attempt inevitable: the call
    /// returns without doing so (a second unwind would abort the process), and the
    /// destructor's effects happen again when the attempt that runs next ends, as those of
    /// every destructor in the closure do. (`#[transactional]` code calls this before the I/O
    /// it recognizes, so a logging guard there logs once per attempt.)
    #[track_caller]
    pub fn become_inevitable(&self) {
        if self.unwinding_lost_attempt() {
            return;
        }
        let local = self.local();
        if local.in_series() && !local.fp.inevitable {
            let done = local.series.budget - local.series.left;
            if done > 0 {
                // A break point before the I/O: run the series' earlier steps again as a
                // transaction of their own, and this step in the next one.
                cut_before(done);
                self.restart();
            }
        }
        let was = self.local().user_inevitable;
        self.make_inevitable();
        // From here on the code may have done something irreversible: no more retry.
        let local = self.local();
        local.user_inevitable = true;
        if local.report.on && !was {
            let between_breaks = local.in_series();
            self.shared().recorder.record(ConflictSite {
                kind: ConflictKind::BecameInevitable,
                object_type: None,
                this_side: Some(Site::caller()),
                other_side: None,
                count: 1,
                time_lost: std::time::Duration::ZERO,
                between_breaks,
            });
        }
    }

    /// Whether this thread is unwinding out of an attempt that cannot commit (the runtime
    /// doomed it: a conflict, a retry, a restart): code running now is a destructor of the
    /// closure's values.
    fn unwinding_lost_attempt(&self) -> bool {
        self.local().doomed.is_some() && std::thread::panicking()
    }

    fn make_inevitable(&self) {
        let local = self.local();
        if local.fp.inevitable {
            return;
        }
        if let Some(c) = local.doomed.clone() {
            // The attempt cannot commit (its code swallowed an abort): it must not become
            // inevitable and do irreversible things before running again.
            self.abort_with(AbortSignal::Conflict(c));
        }
        if let Err(c) = commit::become_inevitable(self.shared(), self.segment(), local) {
            self.abort_with(AbortSignal::Conflict(c));
        }
        // An inevitable transaction holds up every other commit: in a series, the next break
        // point ends it.
        let local = self.local();
        local.series.left = local.series.left.min(1);
    }

    /// Whether this transaction is the inevitable one.
    pub fn is_inevitable(&self) -> bool {
        self.local().fp.inevitable
    }

    /// The running attempt's count of steps left before a break point breaks, for the loop of
    /// a series: one decrement and a branch per step. Use it only while no runtime call is
    /// running, during this attempt (invariant 10).
    pub(crate) fn series_left(&self) -> *mut u32 {
        // SAFETY: a raw pointer into the segment's local state, taken without creating a
        // reference; it stays valid for the attempt (the segment is owned for its duration,
        // invariant 1).
        unsafe { std::ptr::addr_of_mut!((*(*self.seg.0).local.get()).series.left) }
    }

    /// Abandons this attempt and runs the transaction again once another transaction has
    /// committed (Haskell's `retry`): use it to wait for a condition on shared data.
    ///
    /// A transaction that the progress policy made inevitable may still retry (it has done
    /// nothing irreversible); it gives its inevitability up.
    ///
    /// # Panics
    /// After [`Tx::become_inevitable`]: the transaction may have had irreversible effects, so
    /// it cannot be abandoned and rerun.
    #[track_caller]
    pub fn retry(&self) -> ! {
        assert!(
            !self.local().user_inevitable,
            "Tx::retry after Tx::become_inevitable: the transaction cannot be rolled back and rerun"
        );
        self.abort_with(AbortSignal::Retry)
    }

    /// Runs `first`; if it calls [`Tx::retry`], undoes `first`'s writes (its reads still count)
    /// and runs `second` instead (Haskell's `orElse`). If `second` retries too, the whole
    /// transaction retries. What `first` allocated stays allocated and valid (handles and
    /// roots to it may still exist); unless the code keeps it, it is garbage after the commit.
    ///
    /// ```
    /// use stm_runtime::{Root, Stm, Tx};
    ///
    /// /// Takes one unit from `cell`, or retries if it is empty.
    /// fn take(tx: &Tx, cell: &Root<u32>) -> u32 {
    ///     let c = cell.get(tx);
    ///     if c.get() == 0 {
    ///         tx.retry();
    ///     }
    ///     c.set(c.get() - 1);
    ///     c.get()
    /// }
    ///
    /// let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    /// let (a, b) = stm.atomically(|tx| (tx.root(tx.alloc(0u32)), tx.root(tx.alloc(5u32))));
    /// // Take from `a` if it has anything, otherwise from `b`.
    /// let left = stm.atomically(|tx| tx.or_else(|tx| take(tx, &a), |tx| take(tx, &b)));
    /// assert_eq!(left, 4);
    /// ```
    pub fn or_else<'tx, R>(
        &'tx self,
        first: impl FnOnce(&'tx Tx) -> R,
        second: impl FnOnce(&'tx Tx) -> R,
    ) -> R {
        let cp = commit::checkpoint(self.local());
        let doomed_before = self.local().doomed.is_some();
        match panic::catch_unwind(AssertUnwindSafe(|| first(self))) {
            Ok(r) => {
                commit::keep_since(self.local(), cp);
                r
            }
            Err(payload) => {
                if matches!(
                    payload.downcast_ref::<AbortSignal>(),
                    Some(AbortSignal::Retry)
                ) {
                    let local = self.local();
                    commit::rollback_to(local, cp);
                    // The retry doomed the attempt (in case user code swallowed it); it is
                    // handled here. A real conflict found meanwhile stays.
                    if !doomed_before && local.doomed.as_ref().is_some_and(|c| c.swallowed) {
                        local.doomed = None;
                    }
                    second(self)
                } else {
                    // A conflict or a panic: the whole attempt rolls back anyway.
                    commit::keep_since(self.local(), cp);
                    panic::resume_unwind(payload)
                }
            }
        }
    }

    /// Abandons this attempt and runs the transaction again at once.
    pub(crate) fn restart(&self) -> ! {
        self.abort_with(AbortSignal::Restart)
    }

    pub(crate) fn abort_with(&self, signal: AbortSignal) -> ! {
        // If user code catches the unwind and goes on, the attempt still cannot commit: a
        // conflict dooms it as a conflict, any other signal as a restart.
        let local = self.local();
        // After `become_inevitable` the code may have had irreversible effects: running it
        // again would repeat them. Every abort path refuses earlier with its own message
        // (`retry`, `Root::get`); this is the backstop.
        assert!(
            !local.user_inevitable,
            "stm-runtime: an inevitable transaction was about to be aborted and run again, \
             which would repeat its irreversible effects"
        );
        match &signal {
            AbortSignal::Conflict(c) => local.doomed = Some(c.clone()),
            _ => {
                local.doomed.get_or_insert(Conflict::swallowed());
            }
        }
        panic::resume_unwind(Box::new(signal))
    }
}

impl Stm {
    /// Runs `f` as one transaction and returns its result.
    ///
    /// The transaction sees a consistent snapshot of the heap plus its own writes. If another
    /// transaction commits a conflicting change first, this one is rolled back and `f` runs
    /// again, so `f` may run several times: keep its effects inside the heap, or call
    /// [`Tx::become_inevitable`] before an irreversible one. (`f` is your code, which the
    /// macros do not rewrite: a `println!` in it runs once per attempt. In `#[transactional]`
    /// code the macros make the transaction inevitable before the I/O they recognize.)
    ///
    /// * **Nesting**: called inside a transaction of the same runtime on the same thread, `f`
    ///   joins it (flat nesting): its effects commit or roll back with the enclosing one.
    /// * **Panics** in `f` roll the transaction back and propagate to the caller.
    /// * **Destructors of a lost attempt**: when an attempt loses a conflict, the runtime
    ///   unwinds `f`, and the destructors of its values run during that unwind. What they
    ///   read is each object as it is committed now, which beside what the attempt read
    ///   before may be a state no serial order produced; nothing they write is committed.
    ///   Keep such destructors to their own bookkeeping, or to writes.
    /// * **Progress**: after [`Config::inevitable_after`](crate::Config::inevitable_after)
    ///   aborts in a row, the next attempt starts inevitable and cannot lose again.
    #[track_caller]
    pub fn atomically<R>(&self, mut f: impl FnMut(&Tx) -> R) -> R {
        match self.try_atomically(|tx| Ok::<R, Infallible>(f(tx))) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// Runs `f` as one transaction; if it returns `Err`, the transaction is rolled back
    /// (every write and allocation undone) and the error returned.
    ///
    /// When nested inside another transaction (see [`Stm::atomically`]), an `Err` is returned
    /// to the enclosing code without rolling anything back: the enclosing transaction decides.
    #[track_caller]
    pub fn try_atomically<R, E>(&self, mut f: impl FnMut(&Tx) -> Result<R, E>) -> Result<R, E> {
        let site = Location::caller();
        let shared = &self.shared;
        let current = CURRENT.with(Cell::get);
        if !current.is_null() {
            // SAFETY: (invariant 18) CURRENT points to a Tx on this thread's stack, alive until
            // its CurrentGuard resets CURRENT, which happens after `f` returns.
            let cur = unsafe { &*current };
            if std::ptr::eq(cur.shared_raw.0, Arc::as_ptr(shared)) {
                return f(cur);
            }
            nested_in_other_runtime(site);
        }
        // Conflict reporting is looked at once per call: turned on or off meanwhile, it
        // applies from the next call. The call that reports is a copy of the loop of its
        // own, out of line, so that the common one carries neither the timing nor the test.
        if shared.recorder.enabled() {
            return self.run_reporting(site, f);
        }
        self.run::<false, R, E>(site, &mut f)
    }

    /// [`Stm::try_atomically`] while conflict reports are on: [`Stm::run`] with its CPU time
    /// added to the report.
    #[cold]
    #[inline(never)]
    fn run_reporting<R, E>(
        &self,
        site: &'static Location<'static>,
        mut f: impl FnMut(&Tx) -> Result<R, E>,
    ) -> Result<R, E> {
        let _timing = CpuTiming::start(&self.shared);
        self.run::<true, R, E>(site, &mut f)
    }

    /// The loop of an outermost transaction: takes a segment, runs attempts in it, and
    /// waits, collects or starts over as they ask. `REPORTING`: conflict reports are on for
    /// this call.
    #[inline(always)]
    fn run<const REPORTING: bool, R, E>(
        &self,
        site: &'static Location<'static>,
        f: &mut impl FnMut(&Tx) -> Result<R, E>,
    ) -> Result<R, E> {
        let shared = &self.shared;
        let mut aborts: u32 = 0;
        let mut may_collect = true;
        loop {
            shared.maybe_collect();
            let (seg, bias) = shared.acquire_segment();
            // SAFETY: we own the segment now (invariant 1), and no reference to its local state
            // exists.
            unsafe { (*seg.local.get()).may_collect = may_collect };
            let owned = SegmentGuard { shared, seg, bias };
            match self.attempts::<REPORTING, R, E>(seg, site, &mut aborts, f) {
                Attempts::Done(result) => return result,
                Attempts::Panicked(payload, value) => {
                    drop(owned);
                    drop(value);
                    panic::resume_unwind(payload);
                }
                Attempts::Again(value) => {
                    // The value of an attempt that failed to commit is the user's to drop, and
                    // its `Drop` may start transactions or collect: not while we own a segment
                    // (it would wait for it). Take the segment again right after.
                    drop(owned);
                    drop(value);
                }
                Attempts::Collect => {
                    drop(owned);
                    may_collect = false;
                    shared.collect();
                }
                Attempts::RetryAfter(seen) => {
                    // Give the segment back while waiting: the commit we wait for may need it.
                    drop(owned);
                    if let Some(seen) = seen {
                        shared.committed.wait_until(|| shared.commit_count() > seen);
                    }
                }
                Attempts::WaitFor(cell) => {
                    drop(owned);
                    shared.committed.wait_until(|| {
                        cell.load(std::sync::atomic::Ordering::Acquire) != crate::commit::PENDING
                    });
                }
            }
        }
    }

    /// Runs attempts of `f` in the owned segment until one commits, returns `Err`, panics or
    /// retries.
    fn attempts<const REPORTING: bool, R, E>(
        &self,
        seg: &Segment,
        site: &'static Location<'static>,
        aborts: &mut u32,
        f: &mut impl FnMut(&Tx) -> Result<R, E>,
    ) -> Attempts<Result<R, E>> {
        let shared = &self.shared;
        loop {
            // SAFETY: we own the segment (SegmentGuard in the caller); no other reference to
            // its local state exists outside this loop's runtime calls (invariant 1).
            let local = unsafe { &mut *seg.local.get() };
            commit::begin(shared, local, REPORTING, site);
            let tx = Tx::new(local, seg, shared);
            if *aborts >= shared.config.inevitable_after && *aborts > 0 {
                seg.stats.bump(Counter::InevitableByPolicy);
                // At the start nothing is read yet, so this cannot conflict.
                tx.make_inevitable();
            }
            let outcome = {
                let _restore = CurrentGuard(CURRENT.with(|c| c.replace(&tx)));
                panic::catch_unwind(AssertUnwindSafe(|| f(&tx)))
            };
            // SAFETY: user code has returned; we are again the only user of the local state
            // (invariant 1).
            let local = unsafe { &mut *seg.local.get() };
            let counter = match outcome {
                Ok(Ok(value)) => match commit::commit(shared, seg, local) {
                    Ok(at) => {
                        if local.series.cut_by_break {
                            seg.stats.bump(Counter::BreakCommit);
                        }
                        LAST_COMMIT.with(|l| l.set(at));
                        return Attempts::Done(Ok(value));
                    }
                    Err(c) if c.swallowed => {
                        // Running it again would catch the same unwind again: a clear error
                        // instead of a transaction that never ends or commits what it
                        // asked to abandon.
                        commit::rollback(shared, local);
                        count_abort(seg, local, Counter::AbortPanic);
                        return Attempts::Panicked(
                            Box::new(swallowed_message(site)),
                            Some(Ok(value)),
                        );
                    }
                    Err(c) => {
                        let counter = self.conflicted(local, &c);
                        lost(shared, seg, local, counter, aborts);
                        return Attempts::Again(Ok(value));
                    }
                },
                // User code caught a conflict's unwind and then returned an error: the
                // attempt lost to another commit, so it runs again (as if the unwind had
                // reached us), its error is not the transaction's outcome.
                Ok(Err(e)) if caught_conflict(local) => {
                    let c = local.doomed.take().unwrap_or_else(Conflict::injected);
                    let counter = self.conflicted(local, &c);
                    lost(shared, seg, local, counter, aborts);
                    return Attempts::Again(Err(e));
                }
                Ok(Err(e)) => {
                    commit::rollback(shared, local);
                    count_abort(seg, local, Counter::AbortExplicit);
                    return Attempts::Done(Err(e));
                }
                Err(payload) => match payload.downcast::<AbortSignal>() {
                    Ok(signal) => match *signal {
                        AbortSignal::Conflict(c) => self.conflicted(local, &c),
                        AbortSignal::Restart => Counter::AbortRetry,
                        AbortSignal::Collect => {
                            commit::rollback(shared, local);
                            return Attempts::Collect;
                        }
                        AbortSignal::WaitFor(cell) => {
                            commit::rollback(shared, local);
                            count_abort(seg, local, Counter::AbortRetry);
                            return Attempts::WaitFor(cell);
                        }
                        AbortSignal::Retry => {
                            // Count the commits, then look at what we read: if it changed
                            // already, run again at once; else a later commit may change
                            // it (see `Shared::commit_count`). In GIL mode nothing commits
                            // while we run.
                            let seen = shared.commit_count();
                            let seen = commit::reads_unchanged(shared, local).then_some(seen);
                            commit::rollback(shared, local);
                            count_abort(seg, local, Counter::AbortRetry);
                            *aborts = 0;
                            return Attempts::RetryAfter(seen);
                        }
                    },
                    // The same for a panic after a caught conflict: run again.
                    Err(_) if caught_conflict(local) => {
                        let c = local.doomed.take().unwrap_or_else(Conflict::injected);
                        self.conflicted(local, &c)
                    }
                    Err(panic_payload) => {
                        commit::rollback(shared, local);
                        count_abort(seg, local, Counter::AbortPanic);
                        return Attempts::Panicked(panic_payload, None);
                    }
                },
            };
            lost(shared, seg, local, counter, aborts);
        }
    }
}

/// Whether user code caught the unwind of a conflict (not of a retry or restart, which
/// `swallowed` marks) and went on: the attempt has lost whatever it does next.
fn caught_conflict(local: &SegmentLocal) -> bool {
    local.doomed.as_ref().is_some_and(|c| !c.swallowed)
}

/// An attempt lost (a conflict, or a restart): roll it back and count it against the
/// progress policy.
fn lost(
    shared: &Shared,
    seg: &Segment,
    local: &mut SegmentLocal,
    counter: Counter,
    aborts: &mut u32,
) {
    commit::rollback(shared, local);
    count_abort(seg, local, counter);
    *aborts += 1;
}

/// A transaction of one runtime started inside a transaction of another, on one thread:
/// refused. Two transactions alive on one thread could not commit atomically together, and
/// the handles of both would be in scope at once, where nothing could keep one transaction's
/// handles out of the other's objects (invariant 9: at most one transaction per thread).
#[cold]
#[inline(never)]
#[track_caller]
fn nested_in_other_runtime(site: &'static Location<'static>) -> ! {
    panic!(
        "{site}: a transaction of one `Stm` runtime cannot start inside a transaction of \
         another on the same thread (their commits could not be atomic together, and their \
         handles could be mixed up). Run it before or after the enclosing transaction, on \
         another thread, or keep both kinds of data in one runtime"
    )
}

/// The panic of a transaction whose code caught one of the runtime's unwinds and went on.
#[cold]
fn swallowed_message(site: &'static Location<'static>) -> String {
    format!(
        "{site}: the transaction's code caught an unwind of the runtime (`Tx::retry`, or a \
         restart the runtime asked for) with `catch_unwind` and went on, so it cannot commit; \
         running it again would do the same. Let such unwinds pass: resume the payloads you do \
         not own with `std::panic::resume_unwind`, or catch panics outside the transaction"
    )
}

/// Panics if a transaction runs on this thread: for runtime calls that wait for every
/// transaction of a runtime to end (collection, a queue run), which would wait for the
/// caller's own or see its snapshot go stale.
#[track_caller]
pub(crate) fn refuse_inside_transaction(what: &str) {
    if in_transaction() {
        panic!(
            "{what} cannot be called inside a transaction: it waits for transactions to end \
             (one of them is the caller's) and its effects would not be part of the caller's \
             snapshot. Call it outside `atomically`"
        );
    }
}

/// Counts an aborted attempt by its cause, and apart when it ran between break points.
fn count_abort(seg: &Segment, local: &SegmentLocal, cause: Counter) {
    seg.stats.bump(cause);
    if local.in_series() {
        seg.stats.bump(Counter::BreakAbort);
    }
}

/// How a run of attempts in one segment ended.
enum Attempts<T> {
    Done(T),
    /// The attempt panicked (or its code swallowed the runtime's unwind); the value, if the
    /// closure returned one, is dropped once the segment is given back.
    Panicked(Box<dyn std::any::Any + Send>, Option<T>),
    /// The closure returned but the commit found a conflict: drop the value without holding
    /// the segment, then start over.
    Again(T),
    /// The heap was full: collect, then start over.
    Collect,
    /// Wait until the commit count (`Shared::commit_count`) exceeds this one, then start
    /// over (at once if `None`: what the attempt read has changed already).
    RetryAfter(Option<u64>),
    /// Wait until another thread's attempt settles this root cell, then start over.
    WaitFor(Arc<std::sync::atomic::AtomicU64>),
}

/// Runs `f` inside the transaction already running on this thread (joining it, whatever its
/// runtime), or, if there is none, as a new transaction of [`Stm::global`].
///
/// This is what `#[transactional]` functions use: called inside a transaction they join it;
/// called outside any transaction they run as their own, retried on conflict.
#[track_caller]
pub fn atomically<R>(mut f: impl FnMut(&Tx) -> R) -> R {
    let current = CURRENT.with(Cell::get);
    if current.is_null() {
        Stm::global().atomically(f)
    } else {
        // SAFETY: (invariant 18) CURRENT points to the innermost running Tx on this thread's
        // stack, alive until its CurrentGuard resets CURRENT after the closure that is running
        // us returns.
        f(unsafe { &*current })
    }
}

thread_local! {
    static LAST_COMMIT: Cell<u64> = const { Cell::new(0) };
}

/// Where this thread's last committed transaction sits in the runtime's serial order, for
/// runtimes built with [`Builder::serial_order`](crate::Builder::serial_order): every
/// committed transaction, writer or read-only, gets a distinct number, and replaying them in
/// increasing order reproduces every value each one read. 0 for runtimes without it (in
/// GIL mode: the number of commits so far, which orders the writers).
pub fn last_commit_rev() -> u64 {
    LAST_COMMIT.with(Cell::get)
}

/// Whether a transaction is running on this thread.
pub fn in_transaction() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Whether a transaction of this runtime is running on this thread (innermost only).
pub(crate) fn in_transaction_of(shared: &Arc<Shared>) -> bool {
    let cur = CURRENT.with(Cell::get);
    // SAFETY: CURRENT points to a live Tx on this thread's stack (invariant 18).
    !cur.is_null() && std::ptr::eq(unsafe { (*cur).shared_raw.0 }, Arc::as_ptr(shared))
}

impl Stm {
    /// Accounts for an attempt lost to a conflict: the counter to bump, and the conflict
    /// report's row when reporting.
    fn conflicted(&self, local: &SegmentLocal, c: &Conflict) -> Counter {
        if local.report.on && !c.injected && !c.swallowed {
            let other_site = c
                .other_site
                .or_else(|| self.shared.recorder.writer_of(c.granule));
            let kind = if c.write_write {
                ConflictKind::WriteWrite
            } else {
                ConflictKind::ReadWrite
            };
            self.shared.recorder.record(ConflictSite {
                kind,
                object_type: other_site.or(c.our_site).map(|s| s.type_name),
                this_side: c.our_site.map(|s| s.site).or(local.report.tx_site),
                other_side: other_site.map(|s| s.site),
                count: 1,
                time_lost: local
                    .report
                    .started
                    .map(|t| crate::sys::thread_cpu_time().saturating_sub(t))
                    .unwrap_or_default(),
                between_breaks: local.in_series(),
            });
        }
        if c.swallowed {
            Counter::AbortRetry
        } else if c.injected {
            Counter::AbortInjected
        } else if c.write_write {
            Counter::AbortWriteWrite
        } else {
            Counter::AbortReadWrite
        }
    }

    /// Turns conflict reporting on or off (see [`ConflictReport`]). It starts on when the
    /// environment variable `STM_CONFLICT_REPORT=1` is set as the runtime is created. The
    /// setting applies from the next outermost `atomically` call on each thread: one that is
    /// running (retrying, or waiting in `retry`) keeps the setting it started with.
    pub fn set_conflict_reports(&self, on: bool) {
        self.shared.recorder.set_enabled(on);
    }

    /// The conflicts recorded so far, most time lost first.
    pub fn conflict_report(&self) -> ConflictReport {
        self.shared.recorder.report()
    }

    /// Forgets the conflicts recorded so far.
    pub fn clear_conflict_report(&self) {
        self.shared.recorder.clear();
    }
}

/// Whether barriers are compiled in (false with the `gil` feature).
pub const BARRIERS: bool = STM;
