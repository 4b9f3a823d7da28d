//! `TVec`: a growable array in the shared heap, with stmgc-style card marking.
//!
//! A vector is a small head object (`len`, `depth`, `root`) and a radix tree of fixed-size
//! nodes: leaves ("cards") hold [`CARD`] elements, interior nodes hold [`CARD`] children.
//! Every node is an object of its own, so writing one element runs the write barrier on one
//! card only: the before-image saved, the record committed and the conflict detected cover
//! those [`CARD`] elements, not the whole array (stmgc marks cards of 32 items for the same
//! reason). Reading element `i` reads the head and the `depth + 1` nodes on its path.
//!
//! In an object, declare the field as `TVec<T>`; reading it inside a transaction gives a
//! [`GcVec<'tx, T>`] with `len`, `get`, `set`, `push`, `pop`, `remove`, `insert`, `clear`.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;

use crate::handle::{Field, Gc, GcRef, Object, Plain, Tracer};
use crate::tx::Tx;

/// What a [`TVec`] can hold: plain data with a `Default` (`u64`, `bool`, your
/// `#[derive(stm::Plain)]` types that derive `Default`), handles (`TVec<Gc<T>>` in an object,
/// `GcVec<'tx, GcRef<T>>` in a transaction), or optional handles.
///
/// A card's slots past the length hold a blank value: `T::default()` for plain data, `None`
/// for a handle (a handle element is stored as an `Option` of the same size, and an element
/// below the length is always `Some`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an element of a `TVec`",
    label = "not a `TVec` element",
    note = "a `TVec` holds plain data with a `Default` (integers, floats, bool, char, arrays, \
            tuples, your `Copy + Default` types declared plain), handles `Gc<T>` and \
            `Option<Gc<T>>`"
)]
pub trait Element: Field + sealed::Sealed {
    /// What a card's slot holds.
    #[doc(hidden)]
    type Slot: Field + Default;
    /// An element of the transaction as a slot value.
    #[doc(hidden)]
    fn into_slot<'tx>(value: Self::Loaded<'tx>) -> <Self::Slot as Field>::Loaded<'tx>
    where
        Self: 'tx;
    /// A slot value below the length as an element.
    #[doc(hidden)]
    fn from_slot<'tx>(slot: <Self::Slot as Field>::Loaded<'tx>) -> Self::Loaded<'tx>
    where
        Self: 'tx;
}

mod sealed {
    /// Only this crate implements `Element`.
    pub trait Sealed {}
}

impl<T: Plain + Default> sealed::Sealed for T {}
impl<T: Plain + Default> Element for T {
    type Slot = T;
    #[inline(always)]
    fn into_slot<'tx>(value: T) -> T
    where
        Self: 'tx,
    {
        value
    }
    #[inline(always)]
    fn from_slot<'tx>(slot: T) -> T
    where
        Self: 'tx,
    {
        slot
    }
}

impl<U: Object> sealed::Sealed for GcRef<U> {}
impl<U: Object> Element for GcRef<U> {
    type Slot = Option<GcRef<U>>;
    #[inline(always)]
    fn into_slot<'tx>(value: Gc<'tx, U>) -> Option<Gc<'tx, U>>
    where
        Self: 'tx,
    {
        Some(value)
    }
    #[inline(always)]
    fn from_slot<'tx>(slot: Option<Gc<'tx, U>>) -> Gc<'tx, U>
    where
        Self: 'tx,
    {
        slot.expect("a slot below the length of a vector of handles holds a handle")
    }
}

impl<U: Object> sealed::Sealed for Option<GcRef<U>> {}
impl<U: Object> Element for Option<GcRef<U>> {
    type Slot = Option<GcRef<U>>;
    #[inline(always)]
    fn into_slot<'tx>(value: Option<Gc<'tx, U>>) -> Option<Gc<'tx, U>>
    where
        Self: 'tx,
    {
        value
    }
    #[inline(always)]
    fn from_slot<'tx>(slot: Option<Gc<'tx, U>>) -> Option<Gc<'tx, U>>
    where
        Self: 'tx,
    {
        slot
    }
}

/// Elements per card (leaf) and children per interior node.
pub const CARD: usize = 32;
const BITS: u32 = CARD.trailing_zeros();
/// The deepest tree: `CARD^(MAX_DEPTH + 1)` elements, far beyond any heap.
const MAX_DEPTH: u32 = 6;

/// A vector's head object (its length and the root of its tree). Only reachable through
/// [`GcVec`]; a `Root<VecHead<T>>` keeps a vector of `T` alive across transactions. The
/// element type is part of the type, so a vector can only be read back as what it holds.
#[repr(C)]
pub struct VecHead<T> {
    len: u32,
    /// Interior levels above the leaves (0: the root is a leaf).
    depth: u32,
    /// Granule of the root node, 0 while the vector has never held an element.
    root: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for VecHead<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for VecHead<T> {}

impl<T> VecHead<T> {
    fn with(len: u32, depth: u32, root: u32) -> Self {
        VecHead {
            len,
            depth,
            root,
            _t: PhantomData,
        }
    }
}

// SAFETY: Copy, 'static, aligned to 4 (invariant 6); `root` is reported to the collector by
// `trace`, and through it every node (whose traces report the elements; invariant 8).
unsafe impl<T: Element> Object for VecHead<T> {
    fn trace(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.root);
    }
}

/// An interior node: granules of its children (0 = none yet).
#[derive(Clone, Copy)]
#[repr(C)]
struct Interior {
    kids: [u32; CARD],
}

// SAFETY: Copy, 'static, aligned to 4 (invariant 6); every child is reported by `trace`
// (invariant 8).
unsafe impl Object for Interior {
    fn trace(&self, tracer: &mut Tracer) {
        for &k in &self.kids {
            tracer.visit_granule(k);
        }
    }
}

/// A card: `CARD` slots (`Element::Slot`). Slots at or beyond the vector's length hold the
/// slot's default (`pop` blanks the slot it empties, `clear` drops the cards), never garbage
/// and never a stale handle, so the whole card is always a valid value that keeps nothing
/// alive past the length.
#[derive(Clone, Copy)]
#[repr(C)]
struct Leaf<T> {
    items: [T; CARD],
}

// SAFETY: Copy, 'static; the alignment of T is checked by `alloc` (invariant 6); every element
// is a valid `T` (see the type's docs), and each reports its handles (invariant 8).
unsafe impl<T: Field + Default> Object for Leaf<T> {
    fn trace(&self, tracer: &mut Tracer) {
        for item in &self.items {
            item.trace(tracer);
        }
    }
}

/// The stored form of a growable array field: a handle to its head object.
#[repr(transparent)]
pub struct TVec<T> {
    head: NonZeroU32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TVec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TVec<T> {}
impl<T> fmt::Debug for TVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TVec@{:#x}", self.head)
    }
}

// SAFETY: a stored vector becomes a vector of the transaction that read it, naming the same
// head object (invariant 3), which every snapshot containing the field's object also
// contains (invariant 8).
unsafe impl<T: Element> Field for TVec<T> {
    type Loaded<'tx> = GcVec<'tx, T>;
    #[inline]
    unsafe fn load(self, tx: &Tx) -> GcVec<'_, T> {
        GcVec {
            head: Gc::new(tx, self.head.get()),
            _t: PhantomData,
        }
    }
    #[inline]
    unsafe fn store(v: GcVec<'_, T>) -> Self {
        TVec {
            head: v.head.to_ref().granule(),
            _t: PhantomData,
        }
    }
    fn trace(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}

/// A growable array of `T` in the shared heap, as seen by the transaction `'tx`.
///
/// Elements are copied in and out (`T: Field`: plain data or handles). Writing one element
/// backs up and commits only its card of [`CARD`] elements; two transactions writing
/// elements of different cards do not conflict (both do conflict on the length if they push).
///
/// ```
/// use stm_runtime::{GcVec, Stm};
///
/// let stm = Stm::builder().segments(1).heap_size(4 << 20).build().unwrap();
/// let v = stm.atomically(|tx| {
///     let v = GcVec::<u64>::new(tx);
///     for i in 0..100 {
///         v.push(i);
///     }
///     v.set(7, 700);
///     tx.root(v.as_gc())
/// });
/// let sum: u64 = stm.atomically(|tx| {
///     let v = stm_runtime::GcVec::<u64>::from_root(tx, &v);
///     (0..v.len()).map(|i| v.get(i)).sum()
/// });
/// assert_eq!(sum, 4950 - 7 + 700);
/// ```
pub struct GcVec<'tx, T> {
    head: Gc<'tx, VecHead<T>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for GcVec<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GcVec<'_, T> {}
impl<T> fmt::Debug for GcVec<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcVec@{:#x}", self.head.granule)
    }
}

impl<T: Element> TVec<T> {
    /// A new, empty vector allocated by `tx` (the same as [`GcVec::new`]): in an object
    /// literal, `Gc::new(Node { items: TVec::new(tx), .. })`.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)] // the stored form is made by storing the loaded one
    pub fn new(tx: &Tx) -> GcVec<'_, T> {
        GcVec::new(tx)
    }
}

impl<'tx, T: Element> GcVec<'tx, T> {
    /// A new, empty vector allocated by `tx`.
    #[track_caller]
    pub fn new(tx: &'tx Tx) -> Self {
        GcVec {
            head: tx.alloc(VecHead::with(0, 0, 0)),
            _t: PhantomData,
        }
    }

    /// The vector's head object, to root it (`tx.root(v.as_gc())`) or compare identities.
    pub fn as_gc(self) -> Gc<'tx, VecHead<T>> {
        self.head
    }

    /// The vector a root refers to.
    pub fn from_root(tx: &'tx Tx, root: &crate::Root<VecHead<T>>) -> Self {
        GcVec {
            head: root.get(tx),
            _t: PhantomData,
        }
    }

    /// Whether two handles name the same vector.
    pub fn ptr_eq(self, other: GcVec<'_, T>) -> bool {
        self.head.ptr_eq(other.head)
    }

    fn head(self) -> VecHead<T> {
        self.head.get_object()
    }

    /// The number of elements.
    pub fn len(self) -> usize {
        self.head().len as usize
    }

    /// Whether the vector has no element.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The leaf holding element `i` (which must be below the capacity of the current tree).
    fn leaf(self, h: &VecHead<T>, i: usize) -> Gc<'tx, Leaf<T::Slot>> {
        let tx = self.head.tx();
        let mut node = h.root;
        for level in (1..=h.depth).rev() {
            let interior = Gc::<Interior>::new(tx, node);
            let k = (i >> (BITS * level)) & (CARD - 1);
            node = interior.get_object().kids[k];
        }
        Gc::new(tx, node)
    }

    /// Element `i`.
    ///
    /// # Panics
    /// If `i >= len`.
    #[track_caller]
    pub fn get(self, i: usize) -> T::Loaded<'tx> {
        self.try_get(i)
            .unwrap_or_else(|| panic!("GcVec::get: index {i} out of range"))
    }

    /// Element `i`, or `None` if `i >= len`.
    pub fn try_get(self, i: usize) -> Option<T::Loaded<'tx>> {
        let h = self.head();
        if i >= h.len as usize {
            return None;
        }
        let leaf = self.leaf(&h, i);
        let k = i & (CARD - 1);
        // SAFETY: the projection points at element `k` (< CARD) of the leaf's array; the
        // leaf is an object of this vector in our snapshot (invariant 3), so its stored
        // handles are valid (invariant 8).
        let slot = unsafe {
            leaf.read_field(|p| std::ptr::addr_of_mut!((*p).items).cast::<T::Slot>().add(k))
        };
        Some(T::from_slot(slot))
    }

    /// Replaces element `i`.
    ///
    /// # Panics
    /// If `i >= len`.
    #[track_caller]
    pub fn set(self, i: usize, value: T::Loaded<'tx>) {
        let h = self.head();
        assert!(
            i < h.len as usize,
            "GcVec::set: index {i} out of range (len {})",
            h.len
        );
        self.write_slot(&h, i, value);
    }

    #[track_caller]
    fn write_slot(self, h: &VecHead<T>, i: usize, value: T::Loaded<'tx>) {
        let leaf = self.leaf(h, i);
        let k = i & (CARD - 1);
        // SAFETY: as in `try_get`; `value` belongs to this transaction (same 'tx, invariant 9).
        unsafe {
            leaf.write_field(
                |p| std::ptr::addr_of_mut!((*p).items).cast::<T::Slot>().add(k),
                T::into_slot(value),
            )
        }
    }

    /// Appends an element.
    ///
    /// # Panics
    /// If the vector already holds `u32::MAX` elements, or the heap is full.
    #[track_caller]
    pub fn push(self, value: T::Loaded<'tx>) {
        // The element type's `Default` is user code: run it before reading the head, so that
        // whatever it does to this vector cannot be overwritten by a stale head.
        let blank = T::Slot::default();
        let mut h = self.head();
        let i = h.len as usize;
        assert!(h.len < u32::MAX, "GcVec::push: too many elements");
        self.make_room(&mut h, i, blank);
        h.len += 1;
        self.head.set_object(h);
        self.write_slot(&h, i, value);
    }

    /// Makes sure the tree has the path to slot `i` (growing a level when it is full); `h` is
    /// the head, updated in place (the caller writes it back). New cards are filled with
    /// `blank` (the slot's default, made by the caller before it read the head).
    #[track_caller]
    fn make_room(self, h: &mut VecHead<T>, i: usize, blank: T::Slot) {
        let tx = self.head.tx();
        if h.root == 0 {
            h.root = new_leaf::<T::Slot>(tx, blank);
        }
        // Grow a level when the tree is full.
        while i >> (BITS * (h.depth + 1)) != 0 {
            assert!(h.depth < MAX_DEPTH, "GcVec::push: too deep");
            let mut kids = [0u32; CARD];
            kids[0] = h.root;
            h.root = tx.alloc(Interior { kids }).granule;
            h.depth += 1;
        }
        // Make sure the path to slot `i` exists.
        let mut node = h.root;
        for level in (1..=h.depth).rev() {
            let interior = Gc::<Interior>::new(tx, node);
            let k = (i >> (BITS * level)) & (CARD - 1);
            let mut kid = interior.get_object().kids[k];
            if kid == 0 {
                kid = if level == 1 {
                    new_leaf::<T::Slot>(tx, blank)
                } else {
                    tx.alloc(Interior { kids: [0; CARD] }).granule
                };
                // SAFETY: the projection points at child `k` of the interior node (invariant 19).
                unsafe {
                    interior.write_field(
                        |p| std::ptr::addr_of_mut!((*p).kids).cast::<u32>().add(k),
                        kid,
                    )
                };
            }
            node = kid;
        }
    }

    /// Removes and returns the last element, if any.
    #[track_caller]
    pub fn pop(self) -> Option<T::Loaded<'tx>> {
        let blank = T::Slot::default();
        let mut h = self.head();
        if h.len == 0 {
            return None;
        }
        let i = h.len as usize - 1;
        let v = self.get(i);
        // The slot goes back to blank: a popped handle is not kept alive by the card.
        self.blank_slot(&h, i, blank);
        h.len -= 1;
        self.head.set_object(h);
        Some(v)
    }

    /// Writes `blank` (the slot's default) into slot `i` (below the tree's capacity).
    #[track_caller]
    fn blank_slot(self, h: &VecHead<T>, i: usize, blank: T::Slot) {
        let leaf = self.leaf(h, i);
        let mut card = leaf.get_object();
        card.items[i & (CARD - 1)] = blank;
        leaf.set_object(card);
    }

    /// Blanks element `i` (below the length) without changing the length: for a container
    /// that keeps its own read position (`TQueue`), so that what it has handed out is not
    /// kept alive. Reading the element afterwards gives the blank (a handle element panics).
    #[track_caller]
    pub(crate) fn blank(self, i: usize) {
        let blank = T::Slot::default();
        let h = self.head();
        assert!(i < h.len as usize, "GcVec::blank: index {i} out of range");
        self.blank_slot(&h, i, blank);
    }

    /// Removes element `i`, shifting the following ones down, and returns it.
    ///
    /// # Panics
    /// If `i >= len`.
    #[track_caller]
    pub fn remove(self, i: usize) -> T::Loaded<'tx> {
        let len = self.len();
        assert!(i < len, "GcVec::remove: index {i} out of range (len {len})");
        let v = self.get(i);
        for j in i..len - 1 {
            let next = self.get(j + 1);
            self.set(j, next);
        }
        self.pop();
        v
    }

    /// Inserts an element at `i`, shifting the following ones up.
    ///
    /// # Panics
    /// If `i > len`.
    #[track_caller]
    pub fn insert(self, i: usize, value: T::Loaded<'tx>)
    where
        T::Loaded<'tx>: Copy,
    {
        let len = self.len();
        assert!(
            i <= len,
            "GcVec::insert: index {i} out of range (len {len})"
        );
        if i == len {
            return self.push(value);
        }
        self.push(self.get(len - 1));
        for j in (i..len - 1).rev() {
            let prev = self.get(j);
            self.set(j + 1, prev);
        }
        self.set(i, value);
    }

    /// Removes every element; the cards become garbage (and what they held with them).
    #[track_caller]
    pub fn clear(self) {
        let h = self.head();
        if h.root != 0 {
            self.head.set_object(VecHead::with(0, 0, 0));
        }
    }

    /// The elements, copied out in order, a card at a time (one read barrier and one walk
    /// down the tree per [`CARD`] elements).
    pub fn to_vec(self) -> Vec<T::Loaded<'tx>> {
        let mut out = Vec::with_capacity(self.len());
        let h = self.head();
        let len = h.len as usize;
        let mut i = 0;
        while i < len {
            let take = CARD.min(len - i);
            out.extend(self.card(&h, i).into_iter().take(take).map(T::from_slot));
            i += take;
        }
        out
    }

    /// The elements in order, read a card at a time. The iterator reads the vector as it is
    /// when each card is reached (the transaction sees only its own writes and one snapshot).
    pub fn iter(self) -> Iter<'tx, T> {
        Iter {
            vec: self,
            next: 0,
            len: self.len(),
            card: None,
        }
    }

    /// The slots of the card holding element `i`, copied out (one read barrier).
    fn card(self, h: &VecHead<T>, i: usize) -> [<T::Slot as Field>::Loaded<'tx>; CARD] {
        let leaf = self.leaf(h, i);
        leaf.read_barrier();
        std::array::from_fn(|k| {
            // SAFETY: the projection points at slot `k` (< CARD) of the leaf's array
            // (invariant 19); the barrier above ran on the leaf (invariant 14).
            unsafe {
                leaf.read_field_unbarriered(|p| {
                    std::ptr::addr_of_mut!((*p).items).cast::<T::Slot>().add(k)
                })
            }
        })
    }

    /// Appends every element of `values`, in order, a card at a time (one walk down the tree
    /// per [`CARD`] elements, the length written once): a bulk copy.
    ///
    /// # Panics
    /// If the vector would hold more than `u32::MAX` elements, or the heap is full.
    #[track_caller]
    pub fn extend_from_slice(self, values: &[T::Loaded<'tx>])
    where
        T::Loaded<'tx>: Copy,
    {
        let blank = T::Slot::default();
        let mut h = self.head();
        let start = h.len as usize;
        let total = start
            .checked_add(values.len())
            .filter(|&t| t <= u32::MAX as usize)
            .expect("GcVec::extend_from_slice: too many elements");
        let mut i = start;
        let mut rest = values;
        while !rest.is_empty() {
            self.make_room(&mut h, i, blank);
            let k0 = i & (CARD - 1);
            let take = rest.len().min(CARD - k0);
            let leaf = self.leaf(&h, i);
            for (k, &v) in (k0..).zip(&rest[..take]) {
                // SAFETY: the projection points at slot `k` (< CARD) of the leaf's array
                // (invariant 19); `v` belongs to this transaction (same 'tx, invariant 9).
                unsafe {
                    leaf.write_field(
                        |p| std::ptr::addr_of_mut!((*p).items).cast::<T::Slot>().add(k),
                        T::into_slot(v),
                    )
                }
            }
            i += take;
            rest = &rest[take..];
        }
        h.len = total as u32;
        self.head.set_object(h);
    }

    /// Appends every element of `values`, in order.
    ///
    /// # Panics
    /// As [`GcVec::push`].
    #[track_caller]
    pub fn extend(self, values: impl IntoIterator<Item = T::Loaded<'tx>>) {
        for v in values {
            self.push(v);
        }
    }
}

/// The iterator of [`GcVec::iter`].
pub struct Iter<'tx, T: Element> {
    vec: GcVec<'tx, T>,
    next: usize,
    len: usize,
    /// The rest of the current card.
    card: Option<std::array::IntoIter<<T::Slot as Field>::Loaded<'tx>, CARD>>,
}

impl<'tx, T: Element> Iterator for Iter<'tx, T> {
    type Item = T::Loaded<'tx>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.len {
            return None;
        }
        if self.card.as_ref().is_none_or(|c| c.len() == 0) {
            let h = self.vec.head();
            // The vector may have shrunk since the iterator was made (by this transaction).
            self.len = self.len.min(h.len as usize);
            if self.next >= self.len {
                return None;
            }
            let start = self.next & (CARD - 1);
            let mut card = self.vec.card(&h, self.next).into_iter();
            if start > 0 {
                card.nth(start - 1);
            }
            self.card = Some(card);
        }
        let slot = self.card.as_mut()?.next()?;
        self.next += 1;
        Some(T::from_slot(slot))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.len - self.next;
        (0, Some(n))
    }
}

impl<T: Element> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("next", &self.next)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'tx, T: Element> IntoIterator for GcVec<'tx, T> {
    type Item = T::Loaded<'tx>;
    type IntoIter = Iter<'tx, T>;
    fn into_iter(self) -> Iter<'tx, T> {
        self.iter()
    }
}

/// Allocates a card of default elements; returns its granule.
#[track_caller]
fn new_leaf<T: Field + Default>(tx: &Tx, blank: T) -> u32 {
    let items: [T; CARD] = [blank; CARD];
    tx.alloc(Leaf { items }).granule
}

// SAFETY: reports the head object, through which `VecHead::trace` reaches every node
// (invariant 8).
unsafe impl<T: Element> crate::macro_support::TraceField for TVec<T> {
    fn trace_field(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}
