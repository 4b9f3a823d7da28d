//! Handles to shared objects and the types that may live in the shared heap.
//!
//! * [`Gc<'tx, T>`]: a handle usable inside the transaction `'tx` that produced it. It carries
//!   the transaction (so field access needs nothing else), is `Copy`, and cannot leave the
//!   transaction: `'tx` is invariant and the closure given to
//!   [`Stm::atomically`](crate::Stm::atomically) is higher-ranked over it. So a collector
//!   may reclaim any object not reachable from a [`Root`] whenever no transaction runs.
//! * [`GcRef<T>`]: the form a handle takes when stored *inside* an object (4 bytes). It has
//!   no public constructor and cannot be dereferenced: it only becomes a `Gc` again when read
//!   out of an object through a `Gc`, inside a transaction whose snapshot contains it.
//! * [`Root<T>`]: keeps an object alive across transactions and threads (`Send + Sync`);
//!   [`Root::get`] turns it back into a `Gc` inside a transaction.
//! * [`Plain`]: plain data allowed in shared objects; [`Object`]: a type that can be
//!   allocated in the shared heap.

use std::any::TypeId;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::commit::{self, STM};
use crate::heap::{Header, FLAG_GUARDED, FLAG_NEW, FLAG_WRITE_BARRIER, HEADER_SIZE};
use crate::pool::Shared;
use crate::runtime::Stm;
use crate::segment::Guard;
use crate::tx::Tx;

/// Plain data that may be stored in shared objects: no handles, no pointers, no drop glue,
/// nothing thread-bound, and any bit copy of a value is that value.
///
/// Implemented for integers, floats, `bool`, `char`, `()`, arrays and tuples of `Plain`
/// types, and `Option` of them. Derive it for your own small `Copy` structs and enums with the
/// object macros, or implement it by hand.
///
/// # Safety
/// The type must be `Copy` and contain no references, raw pointers, handles ([`GcRef`],
/// [`Gc`], [`Root`]) or interior mutability, so that a byte copy of a value made in one thread
/// is a valid, independent value in another (invariant 6).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not plain data that a shared object can hold",
    label = "not `stm_runtime::Plain`",
    note = "shared objects hold integers, floats, bool, char, (), arrays, tuples and Options \
            of those, `Copy` types declared plain, handles (`Gc<T>`) and the runtime's containers"
)]
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive with no pointers and no interior mutability (invariant 6).
        unsafe impl Plain for $t {}
    )* };
}
plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

// SAFETY: an array of plain values is plain (invariant 6).
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
// SAFETY: an optional plain value is plain (invariant 6).
unsafe impl<T: Plain> Plain for Option<T> {}

macro_rules! plain_tuple {
    ($($t:ident),*) => {
        // SAFETY: a tuple of plain values is plain (invariant 6).
        unsafe impl<$($t: Plain),*> Plain for ($($t,)*) {}
    };
}
plain_tuple!(A);
plain_tuple!(A, B);
plain_tuple!(A, B, C);
plain_tuple!(A, B, C, D);
plain_tuple!(A, B, C, D, E);
plain_tuple!(A, B, C, D, E, F);
plain_tuple!(A, B, C, D, E, F, G);
plain_tuple!(A, B, C, D, E, F, G, H);

/// A type that may be a field of a shared object: [`Plain`] data, or a stored handle
/// ([`GcRef<U>`] or `Option<GcRef<U>>`). `Loaded<'tx>` is what a transaction gets when it
/// reads the field: the value itself for plain data, a [`Gc<'tx, U>`] for a stored handle.
///
/// # Safety
/// Implemented by this crate only (for `Plain` types and stored handles); `load` and `store`
/// must convert without changing which object a handle names (invariant 3).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a shared object",
    label = "not a shared-heap field type",
    note = "fields hold plain data (integers, floats, bool, char, (), arrays, tuples, `Copy` \
            types declared plain), handles `Gc<T>` / `Option<Gc<T>>`, or the runtime's containers"
)]
pub unsafe trait Field: Copy + 'static {
    /// The field's value as seen inside a transaction.
    type Loaded<'tx>;

    /// Converts a stored value into what the transaction sees.
    ///
    /// # Safety
    /// `self` must have been read out of an object in `tx`'s current snapshot (invariant 3).
    unsafe fn load(self, tx: &Tx) -> Self::Loaded<'_>;

    /// Converts a value of the transaction into its stored form.
    ///
    /// # Safety
    /// The stored form must go straight into an object of the transaction that `value`
    /// belongs to: a stored handle outlives its transaction, so safe code must never hold one
    /// (invariant 8).
    unsafe fn store(value: Self::Loaded<'_>) -> Self;

    /// Reports the handles this value holds to the collector.
    fn trace(&self, tracer: &mut Tracer);
}

// SAFETY: plain data is stored as itself.
unsafe impl<T: Plain> Field for T {
    type Loaded<'tx> = T;
    #[inline(always)]
    unsafe fn load(self, _tx: &Tx) -> T {
        self
    }
    #[inline(always)]
    unsafe fn store(value: T) -> T {
        value
    }
    #[inline(always)]
    fn trace(&self, _tracer: &mut Tracer) {}
}

// SAFETY: a stored handle becomes a handle of the transaction that read it, naming the same
// object (invariant 3); a stored handle in a snapshot names an object present in that
// snapshot (invariant 8).
unsafe impl<U: Object> Field for GcRef<U> {
    type Loaded<'tx> = Gc<'tx, U>;
    #[inline(always)]
    unsafe fn load(self, tx: &Tx) -> Gc<'_, U> {
        Gc::new(tx, self.granule.get())
    }
    #[inline(always)]
    unsafe fn store(value: Gc<'_, U>) -> Self {
        value.to_ref()
    }
    fn trace(&self, tracer: &mut Tracer) {
        tracer.visit(*self);
    }
}

// SAFETY: as for GcRef (invariants 3 and 8).
unsafe impl<U: Object> Field for Option<GcRef<U>> {
    type Loaded<'tx> = Option<Gc<'tx, U>>;
    #[inline(always)]
    unsafe fn load(self, tx: &Tx) -> Option<Gc<'_, U>> {
        self.map(|r| Gc::new(tx, r.granule.get()))
    }
    #[inline(always)]
    unsafe fn store(value: Option<Gc<'_, U>>) -> Self {
        value.map(Gc::to_ref)
    }
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(r) = self {
            tracer.visit(*r);
        }
    }
}

/// A type whose values can be allocated in the shared heap.
///
/// Every [`Plain`] type is an object (a one-value box, like a `TVar`). Structs that hold
/// handles to other objects implement it through the object attribute of the macros crate,
/// which also writes their field accessors.
///
/// # Safety
/// * The type must be `Copy`, `'static`, aligned to at most 8 bytes, and its fields must be
///   [`Field`]s (`Plain` data, or handles in their `GcRef` form; invariant 6).
/// * Safe code must not be able to build a value holding a `GcRef` that did not come from a
///   `Gc` of the transaction that stores the value (the object macro only builds values from
///   `Gc` handles of the allocating transaction; invariant 8).
/// * [`Object::trace`] must report every `GcRef` the value holds (the collector frees what it
///   does not find; invariants 7 and 8).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be allocated in the shared heap",
    label = "not a shared object type",
    note = "allocate plain data (integers, floats, bool, char, arrays, tuples, `Copy` types \
            declared plain) or structs declared with the object attribute"
)]
pub unsafe trait Object: Copy + 'static {
    /// Reports every handle stored in `self` to `tracer`.
    fn trace(&self, tracer: &mut Tracer) {
        let _ = tracer;
    }
}

// SAFETY: plain data holds no handles, so the empty trace is complete (invariant 8); Plain
// types are Copy and 'static; the alignment bound is checked at allocation (invariant 6).
unsafe impl<T: Plain> Object for T {}

pub use crate::gc::Tracer;

impl Tracer {
    /// Reports one stored handle.
    pub fn visit<T: Object>(&mut self, r: GcRef<T>) {
        self.found.push(r.granule.get());
    }
}

/// # Safety
/// `p` points to a valid `T`.
unsafe fn trace_as<T: Object>(p: *const u8, tracer: &mut Tracer) {
    // SAFETY: the caller guarantees `p` points to a valid `T`.
    unsafe { (*p.cast::<T>()).trace(tracer) }
}

thread_local! {
    /// The last type this thread allocated, and its index.
    static LAST_TYPE: Cell<Option<(TypeId, u32)>> = const { Cell::new(None) };
}

/// The index of `T` in the collector's type table, registering it on first use.
#[inline]
pub(crate) fn type_index<T: Object>() -> u32 {
    let id = TypeId::of::<T>();
    if let Some((last, idx)) = LAST_TYPE.with(Cell::get) {
        if last == id {
            return idx;
        }
    }
    let idx = crate::gc::register_type(id, trace_as::<T>, std::any::type_name::<T>());
    LAST_TYPE.with(|c| c.set(Some((id, idx))));
    idx
}

/// A field borrowed for the duration of an update (see [`Gc::update`]): writes that overlap
/// it are refused until the guard drops (also when unwinding).
pub(crate) struct UpdateGuard<'a> {
    tx: &'a Tx,
    granule: u32,
    /// The enclosing update, which this one set aside (`Guard::NONE` if none).
    outer: Guard,
}

impl<'a> UpdateGuard<'a> {
    /// Borrows bytes `start..start + len` of the object at `granule`.
    ///
    /// # Panics
    /// If a live guard borrows any of them already.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn new(tx: &'a Tx, granule: u32, start: usize, len: usize) -> Self {
        let outer = commit::begin_update(
            tx.local(),
            granule,
            start as u32,
            len as u32,
            std::panic::Location::caller(),
        );
        UpdateGuard { tx, granule, outer }
    }
}

impl Drop for UpdateGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        commit::end_update(self.tx.local(), self.granule, self.outer);
    }
}

/// Invariant in `'tx`. (`Gc` is neither `Send` nor `Sync` through its `&'tx Tx`.)
type TxMarker<'tx> = PhantomData<fn(&'tx ()) -> &'tx ()>;

/// A handle to a shared object of type `T`, valid inside the transaction `'tx`.
///
/// A `Gc` is an offset into the heap plus the transaction it belongs to; the same offset
/// names the same object in every segment, and each transaction sees its own version of it.
/// Handles are `Copy`, compare by identity ([`Gc::ptr_eq`]), and cannot outlive their
/// transaction:
///
/// ```compile_fail
/// # use stm_runtime::{Stm, Gc};
/// let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
/// // error: the handle cannot leave the closure (borrowed data escapes)
/// let leaked = stm.atomically(|tx| tx.alloc(1u32));
/// ```
pub struct Gc<'tx, T> {
    pub(crate) tx: &'tx Tx,
    pub(crate) granule: u32,
    _t: PhantomData<fn() -> T>,
    _tx: TxMarker<'tx>,
}

impl<T> Clone for Gc<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Gc<'_, T> {}

impl<T> fmt::Debug for Gc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gc<{}>@{:#x}", std::any::type_name::<T>(), self.granule)
    }
}

/// Identity: two handles are equal when they name the same object (as [`Gc::ptr_eq`]), so
/// `p.left == Some(x)` works in list and tree code. (At most one transaction runs on a
/// thread, so two handles that can meet belong to the same transaction.)
impl<'a, 'b, T> PartialEq<Gc<'b, T>> for Gc<'a, T> {
    #[inline]
    fn eq(&self, other: &Gc<'b, T>) -> bool {
        self.granule == other.granule
    }
}
impl<T> Eq for Gc<'_, T> {}

/// Hashes the identity, consistently with `==`: handles can be keys of a `HashSet` or
/// `HashMap` inside their transaction.
impl<T> std::hash::Hash for Gc<'_, T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.granule.hash(state);
    }
}

impl<'tx, T: Object> Gc<'tx, T> {
    /// Made by the runtime only, for an object of type `T` live in `tx`'s snapshot.
    pub(crate) fn new(tx: &'tx Tx, granule: u32) -> Self {
        Gc {
            tx,
            granule,
            _t: PhantomData,
            _tx: PhantomData,
        }
    }

    /// Whether two handles name the same object (the same as `==`).
    pub fn ptr_eq(self, other: Gc<'_, T>) -> bool {
        self.granule == other.granule
    }

    /// The transaction this handle belongs to.
    pub fn tx(self) -> &'tx Tx {
        self.tx
    }

    #[inline(always)]
    pub(crate) fn value_ptr(self) -> *mut T {
        self.tx
            .heap
            .0
            .wrapping_add(self.granule as usize * crate::heap::GRANULE + HEADER_SIZE)
            .cast()
    }

    /// The read barrier: if this attempt has not read the object yet (its read marker is not
    /// the attempt's), the slow path brings this segment's image of it up to date and lists
    /// it in the read set. Otherwise one `u16` load and compare, nothing shared. Nothing at
    /// all in a runtime of one segment, whose images are always current (`Tx::imports`), and
    /// compiled out in GIL mode.
    #[inline(always)]
    pub fn read_barrier(self) {
        if self.needs_marker() {
            // SAFETY: `granule` is a live object of this heap (handles are only made for
            // allocated objects, invariant 3), so its marker lies inside this segment's marker
            // array, which only this thread (the segment's owner) accesses during the
            // transaction (invariant 1).
            if unsafe { *self.tx.markers.0.add(self.granule as usize) } != self.tx.version {
                // SAFETY: a live object (invariant 3) of the segment this thread owns.
                unsafe { commit::read_slow(self.tx.shared(), self.tx.local(), self.granule) };
            }
        }
    }

    /// The write barrier: a marker and a flag test; the first write of a transaction to a
    /// committed object takes the slow path (bring it up to date if it was not read yet, save
    /// a backup, record the object).
    #[inline(always)]
    #[track_caller]
    pub fn write_barrier(self) {
        self.write_barrier_range(0, std::mem::size_of::<T>());
    }

    /// The write barrier for a write of `len` bytes at byte `start` of the value: one marker
    /// test (an object the attempt has not read may have an old image here, whose header says
    /// nothing; not with one segment, where no image is old) and one flag test, for both the
    /// first write of the attempt and a borrowed field (`FLAG_GUARDED`).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn write_barrier_range(self, start: usize, len: usize) {
        let hdr = self.header();
        // SAFETY: the marker and header of a live object in our own segment, only touched by
        // this thread (invariants 1 and 3); the header is read as plain bits, and only trusted
        // when the marker says the image is current (or the runtime has one segment, whose
        // images are all current, invariant 2).
        let fast = unsafe {
            (!self.needs_marker()
                || *self.tx.markers.0.add(self.granule as usize) == self.tx.version)
                && (*hdr).flags & (FLAG_WRITE_BARRIER | FLAG_GUARDED) == 0
        };
        if !fast {
            // SAFETY: the object is live (invariant 3) and this thread owns the segment (it runs
            // `tx`, invariant 1).
            unsafe {
                commit::write_slow(
                    self.tx.shared(),
                    self.tx.local(),
                    self.granule,
                    commit::span(start, len),
                    std::panic::Location::caller(),
                    std::any::type_name::<T>,
                )
            };
        }
    }

    /// Whether the barriers must test this object's read marker: in STM mode, in a runtime
    /// with a committed heap (with one segment every image is current, and the header alone
    /// says what the write barrier needs).
    #[inline(always)]
    fn needs_marker(self) -> bool {
        STM && self.tx.imports
    }

    #[inline(always)]
    fn header(self) -> *mut Header {
        self.value_ptr()
            .cast::<u8>()
            .wrapping_sub(HEADER_SIZE)
            .cast()
    }

    /// Where a field lies in the value: (byte offset, length).
    #[inline(always)]
    pub(crate) fn range_of<F>(self, field: *mut F) -> (usize, usize) {
        (
            (field as usize).wrapping_sub(self.value_ptr() as usize),
            std::mem::size_of::<F>(),
        )
    }

    /// Debug builds: checks that a read that skips the read barrier reads an object that
    /// carries this attempt's read mark (a barrier ran on it, or the attempt allocated it; the
    /// runtime skips the barrier only right after a write barrier on the same object, which
    /// marks it). Not in a runtime of one segment, which does not test marks.
    #[inline(always)]
    pub(crate) fn debug_check_marked(self) {
        #[cfg(debug_assertions)]
        if self.needs_marker() {
            // SAFETY: a live object of our segment (invariant 3): its marker is in bounds, and
            // only this thread touches it (invariant 1).
            let marker = unsafe { *self.tx.markers.0.add(self.granule as usize) };
            assert!(
                marker == self.tx.version,
                "stm-runtime bug: a read barrier was skipped on {} at granule {:#x}, which \
                 this attempt has not marked",
                std::any::type_name::<T>(),
                self.granule
            );
        }
    }

    /// Reads a field without a read barrier (the caller has already run one on this object
    /// in this transaction, or the object was allocated by this transaction).
    ///
    /// Not even an object that is never written may be read so without an earlier barrier:
    /// a segment holds an image of an object only once a barrier of one of its transactions
    /// has brought it in (use [`Gc::read_field_untracked`] for such objects).
    ///
    /// # Safety
    /// * Memory: `project` must return a pointer to a field of the `T` it is given (for
    ///   example `|p| unsafe { std::ptr::addr_of_mut!((*p).field) }`), without reading through
    ///   it (invariant 19).
    /// * This attempt must have run a read or write barrier (or [`Gc::read_field_untracked`])
    ///   on the object, or allocated it (invariant 14): otherwise this segment's image of it
    ///   may be an old one, or another object's, or no object at all.
    #[inline(always)]
    pub unsafe fn read_field_unbarriered<F: Field>(
        self,
        project: impl FnOnce(*mut T) -> *mut F,
    ) -> F::Loaded<'tx> {
        // SAFETY: the caller's projection stays inside the object, which is live (invariant 3)
        // in our own segment (invariant 1) and holds a valid T (written whole by alloc, by a
        // backup or by an import); nobody else writes our segment during the transaction
        // (invariant 2). Values are 8-aligned and fields aligned within them (invariant 6). The
        // field was read out of an object of `self.tx`'s snapshot, which is what `Field::load`
        // requires.
        unsafe { project(self.value_ptr()).read().load(self.tx) }
    }

    /// Reads a field that no concurrently committing transaction writes, without listing
    /// the object in the attempt's read set: this segment's image of the object is brought
    /// up to date (as by the read barrier), but the commit does not check it again. For
    /// fields written only when their object is allocated (an interpreter's conses, the kind
    /// of an object), or objects written only by transactions that never run at the same
    /// time as this one. The object is marked as read untracked, not as read: further
    /// untracked reads of it stay inline, and a later [`Gc::read_field`] of another field
    /// lists it as usual.
    ///
    /// # Safety
    /// * Memory: as for [`Gc::read_field_unbarriered`] (`project` returns a pointer to a field
    ///   of `*p`).
    /// * Serializability: no transaction that may commit while this one runs writes this
    ///   field; otherwise a conflict on it goes undetected.
    #[inline(always)]
    pub unsafe fn read_field_untracked<F: Field>(
        self,
        project: impl FnOnce(*mut T) -> *mut F,
    ) -> F::Loaded<'tx> {
        if self.needs_marker() {
            // Marked by this attempt, tracked (`version`) or not (`version + UNTRACKED`, an odd
            // number: versions are even).
            // SAFETY: as in `read_barrier`.
            let marker = unsafe { *self.tx.markers.0.add(self.granule as usize) };
            if marker | commit::UNTRACKED != self.tx.version | commit::UNTRACKED {
                // SAFETY: a live object (invariant 3) of the segment this thread owns.
                unsafe {
                    commit::read_slow_untracked(self.tx.shared(), self.tx.local(), self.granule)
                };
            }
        }
        // SAFETY: forwarded from the caller; the barrier above made the image current.
        unsafe { self.read_field_unbarriered(project) }
    }

    /// Reads one field (read barrier + load). Plain fields come out as themselves; stored
    /// handles (`GcRef<U>`) come out as `Gc<'tx, U>`.
    ///
    /// # Safety
    /// As for [`Gc::read_field_unbarriered`]: `project` returns a pointer to a field of `*p`.
    #[inline(always)]
    pub unsafe fn read_field<F: Field>(
        self,
        project: impl FnOnce(*mut T) -> *mut F,
    ) -> F::Loaded<'tx> {
        self.read_barrier();
        // SAFETY: forwarded from the caller.
        unsafe { self.read_field_unbarriered(project) }
    }

    /// Writes one field (write barrier + store). Handles are stored in their `GcRef` form;
    /// they must belong to this same transaction (the shared `'tx` enforces it).
    ///
    /// # Safety
    /// `project` must return a pointer to a field of the `T` it is given, without reading
    /// through it.
    #[inline(always)]
    #[track_caller]
    pub unsafe fn write_field<F: Field>(
        self,
        project: impl FnOnce(*mut T) -> *mut F,
        value: F::Loaded<'tx>,
    ) {
        let field = project(self.value_ptr());
        let (start, len) = self.range_of(field);
        self.write_barrier_range(start, len);
        // SAFETY: the projection stays inside a live object (invariant 3) of our own segment
        // (caller); nothing else reads or writes it concurrently (invariants 1, 2); fields are
        // Copy, so no drop is skipped; the stored form of a handle of this transaction
        // (invariant 9) names an object of its snapshot (invariant 8).
        unsafe { field.write(F::store(value)) }
    }

    /// Reads a field, lets `f` change the copy, and writes it back, as one mutable borrow
    /// of the field: the write barrier runs first (it marks the object read, so the read
    /// needs no barrier of its own), and a write to the field while `f` runs is refused
    /// (it would be lost), as rustc refuses it on an ordinary struct.
    ///
    /// # Safety
    /// As for [`Gc::write_field`].
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn update_field<F: Field, R>(
        self,
        project: impl Fn(*mut T) -> *mut F,
        f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
    ) -> R {
        let field = project(self.value_ptr());
        let (start, len) = self.range_of(field);
        self.write_barrier_range(start, len);
        self.debug_check_marked();
        // SAFETY: as in `read_field_unbarriered`; the write barrier above marked the object
        // read (or it is this attempt's own), so skipping the read barrier is sound (invariant 14).
        let mut v = unsafe { field.read().load(self.tx) };
        let guard = UpdateGuard::new(self.tx, self.granule, start, len);
        let r = f(&mut v);
        drop(guard);
        // SAFETY: as in `write_field`; `f` may have run transactional code, so the barrier
        // runs again (one flag test) before the store.
        unsafe { self.write_field(project, v) };
        r
    }

    /// The stored form of this handle. Crate-private: a `GcRef` outlives its transaction,
    /// so safe code must never hold one (invariant 8); it exists only inside objects.
    pub(crate) fn to_ref(self) -> GcRef<T> {
        GcRef {
            granule: NonZeroU32::new(self.granule).expect("handles are never null"),
            _t: PhantomData,
        }
    }
}

impl<'tx, T: Object> Gc<'tx, T> {
    /// Reads the whole value, whatever its fields (runtime-internal types only: a value
    /// holding `GcRef`s must not reach user code).
    #[inline(always)]
    pub(crate) fn get_object(self) -> T {
        self.read_barrier();
        // SAFETY: a live object of our segment holding a valid T (invariants 1 to 3, see
        // `read_field_unbarriered`).
        unsafe { self.value_ptr().read() }
    }

    /// Replaces the whole value (runtime-internal types only).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn set_object(self, value: T) {
        self.write_barrier();
        // SAFETY: a live object of our segment (invariants 1 and 3); T is Copy (invariant 6),
        // so nothing is dropped.
        unsafe { self.value_ptr().write(value) }
    }
}

impl<T> GcRef<T> {
    /// The granule number of the object.
    pub(crate) fn granule(self) -> NonZeroU32 {
        self.granule
    }
}

impl<'tx, T: Plain> Gc<'tx, T> {
    /// Reads the whole value (read barrier + copy).
    #[inline(always)]
    pub fn get(self) -> T {
        // SAFETY: the identity projection points at the whole value (invariant 19).
        unsafe { self.read_field(|p| p) }
    }

    /// Replaces the whole value (write barrier + store).
    #[inline(always)]
    #[track_caller]
    pub fn set(self, value: T) {
        // SAFETY: the identity projection points at the whole value (invariant 19).
        unsafe { self.write_field(|p| p, value) }
    }

    /// Reads the value, lets `f` change a copy, and writes the copy back.
    #[inline(always)]
    #[track_caller]
    pub fn update<R>(self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the identity projection points at the whole value (invariant 19).
        unsafe { self.update_field(|p| p, f) }
    }
}

/// A handle stored inside a shared object (4 bytes).
///
/// Objects that hold handles declare their fields as `GcRef<T>` (or `Option<GcRef<T>>`);
/// `Gc::to_ref` makes one, and reading the field in a transaction (see [`Field`]) gives a
/// `Gc` back. A `GcRef` cannot be followed by itself.
#[repr(transparent)]
pub struct GcRef<T> {
    granule: NonZeroU32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for GcRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GcRef<T> {}
impl<T> PartialEq for GcRef<T> {
    fn eq(&self, o: &Self) -> bool {
        self.granule == o.granule
    }
}
impl<T> Eq for GcRef<T> {}
impl<T> fmt::Debug for GcRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GcRef<{}>@{:#x}",
            std::any::type_name::<T>(),
            self.granule
        )
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn other_runtime() -> ! {
    panic!(
        "Root::get: this root belongs to another `Stm` runtime than the transaction. A common \
         cause: the root was made in `stm.atomically(..)` of a runtime from `Stm::new()` or \
         `Stm::builder().build()`, and is read in `stm_runtime::atomically(..)` or a \
         #[transactional] function called outside any transaction, which run on the global \
         runtime (`Stm::global()`). Use `stm.atomically(..)` of the root's runtime (`root.stm()` \
         gives it), or make that runtime the global one at the start of `main` with \
         `Stm::builder()..build_global()`"
    )
}

pub(crate) use crate::commit::{PENDING, ROLLED_BACK};

/// Whether a rooted object is visible to other transactions.
#[derive(Clone)]
enum Born {
    /// Committed before the root was made.
    Committed,
    /// Allocated by the attempt `(segment, attempt)`; the cell becomes
    /// [`BORN`](crate::commit::BORN) when it commits (after the object's image is published)
    /// or [`ROLLED_BACK`]. Boxed: pending roots are rare, and a `Born` of one word keeps
    /// `Root` at 32 bytes.
    Pending(Box<(Arc<AtomicU64>, u32, u64)>),
}

/// A handle that outlives transactions: keeps its object alive and can be sent to other
/// threads. Get a [`Gc`] back inside a transaction with [`Root::get`].
///
/// A root made for an object allocated by a transaction that then rolls back refers to
/// nothing; [`Root::get`] panics on it with a message saying so.
// `repr(C)`, in this order, 16-aligned: what `get` reads (`shared`, `granule`, `settled`) is
// the first 16 bytes of the 32, so it never straddles two cache lines, in an array of roots
// too (a program that keeps one root per bucket or account reads one line per `get`).
#[repr(C, align(16))]
pub struct Root<T> {
    shared: Arc<Shared>,
    granule: u32,
    /// True from the start for a root of a committed object (`Born::Committed`); for a
    /// `Born::Pending` one, set once its birth was seen committed, so that later `get`s read
    /// this root's own cache line, not the shared cell.
    settled: AtomicBool,
    /// The shard of the runtime's root registry that counts this root.
    shard: u32,
    born: Born,
    _t: PhantomData<fn() -> T>,
}

// The layout the comment on `Root` relies on.
const _: () = assert!(std::mem::size_of::<Root<()>>() == 32);
const _: () = assert!(std::mem::align_of::<Root<()>>() == 16);
const _: () = assert!(std::mem::offset_of!(Root<()>, settled) < 16);

impl<T> Clone for Root<T> {
    fn clone(&self) -> Self {
        self.shared.add_root(self.shard, self.granule);
        Root {
            shared: self.shared.clone(),
            granule: self.granule,
            shard: self.shard,
            born: self.born.clone(),
            settled: AtomicBool::new(self.settled.load(Ordering::Acquire)),
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Root<T> {
    fn drop(&mut self) {
        self.shared.remove_root(self.shard, self.granule);
    }
}

impl<T> fmt::Debug for Root<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Root<{}>@{:#x}",
            std::any::type_name::<T>(),
            self.granule
        )
    }
}

impl<T: Object> Root<T> {
    pub(crate) fn new(tx: &Tx, gc: Gc<'_, T>) -> Root<T> {
        let local = tx.local();
        // An object this attempt allocated carries its read mark (`Tx::alloc`); an unmarked
        // one is committed, and its image here may be old, so its header is not looked at.
        // SAFETY: in bounds (live object, invariant 3); owned (invariant 1).
        let marked = !tx.imports || unsafe { *local.marker(gc.granule) } == local.view.version;
        let hdr = local.header(gc.granule);
        // SAFETY: a live object's header in our own segment (invariants 1 and 3), current
        // since the attempt marked it (invariant 2).
        let is_new = marked && unsafe { (*hdr).flags } & FLAG_NEW != 0;
        let born = if is_new {
            let cell = Arc::new(AtomicU64::new(PENDING));
            local.pending_roots.push(cell.clone());
            Born::Pending(Box::new((cell, tx.segment().index, local.attempt)))
        } else {
            Born::Committed
        };
        let shared = tx.shared_arc().clone();
        let shard = tx.segment().index;
        shared.add_root(shard, gc.granule);
        Root {
            shared,
            granule: gc.granule,
            shard,
            born,
            // A root of a committed object is settled from the start: `get` then tests one
            // flag of the root's own.
            settled: AtomicBool::new(!is_new),
            _t: PhantomData,
        }
    }

    /// The object, as a handle of the transaction `tx`.
    ///
    /// Like every handle, it reads the newest committed version of the object at its first
    /// read in `tx` (which aborts and restarts `tx` if a newer version of something `tx` read
    /// already was committed meanwhile).
    ///
    /// # Panics
    /// If the root belongs to another runtime, if the transaction that allocated the object
    /// rolled back (the object never existed), or if that transaction still runs on another
    /// thread while `tx` is inevitable (it could neither wait nor run again).
    #[track_caller]
    #[inline]
    pub fn get<'tx>(&self, tx: &'tx Tx) -> Gc<'tx, T> {
        if !std::ptr::eq(Arc::as_ptr(&self.shared), tx.shared()) {
            other_runtime();
        }
        // Acquire: for a pending root, pairs with the Release stores of the birth cell and of
        // `settled`, which carry the happens-before from the commit that published the
        // object, so the read barrier finds its new version. (A root of a committed object
        // was settled when it was made; whatever brought the root to this thread ordered its
        // making, and the commit before it, before this.)
        if !self.settled.load(Ordering::Acquire) {
            self.settle(tx);
        }
        Gc::new(tx, self.granule)
    }

    /// [`Root::get`] of a root whose object was allocated by a transaction not seen
    /// committed yet: waits for it, or panics if it rolled back (see `get`).
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn settle(&self, tx: &Tx) {
        if let Born::Pending(birth) = &self.born {
            let (cell, seg, attempt) = &**birth;
            match cell.load(Ordering::Acquire) {
                ROLLED_BACK => panic!(
                    "Root::get: the transaction that allocated this object rolled back, \
                     so the object does not exist"
                ),
                PENDING if *seg == tx.segment().index && *attempt == tx.local().attempt => {}
                // Allocated by a transaction of another thread (at most one transaction
                // runs per thread, invariant 9) that has not ended: wait for it without
                // holding a segment, then run again.
                PENDING if tx.local().user_inevitable => panic!(
                    "Root::get: the object was allocated by a transaction still running on \
                     another thread, and this transaction is inevitable: it can neither wait \
                     for it (that one cannot commit first) nor run again. Get the root \
                     before `become_inevitable`, or after the other transaction commits"
                ),
                PENDING => tx.abort_with(crate::tx::AbortSignal::WaitFor(cell.clone())),
                _ => self.settled.store(true, Ordering::Release),
            }
        }
    }

    /// The runtime this root belongs to.
    pub fn stm(&self) -> Stm {
        Stm {
            shared: self.shared.clone(),
        }
    }
}
