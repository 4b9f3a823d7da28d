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

/// A zero-sized proof that an object value was built by the macro's allocation code, which
/// converts every handle field from a `Gc` of the allocating transaction. Object structs carry
/// one as a hidden field, so safe code cannot build an object value holding a forged or stale
/// [`GcRef`] (as [`Object`]'s contract requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seal(());

impl Seal {
    /// # Safety
    /// The seal must only go into an object value whose stored handles all come from `Gc`
    /// handles of the transaction that allocates the value (through [`store`]).
    #[inline(always)]
    pub const unsafe fn new() -> Seal {
        Seal(())
    }
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

/// A promise, made in `unsafe` code by the macro, that a read barrier may be skipped: earlier
/// in this transaction attempt the object was allocated, or a read or write barrier ran on it
/// (read markers stay set for the whole attempt, and a write marks the object read too), so
/// a concurrent commit to it is still detected.
#[derive(Clone, Copy, Debug)]
pub struct Again(());

impl Again {
    /// # Safety
    /// Only for a read of a handle whose object this transaction attempt allocated, or
    /// already read or wrote.
    #[inline(always)]
    pub const unsafe fn new() -> Again {
        Again(())
    }
}

/// Converts a transaction's value of a field into its stored form (`Gc` -> `GcRef`).
/// `tx` only ties the handles' lifetime to the allocating transaction.
#[inline(always)]
pub fn store<'tx, F: Field>(tx: &'tx Tx, value: F::Loaded<'tx>) -> F {
    let _ = tx;
    F::store(value)
}

/// Reports the handles a field holds to the collector (used by the generated
/// [`Object::trace`]). Every field type of an object must implement it: plain data and
/// stored handles do; a container type implements it to visit the handles it holds.
///
/// # Safety
/// `trace_field` must visit every [`GcRef`] stored in the value.
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

// SAFETY: plain data holds no handles.
unsafe impl<T: Plain> TraceField for T {
    #[inline(always)]
    fn trace_field(&self, _tracer: &mut Tracer) {}
}
// SAFETY: visits the one handle.
unsafe impl<U: Object> TraceField for GcRef<U> {
    fn trace_field(&self, tracer: &mut Tracer) {
        tracer.visit(*self);
    }
}
// SAFETY: visits the handle if there is one.
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

/// Compile-time check that a type is plain data.
#[inline(always)]
pub const fn assert_plain<T: Plain>() {}

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
        // SAFETY: the closure only computes the address of a field of the value it is given
        // (`addr_of!` never reads), which is `Proj::of`'s contract. `$w` is a local binding
        // (a handle or a tag the macro made), so nothing of the user's runs in this block
        // beyond naming a field.
        unsafe { $crate::__private::Proj::of(&$w, |p| ::core::ptr::addr_of!((*p).$f)) }
    };
}
pub use crate::__stm_field as field;

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
/// guard is dropped, at the end of the statement.
pub struct WriteBack<'tx, T: Object, F: Field, C: Fn(*mut T) -> *const F> {
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    value: Option<F::Loaded<'tx>>,
    dirty: bool,
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
        // While unwinding, the attempt is being abandoned: nothing to write.
        if self.dirty && !std::thread::panicking() {
            if let Some(v) = self.value.take() {
                // SAFETY: `proj` is a field projection (Proj::new's contract).
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
    // SAFETY: `proj` is a field projection (Proj::new's contract).
    unsafe { gc.read_field(proj.get()) }
}

/// Reads a field through a handle without a read barrier (see [`Again`]).
#[inline(always)]
pub fn read_again<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    _again: Again,
) -> F::Loaded<'tx> {
    // SAFETY: `proj` is a field projection; the barrier already ran (`Again`).
    unsafe { gc.read_field_unbarriered(proj.get()) }
}

/// Writes a field through a handle (write barrier + store).
#[inline(always)]
#[track_caller]
pub fn write<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    value: F::Loaded<'tx>,
) {
    // SAFETY: `proj` is a field projection (Proj::new's contract).
    unsafe { gc.write_field(proj.get(), value) }
}

/// Reads a field, lets `f` change the copy, writes it back (`h.f += x`).
#[inline(always)]
#[track_caller]
pub fn update<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F, R>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
) -> R {
    // SAFETY: `proj` is a field projection (Proj::new's contract).
    let mut v = unsafe { gc.read_field(proj.get()) };
    let r = f(&mut v);
    // SAFETY: as above.
    unsafe { gc.write_field(proj.get(), v) };
    r
}

/// [`update`] without the read barrier (see [`Again`]).
#[inline(always)]
#[track_caller]
pub fn update_again<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F, R>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
    _again: Again,
    f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
) -> R {
    // SAFETY: `proj` is a field projection; the barrier already ran (caller).
    let mut v = unsafe { gc.read_field_unbarriered(proj.get()) };
    let r = f(&mut v);
    // SAFETY: as above.
    unsafe { gc.write_field(proj.get(), v) };
    r
}

/// A field as a mutable place: a copy written back at the end of the statement if changed.
#[inline(always)]
pub fn place<'tx, T: ObjectLayout, F: Field, C: Fn(*mut T) -> *const F>(
    gc: Gc<'tx, T>,
    proj: Proj<T, F, C>,
) -> WriteBack<'tx, T, F, C> {
    // SAFETY: `proj` is a field projection (Proj::new's contract).
    let value = unsafe { gc.read_field(proj.get()) };
    WriteBack {
        gc,
        proj,
        value: Some(value),
        dirty: false,
    }
}

/// Makes the running transaction inevitable before an irreversible effect.
#[inline(always)]
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

    /// Reads the field without a read barrier (see [`Again`]).
    #[inline(always)]
    pub fn read_again<F: Field, C: Fn(*mut T) -> *const F>(
        self,
        _plain: impl FnOnce(&T) -> &F,
        proj: Proj<T, F, C>,
        again: Again,
    ) -> ReadOnly<F::Loaded<'tx>> {
        ReadOnly(read_again(self.0, proj, again))
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

    /// Updates the field in place without the read barrier (see [`Again`]).
    #[inline(always)]
    #[track_caller]
    pub fn update_again<F: Field, C: Fn(*mut T) -> *const F, R>(
        self,
        _plain: impl FnOnce(&mut T) -> &mut F,
        proj: Proj<T, F, C>,
        again: Again,
        f: impl FnOnce(&mut F::Loaded<'tx>) -> R,
    ) -> R {
        update_again(self.0, proj, again, f)
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

    /// Ordinary field access (no barrier to skip).
    #[inline(always)]
    pub fn read_again<F: ?Sized + 'a, C: Fn(*mut X) -> *const F>(
        self,
        plain: impl FnOnce(&'a X) -> &'a F,
        _proj: Proj<X, F, C>,
        _again: Again,
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

    /// Ordinary compound assignment (no barrier to skip).
    #[inline(always)]
    pub fn update_again<F: ?Sized + 'a, C: Fn(*mut X) -> *const F, R>(
        self,
        plain: impl FnOnce(&'a mut X) -> &'a mut F,
        _proj: Proj<X, F, C>,
        _again: Again,
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
/// after an abort, so it must be `Clone`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is changed by a loop with break points, so it must be `Clone`",
    label = "this local is carried across break points",
    note = "after an abort the loop restarts at its last break point with the value the local \
            had there (a copy); keep it in a `Clone` type, or in a shared object reached \
            through a `Root`, or mark the loop `#[stm::atomic]`"
)]
pub trait Carried: Clone {}
impl<T: Clone> Carried for T {}

/// Checks (at compile time) that a carried local is [`Carried`].
#[inline(always)]
pub fn carried<T: Carried>(_: &T) {}

/// The iterator of a `for` loop with break points: it is part of the carried state.
#[diagnostic::on_unimplemented(
    message = "the iterator of a `for` loop with break points must be `Clone`",
    label = "this iterator is carried across break points",
    note = "after an abort the loop restarts at its last break point with the iterator as it \
            was there (a copy); iterate over a range or a slice, collect into a `Vec` first, or \
            mark the loop `#[stm::atomic]`"
)]
pub trait CarriedIter: Iterator + Clone {}
impl<I: Iterator + Clone> CarriedIter for I {}

/// `IntoIterator::into_iter` for a `for` loop with break points, checking it is [`CarriedIter`].
#[inline(always)]
pub fn carried_iter<I: IntoIterator>(iter: I) -> I::IntoIter
where
    I::IntoIter: CarriedIter,
{
    iter.into_iter()
}
