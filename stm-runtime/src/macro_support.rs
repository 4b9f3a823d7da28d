//! What the code written by `#[stm::object]` and `#[stm::transactional]` calls. Not a public
//! API: reached as `stm_runtime::__private`, hidden from the docs, and free to change.
//!
//! # How a field access is dispatched
//!
//! A proc macro sees `a.balance` but not the type of `a`. The expansion therefore asks the
//! compiler, by method resolution, which kind of receiver it has (the "autoref specialization"
//! pattern, as in anyhow's `kind()`):
//!
//! * `Recv(&a).__stm_rkind()` finds [`HandleRead::__stm_rkind`] (by value, on `Recv` of a
//!   `Gc`, `&Gc`, `&&Gc` or `&mut Gc`) before [`PlainRead::__stm_rkind`] (by reference, on
//!   `Recv` of anything) when `a` is a handle, and yields a [`HandleTag`]; for any other
//!   receiver it yields a [`PlainRef`] borrowing `a`.
//! * `a.__stm_wkind()` does the same for writes (by value on `Gc`, `&Gc`, `&&Gc`; by `&mut`
//!   on anything else), yielding a [`HandleTag`] or a [`PlainMut`].
//!
//! Every tag method takes two projections of the same field, written by the macro:
//! an ordinary closure `|r| &r.balance` (used by the plain tags: ordinary Rust semantics,
//! auto-deref included) and a raw-pointer projection [`Proj`] (used by the handle tag, which
//! runs the barrier and copies the field in or out of the segment). Both type-check for both
//! kinds of receiver, so one expansion serves both; the compiler picks.
//!
//! Writes are `#[track_caller]` down to `Gc::write_field`, so conflict reports name the line
//! of the user's assignment (a write-back guard writes from its `Drop`, so its line is this
//! file's).
//!
//! A handle never hands out a reference into segment memory: reads give a copy wrapped in
//! [`ReadOnly`] (no `DerefMut`, so a `&mut self` method on a copy is a compile error rather
//! than a lost write) and mutable places give a [`WriteBack`] guard that writes the changed
//! copy back (with the write barrier) when the statement ends.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::handle::{Field, Gc, GcRef, Object, Plain, Tracer};
use crate::tx::Tx;

pub use crate::tx::atomically;

/// The transaction of a `#[transactional]` function that takes no handle and no `&Tx`: it
/// joins the transaction running on this thread, or runs as its own (of `Stm::global()`),
/// retried on conflict. `f` is `Fn + Sync`, so that a body that may run again after an abort
/// cannot change what the function sees from outside (a `&mut` parameter, a captured local, a
/// `Cell`): the compiler rejects that instead of letting the change happen twice. Its `mut` parameters
/// are copied afresh for every attempt ([`rerun_copy`]).
#[inline]
#[track_caller]
pub fn atomically_fn<R>(f: impl Fn(&Tx) -> R + Sync) -> R {
    crate::tx::atomically(f)
}

/// A `mut` parameter of a `#[transactional]` function that runs as its own transaction: each
/// attempt starts from a copy of the value the function was called with.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a `mut` parameter of a transactional function that runs as its own \
               transaction, so it must be `Clone`",
    label = "copied afresh for every attempt",
    note = "the body may run again after an abort, and must then start from the value the \
            function was called with; take the parameter without `mut` and copy what you \
            change into a local, take a `&Tx` or a handle so that the function runs inside \
            its caller's transaction, or make the type `Clone`"
)]
pub trait RerunCopy: Clone {}
impl<T: Clone> RerunCopy for T {}

/// A fresh copy of a `mut` parameter for one attempt (see [`RerunCopy`]).
#[inline(always)]
pub fn rerun_copy<T: RerunCopy>(value: &T) -> T {
    value.clone()
}

/// Implemented by `#[stm::object]` for its structs: field syntax through handles
/// (`h.field`) is only available for these types.
///
/// # Safety
/// The type must not implement `Deref` to anything with fields (the object macro implements
/// `Deref<Target = NoFields>` itself, so no other `Deref` impl can exist): a projection
/// `addr_of!((*p).field)` must name a field of the type itself, never one reached by
/// auto-deref through user code.
pub unsafe trait ObjectLayout: Object {}

/// The `Deref` target of every object type: it has no fields and no methods, so field
/// syntax on an object never auto-derefs into another type.
#[derive(Clone, Copy, Debug)]
pub struct NoFields;

/// Converts a transaction's value of a field into its stored form (`Gc` -> `GcRef`), for
/// the object literal that [`new_object!`] builds.
///
/// # Safety
/// The result must go straight into an object value that `tx` allocates (safe code must
/// never hold a stored handle: it would outlive its transaction, invariant 8). `tx` ties
/// the handles' lifetime to the allocating transaction (invariant 9).
#[inline(always)]
pub unsafe fn store<'tx, F: Field>(tx: &'tx Tx, value: F::Loaded<'tx>) -> F {
    let _ = tx;
    // SAFETY: forwarded to the caller.
    unsafe { F::store(value) }
}

/// Reports the handles a field holds to the collector (used by the generated
/// [`Object::trace`]). Every field type of an object must implement it: plain data and
/// stored handles do; a container type implements it to visit the handles it holds.
///
/// # Safety
/// `trace_field` must visit every [`GcRef`] stored in the value (invariant 8).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a shared object",
    label = "not a shared-heap field type",
    note = "fields hold plain data (integers, floats, bool, char, (), arrays, tuples, `Copy` \
            types with #[derive(stm::Plain)]), handles `Gc<T>` / `Option<Gc<T>>`, or the \
            runtime's containers"
)]
pub unsafe trait TraceField: Field {
    /// Visits every stored handle.
    fn trace_field(&self, tracer: &mut Tracer);
}

// SAFETY: plain data holds no handles (invariant 8).
unsafe impl<T: Plain> TraceField for T {
    #[inline(always)]
    fn trace_field(&self, _tracer: &mut Tracer) {}
}
// SAFETY: visits the one handle (invariant 8).
unsafe impl<U: Object> TraceField for GcRef<U> {
    fn trace_field(&self, tracer: &mut Tracer) {
        tracer.visit(*self);
    }
}
// SAFETY: visits the handle if there is one (invariant 8).
unsafe impl<U: Object> TraceField for Option<GcRef<U>> {
    fn trace_field(&self, tracer: &mut Tracer) {
        if let Some(r) = self {
            tracer.visit(*r);
        }
    }
}

/// Visits one field (generated `Object::trace`); also the check, spanned on the field's
/// type, that the type may live in a shared object.
#[inline(always)]
pub fn trace_field<F: TraceField>(field: &F, tracer: &mut Tracer) {
    field.trace_field(tracer);
}

/// The type a reference points to, inferred without coercion: `let _: PhantomData<T> =
/// type_of(x)` checks that `x: &T` exactly (a deref or unsizing coercion could make a
/// `&&'static u8` pass for a `&u8`).
#[inline(always)]
pub fn type_of<T: ?Sized>(_: &T) -> PhantomData<T> {
    PhantomData
}

/// Implemented by `impl_plain!` next to its `unsafe impl Plain`: its body destructures the
/// type exhaustively against the field list the impl is bounded by, so that the list is
/// checked to be the type's own. Never called.
pub trait CheckedLayout {
    /// Type-checks the destructuring; does nothing.
    fn __stm_check_layout(&self);
}

/// A raw-pointer projection from a `T` onto one of its fields, of type `F`:
/// `|p| addr_of!((*p).field)`. The type parameters let the compiler type the closure from
/// the receiver before it checks the closure's body.
pub struct Proj<T: ?Sized, F: ?Sized, C>(C, PhantomData<fn(*mut T) -> *const F>);

impl<T: ?Sized, F: ?Sized, C: Fn(*mut T) -> *const F> Proj<T, F, C> {
    /// A projection from the type `witness` accesses (a handle's object type, or a plain
    /// receiver's type); `witness` only fixes `T` so that the closure can be typed.
    ///
    /// # Safety
    /// Called with a pointer to a live `T`, `c` must return a pointer to one of its fields
    /// (a place inside the same allocation) without reading or writing through it.
    #[inline(always)]
    pub unsafe fn of<W: Witness<Target = T>>(witness: &W, c: C) -> Self {
        let _ = witness;
        Proj(c, PhantomData)
    }

    #[inline(always)]
    fn get(&self) -> impl Fn(*mut T) -> *mut F + '_ {
        move |p| (self.0)(p).cast_mut()
    }
}

/// What a projection starts from, for each kind of receiver.
pub trait Witness {
    /// The struct whose field is projected.
    type Target: ?Sized;
}
impl<T> Witness for Gc<'_, T> {
    type Target = T;
}
impl<T> Witness for HandleTag<'_, T> {
    type Target = T;
}
impl<X: ?Sized> Witness for PlainRef<'_, X> {
    type Target = X;
}
impl<X: ?Sized> Witness for PlainMut<'_, X> {
    type Target = X;
}

/// Builds a [`Proj`] onto a field of what `$w` accesses: `field!(h, balance)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __stm_field {
    ($w:ident, $f:ident) => {
        // SAFETY: (invariant 19) the closure only computes the address of a field of the value
        // it is given (`addr_of!` never reads), which is `Proj::of`'s contract. `$w` is a local
        // binding (a handle or a tag the macro made), so nothing of the user's runs in this
        // block beyond naming a field (invariant 12).
        {
            let __stm_w = &$w;
            unsafe { $crate::__private::Proj::of(__stm_w, |p| ::core::ptr::addr_of!((*p).$f)) }
        }
    };
}
pub use crate::__stm_field as field;

// ---- What the proc macros' output needs `unsafe` for ----
//
// The proc macros emit no `unsafe` token at all. Every unsafe step of their output is written
// by one of the `macro_rules!` macros below, whose bodies name everything through `$crate`:
// `$crate` always resolves to this crate, whatever the user's code calls it or shadows, so the
// soundness of these steps never depends on a path the user chooses (`crate = path`,
// `extern crate self as stm_runtime`, a `use` in the function body). A user who replaces one
// of these macros with their own writes their own `unsafe` (invariant 12).

/// Allocates an object from a struct literal inside transactional code:
/// `new_object!(tx, [Node] { key: k, next: Some(h) })` (the type's path in brackets). Every
/// field value is evaluated first, outside any `unsafe` block, as the transaction's value of
/// the field (`F::Loaded<'tx>`, e.g. a `Gc<'tx, T>` for a handle field), then converted to
/// its stored form straight into the literal that `Tx::alloc` takes.
#[doc(hidden)]
#[macro_export]
macro_rules! __stm_new_object {
    ($tx:expr, [$(::)? $($seg:ident)::+ $(::<$($gen:ty),* $(,)?>)?] { $($field:ident : $value:expr),* $(,)? }) => {
        match ($tx, ($($value,)*)) {
            (__stm_tx, ($($field,)*)) => $crate::__private::alloc_object(
                __stm_tx,
                $($seg)::+ $(::<$($gen),*>)? {
                    // SAFETY: each value is a `F::Loaded<'tx>` of this transaction (the
                    // signature of `store` ties it to `__stm_tx`, invariant 9), converted
                    // straight into the object that `__stm_tx` allocates (`store`'s contract,
                    // invariant 8).
                    $($field: unsafe { $crate::__private::store(__stm_tx, $field) },)*
                },
            ),
        }
    };
}
pub use crate::__stm_new_object as new_object;

/// Allocates an `#[stm::object]` value in the transaction `tx`, handles included, from any
/// transaction closure: `stm::alloc!(tx, Node { key: 1, next: Some(other) })`. (A plain
/// `tx.alloc(Node { .. })` works too when the handle fields are `None`; in
/// `#[stm::transactional]` code write `Gc::new(Node { .. })`.) Every field is written out as
/// `name: value`; a handle field takes a `Gc` of this transaction.
///
/// ```
/// use stm_runtime as stm;
/// use stm::{Gc, Stm};
///
/// #[stm::object]
/// struct Node {
///     key: u64,
///     next: Option<Gc<Node>>,
/// }
///
/// let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
/// let head = stm.atomically(|tx| {
///     let tail = tx.alloc(Node { key: 2, next: None });
///     let head = stm::alloc!(tx, Node { key: 1, next: Some(tail) });
///     tx.root(head)
/// });
/// # let _ = head;
/// ```
#[macro_export]
macro_rules! alloc {
    ($tx:expr, $($seg:ident)::+ $(::<$($gen:ty),* $(,)?>)? { $($field:ident : $value:expr),* $(,)? }) => {
        $crate::__stm_new_object!($tx, [$($seg)::+ $(::<$($gen),*>)?] { $($field: $value),* })
    };
}

/// `Tx::alloc` for [`new_object!`]: `#[stm::object]` types only (never a `Plain` type,
/// whose value `Gc::get` would hand back whole, stored handles included).
#[inline(always)]
#[track_caller]
pub fn alloc_object<T: ObjectLayout>(tx: &Tx, value: T) -> Gc<'_, T> {
    tx.alloc(value)
}

/// The trait impls of an `#[stm::object]` struct (the proc macro writes the struct itself).
/// Sound for any input, since safe code can invoke it too: the field list is checked against
/// the struct (exhaustive destructuring, exact types), and every listed type must be a
/// `TraceField`. Generics come as parameter names and `Type: Path` predicates only, so no
/// input can split the impl headers.
///
/// `Clone` and `Copy`, a `Deref` to [`NoFields`] (so no other `Deref` can exist),
/// [`ObjectLayout`], and [`Object`] with a `trace` that destructures the value exhaustively
/// (a field missing from the list is a compile error) and checks every field's type against
/// [`TraceField`].
#[doc(hidden)]
#[macro_export]
macro_rules! __stm_object_impls {
    (
        impl [$($g:ident),* $(,)?] $name:ident
        where [$($wt:ty : $wb:path),* $(,)?] plain [$($p:ident),* $(,)?] object [$($o:ident),* $(,)?]
        fields { $($field:ident : $ty:ty),* $(,)? }
    ) => {
        impl<$($g),*> ::core::clone::Clone for $name<$($g),*>
        where $($wt: $wb,)* $($p: $crate::Plain,)* $($o: $crate::Object,)*
        {
            #[inline(always)]
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$($g),*> ::core::marker::Copy for $name<$($g),*>
        where $($wt: $wb,)* $($p: $crate::Plain,)* $($o: $crate::Object,)*
        {}

        // Field syntax through handles goes through raw-pointer projections, which must never
        // auto-deref into another type: this impl makes any other `Deref` impl a conflict, and
        // its target has no fields.
        impl<$($g),*> ::core::ops::Deref for $name<$($g),*>
        where $($wt: $wb,)* $($p: $crate::Plain,)* $($o: $crate::Object,)*
        {
            type Target = $crate::__private::NoFields;
            fn deref(&self) -> &$crate::__private::NoFields {
                &$crate::__private::NoFields
            }
        }

        // SAFETY: the `Deref` impl above is the type's only one and its target has no
        // fields, so field projections name the type's own fields (`ObjectLayout`'s contract).
        unsafe impl<$($g),*> $crate::__private::ObjectLayout for $name<$($g),*>
        where $($wt: $wb,)* $($p: $crate::Plain,)* $($o: $crate::Object,)*
        {}

        // SAFETY (`Object`'s contract, invariants 6 and 8): the type is `Copy` and `'static`
        // (rustc checks the supertraits; type parameters are `Plain` or `Object`); every field
        // is a `TraceField` (checked below, against the field's declared type), which is a
        // `Field`; `trace` visits every field (the destructuring is exhaustive) and
        // `TraceField` impls visit every stored handle; safe code cannot build a value holding
        // a stored handle (none exists outside the heap, invariant 8).
        unsafe impl<$($g),*> $crate::Object for $name<$($g),*>
        where $($wt: $wb,)* $($p: $crate::Plain,)* $($o: $crate::Object,)*
        {
            fn trace(&self, tracer: &mut $crate::Tracer) {
                // Exhaustive: a field missing from the list fails to compile. Each field's
                // type must be exactly the listed one (no coercion: `type_of` infers it).
                let Self { $($field),* } = self;
                $(
                    let __stm_t = $crate::__private::type_of($field);
                    let _: ::core::marker::PhantomData<$ty> = __stm_t;
                    $crate::__private::trace_field::<$ty>($field, tracer);
                )*
                let _ = tracer;
            }
        }
    };
}
pub use crate::__stm_object_impls as object_impls;

/// `derive(Plain)`'s impl: `Plain` for the type, on condition that every field type is
/// `Plain` (bounds that name this crate's `Plain` through `$crate`). Sound for any input,
/// since safe code can invoke it too: the description is checked against the type by an
/// exhaustive destructuring (every variant, every field, braced patterns also for tuple
/// fields) with exact field types.
///
/// ```text
/// impl_plain! { impl [T] Dir where [] enum { L { 0: __f0: T }, R { x: __f1: u8 } } }
/// impl_plain! { impl [] Point where [] struct { x: __f0: i32, y: __f1: i32 } }
/// ```
///
/// Generics come as parameter names and `Type: Path` predicates only (the proc macro
/// normalizes bounds to that form), so no input can split the impl headers.
#[doc(hidden)]
#[macro_export]
macro_rules! __stm_impl_plain {
    (
        impl [$($g:ident),* $(,)?] $name:ident where [$($wt:ty : $wb:path),* $(,)?]
        struct { $($field:tt : $bind:ident : $ty:ty),* $(,)? }
    ) => {
        // SAFETY: as in the enum arm.
        unsafe impl<$($g),*> $crate::Plain for $name<$($g),*> where $($wt: $wb,)* $($ty: $crate::Plain,)* {}
        impl<$($g),*> $crate::__private::CheckedLayout for $name<$($g),*>
        where $($wt: $wb,)* $($ty: $crate::Plain,)*
        {
            fn __stm_check_layout(&self) {
                let Self { $($field: $bind),* } = self;
                $(let __stm_t = $crate::__private::type_of($bind);
                  let _: ::core::marker::PhantomData<$ty> = __stm_t;)*
            }
        }
    };
    (
        impl [$($g:ident),* $(,)?] $name:ident where [$($wt:ty : $wb:path),* $(,)?]
        enum { $($variant:ident { $($field:tt : $bind:ident : $ty:ty),* $(,)? }),* $(,)? }
    ) => {
        // SAFETY (`Plain`'s contract): every field is `Plain` (the bounds), and the field
        // list is the type's own (checked by `CheckedLayout` next to this impl).
        unsafe impl<$($g),*> $crate::Plain for $name<$($g),*> where $($wt: $wb,)* $($($ty: $crate::Plain,)*)* {}
        impl<$($g),*> $crate::__private::CheckedLayout for $name<$($g),*>
        where $($wt: $wb,)* $($($ty: $crate::Plain,)*)*
        {
            fn __stm_check_layout(&self) {
                match self {
                    $(Self::$variant { $($field: $bind),* } => {
                        $(let __stm_t = $crate::__private::type_of($bind);
                          let _: ::core::marker::PhantomData<$ty> = __stm_t;)*
                    })*
                }
            }
        }
    };
}
pub use crate::__stm_impl_plain as impl_plain;

/// A copy of a shared object's field, read through a handle. It dereferences to the value but
/// not mutably: changing a copy would silently change nothing in the object.
#[derive(Clone, Copy, Debug)]
pub struct ReadOnly<T>(pub T);

impl<T> Deref for ReadOnly<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> ReadOnly<T> {
    /// The copy as a place for the rest of the statement. Generated code writes
    /// `(*x.__stm_place())`: a method receiver's temporary is not extended by `let r = &..`,
    /// so a reference to the copy cannot be kept past the statement (it would go stale).
    #[inline(always)]
    pub fn __stm_place(&self) -> &T {
        &self.0
    }
}

/// An ordinary field borrowed through a plain receiver (the plain twin of [`ReadOnly`]).
pub struct PlainOut<'a, F: ?Sized>(&'a F);

impl<'a, F: ?Sized> PlainOut<'a, F> {
    /// The field itself, borrowed as long as the receiver.
    #[inline(always)]
    pub fn __stm_place(&self) -> &'a F {
        self.0
    }
}

/// An ordinary field borrowed mutably through a plain receiver (the twin of [`WriteBack`]).
pub struct PlainOutMut<'a, F: ?Sized>(&'a mut F);

impl<'a, F: ?Sized> PlainOutMut<'a, F> {
    /// The field itself, borrowed as long as the receiver.
    #[inline(always)]
    pub fn __stm_place_mut(self) -> &'a mut F {
        self.0
    }
}

impl<F: ?Sized> Deref for PlainOutMut<'_, F> {
    type Target = F;
    #[inline(always)]
    fn deref(&self) -> &F {
        self.0
    }
}

impl<F: ?Sized> DerefMut for PlainOutMut<'_, F> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut F {
        self.0
    }
}

/// A copy of a shared object's field used as a mutable place (`&mut h.f`, `h.f.push(..)`,
/// `h.arr[i] = v`): if it was changed, it is written back (write barrier + store) when the
/// guard is dropped, at the end of the statement, also while unwinding (a panic caught
/// inside the transaction must not lose it).
///
/// While the guard lives, the field is borrowed: a write to it by other code (which the
/// guard's write-back would silently overwrite) panics, and so does a second guard on it,
/// as rustc rejects both on an ordinary struct (see `FLAG_GUARDED`).
pub struct WriteBack<'tx, T: Object, F: Field, C: Fn(*mut T) -> *const F> {
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    value: Option<F::Loaded<'tx>>,
    dirty: bool,
    start: u32,
    len: u32,
}

impl<'tx, T: Object, F: Field, C: Fn(*mut T) -> *const F> Deref for WriteBack<'tx, T, F, C> {
    type Target = F::Loaded<'tx>;
    #[inline(always)]
    fn deref(&self) -> &Self::Target {
        self.value.as_ref().expect("value present until drop")
    }
}

impl<'tx, T: Object, F: Field, C: Fn(*mut T) -> *const F> DerefMut for WriteBack<'tx, T, F, C> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.dirty = true;
        self.value.as_mut().expect("value present until drop")
    }
}

impl<'tx, T: Object, F: Field, C: Fn(*mut T) -> *const F> WriteBack<'tx, T, F, C> {
    /// The copy as a mutable place for the rest of the statement (see
    /// [`ReadOnly::__stm_place`]); marks it changed.
    #[inline(always)]
    pub fn __stm_place_mut(&mut self) -> &mut F::Loaded<'tx> {
        self
    }
}

impl<T: Object, F: Field, C: Fn(*mut T) -> *const F> Drop for WriteBack<'_, T, F, C> {
    fn drop(&mut self) {
        crate::commit::end_guard(self.gc.tx.local(), self.gc.granule, self.start, self.len);
        if self.dirty {
            if let Some(v) = self.value.take() {
                // SAFETY: `proj` is a field projection (`Proj::of`'s contract, invariant 19).
                unsafe { self.gc.write_field(self.proj.get(), v) }
            }
        }
    }
}

/// Reads a field through a handle (read barrier + copy).
#[inline(always)]
pub fn read<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
) -> F::Loaded<'tx> {
    // SAFETY: `proj` is a field projection (`Proj::of`'s contract, invariant 19).
    unsafe { gc.read_field(proj.get()) }
}

/// Writes a field through a handle (write barrier + store).
#[inline(always)]
#[track_caller]
pub fn write<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    value: F::Loaded<'tx>,
) {
    // SAFETY: `proj` is a field projection (`Proj::of`'s contract, invariant 19).
    unsafe { gc.write_field(proj.get(), value) }
}

/// Reads a field, lets `f` change the copy, writes it back (`h.f += x`): one mutable borrow
/// of the field (see [`Gc::update`]).
#[inline(always)]
#[track_caller]
pub fn update<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F, R>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
) -> R {
    // SAFETY: `proj` is a field projection (`Proj::of`'s contract, invariant 19).
    unsafe { gc.update_field(proj.get(), f) }
}

/// A field as a mutable place: a copy written back at the end of the statement if changed.
#[inline(always)]
#[track_caller]
pub fn place<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
) -> WriteBack<'tx, T, F, C> {
    let field = proj.get()(gc.value_ptr());
    let (start, len) = gc.range_of(field);
    // SAFETY: `proj` is a field projection (`Proj::of`'s contract, invariant 19).
    let value = unsafe { gc.read_field(proj.get()) };
    crate::commit::begin_guard(
        gc.tx.local(),
        gc.granule,
        start as u32,
        len as u32,
        std::panic::Location::caller(),
    );
    WriteBack {
        gc,
        proj,
        value: Some(value),
        dirty: false,
        start: start as u32,
        len: len as u32,
    }
}

/// Makes the running transaction inevitable before an irreversible effect.
#[inline(always)]
#[track_caller]
pub fn inevitable(tx: &Tx) {
    tx.become_inevitable();
}

/// The kind of a field access whose receiver is a handle.
#[derive(Clone, Copy)]
pub struct HandleTag<'tx, T>(pub Gc<'tx, T>);

/// The kind of a read whose receiver is not a handle: ordinary field access.
pub struct PlainRef<'a, X: ?Sized>(&'a X);

impl<X: ?Sized> Clone for PlainRef<'_, X> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<X: ?Sized> Copy for PlainRef<'_, X> {}

/// The kind of a write whose receiver is not a handle: ordinary field access.
pub struct PlainMut<'a, X: ?Sized>(&'a mut X);

/// A read's receiver, borrowed: `Recv(&x).__stm_rkind()`. Wrapping it in a type that is
/// not a reference makes the plain fallback (by `&self`) come strictly after the handle impls
/// (by value), whatever number of references the receiver has.
pub struct Recv<'a, X: ?Sized>(pub &'a X);

/// Picks [`HandleTag`] for a handle receiver, also behind references (found first: by value).
pub trait HandleRead<'tx, T> {
    /// The handle kind.
    fn __stm_rkind(self) -> HandleTag<'tx, T>;
}
impl<'tx, T: ObjectLayout> HandleRead<'tx, T> for Recv<'_, Gc<'tx, T>> {
    #[inline(always)]
    fn __stm_rkind(self) -> HandleTag<'tx, T> {
        HandleTag(*self.0)
    }
}
impl<'tx, T: ObjectLayout> HandleRead<'tx, T> for Recv<'_, &Gc<'tx, T>> {
    #[inline(always)]
    fn __stm_rkind(self) -> HandleTag<'tx, T> {
        HandleTag(**self.0)
    }
}
impl<'tx, T: ObjectLayout> HandleRead<'tx, T> for Recv<'_, &&Gc<'tx, T>> {
    #[inline(always)]
    fn __stm_rkind(self) -> HandleTag<'tx, T> {
        HandleTag(***self.0)
    }
}
impl<'tx, T: ObjectLayout> HandleRead<'tx, T> for Recv<'_, &mut Gc<'tx, T>> {
    #[inline(always)]
    fn __stm_rkind(self) -> HandleTag<'tx, T> {
        HandleTag(**self.0)
    }
}

/// Picks [`PlainRef`] for any other receiver (found second: by reference to the wrapper).
pub trait PlainRead<'a, X: ?Sized> {
    /// The plain kind.
    fn __stm_rkind(&self) -> PlainRef<'a, X>;
}
impl<'a, X: ?Sized> PlainRead<'a, X> for Recv<'a, X> {
    #[inline(always)]
    fn __stm_rkind(&self) -> PlainRef<'a, X> {
        PlainRef(self.0)
    }
}

/// Picks [`HandleTag`] for a handle receiver of a write (found first: by value).
pub trait HandleWrite<'tx, T> {
    /// The handle kind.
    fn __stm_wkind(self) -> HandleTag<'tx, T>;
}
impl<'tx, T: ObjectLayout> HandleWrite<'tx, T> for Gc<'tx, T> {
    #[inline(always)]
    fn __stm_wkind(self) -> HandleTag<'tx, T> {
        HandleTag(self)
    }
}
impl<'tx, T: ObjectLayout> HandleWrite<'tx, T> for &Gc<'tx, T> {
    #[inline(always)]
    fn __stm_wkind(self) -> HandleTag<'tx, T> {
        HandleTag(*self)
    }
}
impl<'tx, T: ObjectLayout> HandleWrite<'tx, T> for &&Gc<'tx, T> {
    #[inline(always)]
    fn __stm_wkind(self) -> HandleTag<'tx, T> {
        HandleTag(**self)
    }
}

/// Picks [`PlainMut`] for any other receiver of a write (found second: by `&mut`).
pub trait PlainWrite {
    /// The plain kind.
    fn __stm_wkind(&mut self) -> PlainMut<'_, Self>;
}
impl<X: ?Sized> PlainWrite for X {
    #[inline(always)]
    fn __stm_wkind(&mut self) -> PlainMut<'_, Self> {
        PlainMut(self)
    }
}

impl<'tx, T: ObjectLayout> HandleTag<'tx, T> {
    /// Reads the field (read barrier).
    #[inline(always)]
    pub fn read<F: Field, C: Fn(*mut T) -> *const F>(
        self,
        _plain: impl FnOnce(&T) -> &F,
        proj: Proj<T, F, C>,
    ) -> ReadOnly<F::Loaded<'tx>> {
        ReadOnly(read(self.0, proj))
    }

    /// The field as a mutable place (written back if changed).
    #[inline(always)]
    pub fn place<F: Field, C: Fn(*mut T) -> *const F>(
        self,
        _plain: impl FnOnce(&mut T) -> &mut F,
        proj: Proj<T, F, C>,
    ) -> WriteBack<'tx, T, F, C> {
        place(self.0, proj)
    }

    /// Assigns the field (write barrier).
    #[inline(always)]
    #[track_caller]
    pub fn assign<F: Field, C: Fn(*mut T) -> *const F>(
        self,
        _plain: impl FnOnce(&mut T) -> &mut F,
        proj: Proj<T, F, C>,
        value: F::Loaded<'tx>,
    ) {
        write(self.0, proj, value)
    }

    /// Updates the field in place (`+=` and friends).
    #[inline(always)]
    #[track_caller]
    pub fn update<F: Field, C: Fn(*mut T) -> *const F, R>(
        self,
        _plain: impl FnOnce(&mut T) -> &mut F,
        proj: Proj<T, F, C>,
        f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
    ) -> R {
        update(self.0, proj, f)
    }
}

impl<'a, X: ?Sized> PlainRef<'a, X> {
    /// Ordinary field access.
    #[inline(always)]
    pub fn read<F: ?Sized + 'a, C: Fn(*mut X) -> *const F>(
        self,
        plain: impl FnOnce(&'a X) -> &'a F,
        _proj: Proj<X, F, C>,
    ) -> PlainOut<'a, F> {
        PlainOut(plain(self.0))
    }
}

impl<'a, X: ?Sized> PlainMut<'a, X> {
    /// Ordinary mutable field access.
    #[inline(always)]
    pub fn place<F: ?Sized + 'a, C: Fn(*mut X) -> *const F>(
        self,
        plain: impl FnOnce(&'a mut X) -> &'a mut F,
        _proj: Proj<X, F, C>,
    ) -> PlainOutMut<'a, F> {
        PlainOutMut(plain(self.0))
    }

    /// Ordinary assignment.
    #[inline(always)]
    pub fn assign<F: 'a, C: Fn(*mut X) -> *const F>(
        self,
        plain: impl FnOnce(&'a mut X) -> &'a mut F,
        _proj: Proj<X, F, C>,
        value: F,
    ) {
        *plain(self.0) = value;
    }

    /// Ordinary compound assignment.
    #[inline(always)]
    pub fn update<F: ?Sized + 'a, C: Fn(*mut X) -> *const F, R>(
        self,
        plain: impl FnOnce(&'a mut X) -> &'a mut F,
        _proj: Proj<X, F, C>,
        f: impl FnOnce(&mut F) -> R,
    ) -> R {
        f(plain(self.0))
    }
}

// ---- `#[stm::in_transactions]`: loops cut at break points ----

pub use crate::series::{atomic_loop, loop_in_transactions, Exit};

/// `?` inside a loop of an `#[stm::in_transactions]` function: the loop body runs in a closure,
/// so the generated code splits `expr?` itself (stable Rust has no `Try` trait to name).
pub trait Branch {
    /// The value on success.
    type Output;
    /// What an early return carries (`Result<Infallible, E>` or `Option<Infallible>`).
    type Residual;
    /// Splits the value into going on or returning early.
    fn __stm_branch(self) -> std::ops::ControlFlow<Self::Residual, Self::Output>;
}

impl<T, E> Branch for Result<T, E> {
    type Output = T;
    type Residual = Result<std::convert::Infallible, E>;
    #[inline(always)]
    fn __stm_branch(self) -> std::ops::ControlFlow<Self::Residual, T> {
        match self {
            Ok(v) => std::ops::ControlFlow::Continue(v),
            Err(e) => std::ops::ControlFlow::Break(Err(e)),
        }
    }
}

impl<T> Branch for Option<T> {
    type Output = T;
    type Residual = Option<std::convert::Infallible>;
    #[inline(always)]
    fn __stm_branch(self) -> std::ops::ControlFlow<Self::Residual, T> {
        match self {
            Some(v) => std::ops::ControlFlow::Continue(v),
            None => std::ops::ControlFlow::Break(None),
        }
    }
}

/// The function's return value built from the residual of a `?` (as `?` itself converts the
/// error with `From`).
pub trait FromResidual<R> {
    /// The early return value.
    fn __stm_from_residual(residual: R) -> Self;
}

impl<T, E, F: From<E>> FromResidual<Result<std::convert::Infallible, E>> for Result<T, F> {
    #[inline(always)]
    fn __stm_from_residual(residual: Result<std::convert::Infallible, E>) -> Self {
        match residual {
            Err(e) => Err(F::from(e)),
            Ok(never) => match never {},
        }
    }
}

impl<T> FromResidual<Option<std::convert::Infallible>> for Option<T> {
    #[inline(always)]
    fn __stm_from_residual(_: Option<std::convert::Infallible>) -> Self {
        None
    }
}

/// A local that a loop with break points changes: its value at the last commit is restored
/// after an abort, so it must be `Clone`, and `Send`: a copy of an `Rc` shares its contents
/// with the original, so an aborted attempt's changes to them (an `Rc<Cell<_>>` counter)
/// would survive the restore.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is changed by a loop with break points, so it must be `Clone` and `Send`",
    label = "this local is carried across break points",
    note = "after an abort the loop restarts at its last break point with the value the local \
            had there (a copy, which must not share its contents with the original as an `Rc` \
            does); keep it in a `Clone + Send` type, or in a shared object reached through a \
            `Root`, or mark the loop `#[stm::atomic]`"
)]
pub trait Carried: Clone + Send {}
impl<T: Clone + Send> Carried for T {}

/// Checks (at compile time) that a carried local is [`Carried`].
#[inline(always)]
pub fn carried<T: Carried>(_: &T) {}

/// The iterator of a `for` loop with break points: it is part of the carried state.
#[diagnostic::on_unimplemented(
    message = "the iterator of a `for` loop with break points must be `Clone` and `Send`",
    label = "this iterator is carried across break points",
    note = "after an abort the loop restarts at its last break point with the iterator as it \
            was there (a copy); iterate over a range or a slice, collect into a `Vec` first, or \
            mark the loop `#[stm::atomic]`"
)]
pub trait CarriedIter: Iterator + Clone + Send {}
impl<I: Iterator + Clone + Send> CarriedIter for I {}

/// `IntoIterator::into_iter` for a `for` loop with break points, checking it is [`CarriedIter`].
#[inline(always)]
pub fn carried_iter<I: IntoIterator>(iter: I) -> I::IntoIter
where
    I::IntoIter: CarriedIter,
{
    iter.into_iter()
}
