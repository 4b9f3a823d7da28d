//! `TQueue`: a work pool in the shared heap whose `pop`s from concurrent transactions do not
//! conflict (stmgc-c8 gave PyPy such a queue for the same reason).
//!
//! A queue that is one shared list makes every `pop` write the same head: two transactions
//! that each take a job conflict on it, and one of them loses its whole job's work. Here the
//! queue is [`QUEUE_LANES`] lanes, each its own objects (a position and a [`TVec`] of items). A thread
//! pushes to the lanes in turn and pops from its *current* lane, moving on only when that lane
//! is empty; the threads' first lanes are spread over the lanes (bit-reversed thread numbers),
//! so up to [`QUEUE_LANES`] threads pop from lanes of their own until the queue runs low, and
//! conflict only when they meet at the end.
//!
//! The price is order: items come out of each lane in the order they went in, but there is no
//! order across lanes. A `TQueue` is a pool of work, not a FIFO. Which lane a thread uses is
//! a hint kept outside the heap; it never changes what a transaction sees, so it needs no
//! barrier and survives aborts harmlessly.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::handle::{Field, Gc, Object, Tracer};
use crate::tvec::{Element, GcVec, TVec};
use crate::tx::Tx;

/// Lanes per queue: the most threads that pop without meeting.
pub const QUEUE_LANES: usize = 16;

/// A queue's head object: its lanes (never written after the queue is made, so reading it
/// conflicts with nothing).
#[repr(C)]
pub struct QueueHead<T> {
    lanes: [u32; QUEUE_LANES],
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for QueueHead<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for QueueHead<T> {}

// SAFETY: Copy, 'static, aligned to 4 (invariant 6); every lane is reported (invariant 8).
unsafe impl<T: Element> Object for QueueHead<T> {
    fn trace(&self, tracer: &mut Tracer) {
        for &l in &self.lanes {
            tracer.visit_granule(l);
        }
    }
}

/// One lane: the items `items[next..]` are queued; `next` is written only by pops, the vector
/// only by pushes (and by the pop that empties the lane, which clears it).
#[repr(C)]
struct Lane<T> {
    next: u32,
    items: TVec<T>,
}

impl<T> Clone for Lane<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Lane<T> {}

// SAFETY: Copy, 'static, aligned to 4 (invariant 6); the item vector is reported, and through
// it every item (invariant 8).
unsafe impl<T: Element> Object for Lane<T> {
    fn trace(&self, tracer: &mut Tracer) {
        self.items.trace(tracer);
    }
}

/// The stored form of a queue field: a handle to its head object.
#[repr(transparent)]
pub struct TQueue<T> {
    head: NonZeroU32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TQueue<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TQueue<T> {}
impl<T> fmt::Debug for TQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TQueue@{:#x}", self.head)
    }
}

// SAFETY: a stored queue becomes a queue of the transaction that read it, naming the same head
// object (invariant 3), which every snapshot containing the field's object also contains
// (invariant 8).
unsafe impl<T: Element> Field for TQueue<T> {
    type Loaded<'tx> = GcQueue<'tx, T>;
    #[inline]
    unsafe fn load(self, tx: &Tx) -> GcQueue<'_, T> {
        GcQueue {
            head: Gc::new(tx, self.head.get()),
        }
    }
    #[inline]
    unsafe fn store(q: GcQueue<'_, T>) -> Self {
        TQueue {
            head: q.head.to_ref().granule(),
            _t: PhantomData,
        }
    }
    fn trace(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}

// SAFETY: reports the head object, through which every lane and item is reached (invariant 8).
unsafe impl<T: Element> crate::macro_support::TraceField for TQueue<T> {
    fn trace_field(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}

impl<T: Element> TQueue<T> {
    /// A new, empty queue allocated by `tx` (the same as [`GcQueue::new`]): in an object
    /// literal, `Gc::new(Pool { jobs: TQueue::new(tx), .. })`.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)] // the stored form is made by storing the loaded one
    pub fn new(tx: &Tx) -> GcQueue<'_, T> {
        GcQueue::new(tx)
    }
}

/// A work pool of `T` in the shared heap, as seen by the transaction `'tx`: `push`, `pop`,
/// `len`. Pops by transactions on different threads do not conflict while the queue holds
/// enough items (see [`TQueue`](crate::TQueue)); there is no order across lanes.
///
/// ```
/// use stm_runtime::{GcQueue, Stm};
///
/// let stm = Stm::builder().segments(2).heap_size(8 << 20).build().unwrap();
/// let jobs = stm.atomically(|tx| {
///     let q = GcQueue::<u64>::new(tx);
///     for j in 1..=100 {
///         q.push(j);
///     }
///     tx.root(q.as_gc())
/// });
/// let total: u64 = std::thread::scope(|s| {
///     let worker = || {
///         let mut sum = 0;
///         // One transaction per job: the two threads take from lanes of their own.
///         while let Some(j) = stm.atomically(|tx| GcQueue::from_root(tx, &jobs).pop()) {
///             sum += j;
///         }
///         sum
///     };
///     let a = s.spawn(worker);
///     let b = s.spawn(worker);
///     a.join().unwrap() + b.join().unwrap()
/// });
/// assert_eq!(total, 5050);
/// ```
pub struct GcQueue<'tx, T> {
    head: Gc<'tx, QueueHead<T>>,
}

impl<T> Clone for GcQueue<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GcQueue<'_, T> {}
impl<T> fmt::Debug for GcQueue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcQueue@{:#x}", self.head.granule)
    }
}

/// Numbers threads in the order they first use a container.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The lane this thread pops from, and the next it pushes to (`usize::MAX`: not chosen).
    static LANE: Cell<(usize, usize)> = const { Cell::new((usize::MAX, usize::MAX)) };
}

thread_local! {
    static NUMBER: usize = THREADS.fetch_add(1, Ordering::Relaxed);
}

/// The calling thread's number: threads are numbered in the order they first ask. The
/// containers use it to spread threads over their lanes and counters.
pub(crate) fn thread_number() -> usize {
    NUMBER.with(|n| *n)
}

/// The calling thread's lanes (pop, push), chosen at its first use: its number, bit-reversed,
/// so that the first threads start as far apart as the lanes allow (0, 8, 4, 12, 2, ...).
fn lanes() -> (usize, usize) {
    LANE.with(|l| {
        let (pop, push) = l.get();
        if pop != usize::MAX {
            return (pop, push);
        }
        let n = thread_number() % QUEUE_LANES;
        let first = n.reverse_bits() >> (usize::BITS - QUEUE_LANES.trailing_zeros());
        l.set((first, first));
        (first, first)
    })
}

fn set_lanes(pop: usize, push: usize) {
    LANE.with(|l| l.set((pop, push)));
}

impl<'tx, T: Element> GcQueue<'tx, T> {
    /// A new, empty queue allocated by `tx`.
    #[track_caller]
    pub fn new(tx: &'tx Tx) -> Self {
        let mut lanes = [0u32; QUEUE_LANES];
        for l in &mut lanes {
            let items = GcVec::<T>::new(tx);
            // SAFETY: the vector is this transaction's and goes straight into the lane
            // object it allocates (invariant 8).
            let items = unsafe { <TVec<T> as Field>::store(items) };
            *l = tx.alloc(Lane { next: 0, items }).granule;
        }
        GcQueue {
            head: tx.alloc(QueueHead {
                lanes,
                _t: PhantomData,
            }),
        }
    }

    /// The queue's head object, to root it (`tx.root(q.as_gc())`) or compare identities.
    pub fn as_gc(self) -> Gc<'tx, QueueHead<T>> {
        self.head
    }

    /// The queue a root refers to.
    pub fn from_root(tx: &'tx Tx, root: &crate::Root<QueueHead<T>>) -> Self {
        GcQueue { head: root.get(tx) }
    }

    /// Whether two handles name the same queue.
    pub fn ptr_eq(self, other: GcQueue<'_, T>) -> bool {
        self.head.ptr_eq(other.head)
    }

    fn lane(self, i: usize) -> Gc<'tx, Lane<T>> {
        Gc::new(self.head.tx(), self.head.get_object().lanes[i])
    }

    fn items(lane: Gc<'tx, Lane<T>>) -> GcVec<'tx, T> {
        // SAFETY: the projection points at the lane's item vector (invariant 19).
        unsafe { lane.read_field(|p| std::ptr::addr_of_mut!((*p).items)) }
    }

    fn next(lane: Gc<'tx, Lane<T>>) -> u32 {
        // SAFETY: the projection points at the lane's position (invariant 19).
        unsafe { lane.read_field(|p| std::ptr::addr_of_mut!((*p).next)) }
    }

    /// Adds an item (to the calling thread's next lane).
    ///
    /// # Panics
    /// If a lane has taken `u32::MAX` pushes since it was last empty, or the heap is full.
    #[track_caller]
    pub fn push(self, value: T::Loaded<'tx>) {
        let (pop, push) = lanes();
        Self::items(self.lane(push)).push(value);
        set_lanes(pop, (push + 1) % QUEUE_LANES);
    }

    /// Takes an item: from the calling thread's current lane, or, when that is empty, from
    /// the next lane that is not. `None` if the queue is empty.
    #[track_caller]
    pub fn pop(self) -> Option<T::Loaded<'tx>> {
        let (first, push) = lanes();
        for k in 0..QUEUE_LANES {
            let i = (first + k) % QUEUE_LANES;
            let lane = self.lane(i);
            let next = Self::next(lane);
            let items = Self::items(lane);
            let len = items.len();
            if (next as usize) < len {
                let v = items.get(next as usize);
                let next = if next as usize + 1 == len {
                    // The lane is empty now: its cards become garbage.
                    items.clear();
                    0
                } else {
                    // The slot is blanked, so that what was handed out is not kept alive
                    // by the lane until it drains.
                    items.blank(next as usize);
                    next + 1
                };
                // SAFETY: the projection points at the lane's position (invariant 19).
                unsafe { lane.write_field(|p| std::ptr::addr_of_mut!((*p).next), next) };
                if k > 0 {
                    set_lanes(i, push);
                }
                return Some(v);
            }
        }
        None
    }

    /// The number of items queued. (It reads every lane, so it conflicts with every push
    /// and pop that commits meanwhile.)
    pub fn len(self) -> usize {
        (0..QUEUE_LANES)
            .map(|i| {
                let lane = self.lane(i);
                Self::items(lane).len() - Self::next(lane) as usize
            })
            .sum()
    }

    /// Whether the queue holds no item. (Like [`GcQueue::len`], it reads every lane.)
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}
