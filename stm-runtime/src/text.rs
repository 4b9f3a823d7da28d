//! `TString`: text in the shared heap, a [`TVec<u8>`](crate::TVec) that always holds UTF-8.
//!
//! In an object, declare the field as `TString`; reading it inside a transaction gives a
//! [`GcString<'tx>`]. Text is copied in and out a card at a time (`TVec`'s bulk operations),
//! not byte by byte: appending or reading a string costs one walk down the vector's tree and
//! one barrier per [`CARD`](crate::CARD) bytes.

use std::fmt;

use crate::handle::{Field, Tracer};
use crate::tvec::{GcVec, TVec, VecHead};
use crate::tx::Tx;

/// The stored form of a text field (a vector of UTF-8 bytes).
#[repr(transparent)]
pub struct TString(TVec<u8>);

impl Clone for TString {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for TString {}
impl fmt::Debug for TString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TString({:?})", self.0)
    }
}

impl TString {
    /// A new, empty text allocated by `tx` (the same as [`GcString::new`]): in an object
    /// literal, `Gc::new(Entry { key: TString::from_str(tx, "k"), .. })`.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)] // the stored form is made by storing the loaded one
    pub fn new(tx: &Tx) -> GcString<'_> {
        GcString::new(tx)
    }

    /// A new text holding `s`, allocated by `tx` (the same as [`GcString::from_str`]).
    #[track_caller]
    #[allow(clippy::should_implement_trait)] // it allocates in a transaction: not `FromStr`
    pub fn from_str<'tx>(tx: &'tx Tx, s: &str) -> GcString<'tx> {
        GcString::from_str(tx, s)
    }
}

// SAFETY: the stored form is a `TVec<u8>` (`repr(transparent)`), loaded and stored through its
// `Field` impl (invariants 3 and 8); the bytes are UTF-8 because every way to write them
// (`GcString`'s methods) writes whole `str`s.
unsafe impl Field for TString {
    type Loaded<'tx> = GcString<'tx>;
    #[inline]
    unsafe fn load(self, tx: &Tx) -> GcString<'_> {
        // SAFETY: forwarded from the caller (the field was read out of `tx`'s snapshot).
        GcString(unsafe { self.0.load(tx) })
    }
    #[inline]
    unsafe fn store(v: GcString<'_>) -> Self {
        // SAFETY: forwarded from the caller (invariant 8).
        TString(unsafe { <TVec<u8> as Field>::store(v.0) })
    }
    fn trace(&self, tracer: &mut Tracer) {
        self.0.trace(tracer);
    }
}

// SAFETY: reports the vector's head, as `TVec`'s impl does (invariant 8).
unsafe impl crate::macro_support::TraceField for TString {
    fn trace_field(&self, tracer: &mut Tracer) {
        self.0.trace_field(tracer);
    }
}

/// Text in the shared heap, as seen by the transaction `'tx`: valid UTF-8 (every way to
/// write it writes whole `str`s; only [`GcString::from_root`] of a root of some other byte
/// vector can see other bytes, which [`Display`](fmt::Display) shows lossily).
///
/// ```
/// use stm_runtime::{GcString, Stm};
///
/// let stm = Stm::builder().segments(1).heap_size(4 << 20).build().unwrap();
/// let name = stm.atomically(|tx| {
///     let s = GcString::from_str(tx, "transactional ");
///     s.push_str("memory");
///     tx.root(s.as_vec().as_gc())
/// });
/// let text = stm.atomically(|tx| GcString::from_root(tx, &name).to_string());
/// assert_eq!(text, "transactional memory");
/// ```
#[derive(Clone, Copy)]
pub struct GcString<'tx>(GcVec<'tx, u8>);

impl<'tx> GcString<'tx> {
    /// A new, empty text allocated by `tx`.
    #[track_caller]
    pub fn new(tx: &'tx Tx) -> Self {
        GcString(GcVec::new(tx))
    }

    /// A new text holding `s`, allocated by `tx`.
    #[track_caller]
    #[allow(clippy::should_implement_trait)] // it allocates in a transaction: not `FromStr`
    pub fn from_str(tx: &'tx Tx, s: &str) -> Self {
        let t = GcString::new(tx);
        t.push_str(s);
        t
    }

    /// The text a root refers to (root it with `tx.root(text.as_vec().as_gc())`).
    ///
    /// # Panics
    /// As [`Root::get`](crate::Root::get).
    #[track_caller]
    pub fn from_root(tx: &'tx Tx, root: &crate::Root<VecHead<u8>>) -> Self {
        GcString(GcVec::from_root(tx, root))
    }

    /// The bytes, as a vector (for rooting it or comparing identities). Read-only: writing
    /// bytes that are not UTF-8 is only possible through [`GcString`]'s own methods.
    pub fn as_vec(self) -> ReadOnlyVec<'tx> {
        ReadOnlyVec(self.0)
    }

    /// Its length in bytes.
    pub fn len(self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// Appends `s` (a bulk copy: a card of bytes at a time).
    ///
    /// # Panics
    /// If the text would be longer than `u32::MAX` bytes, or the heap is full.
    #[track_caller]
    pub fn push_str(self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Appends one character.
    #[track_caller]
    pub fn push(self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }

    /// Empties it (the storage is kept for reuse).
    #[track_caller]
    pub fn clear(self) {
        self.0.clear();
    }

    /// The bytes, copied out (a card at a time).
    pub fn to_bytes(self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Whether it holds exactly `s`.
    pub fn eq_str(self, s: &str) -> bool {
        self.len() == s.len() && self.to_bytes() == s.as_bytes()
    }

    /// Whether two handles name the same text.
    pub fn ptr_eq(self, other: GcString<'_>) -> bool {
        self.0.ptr_eq(other.0)
    }
}

impl fmt::Display for GcString<'_> {
    /// Copies the text out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match String::from_utf8(self.to_bytes()) {
            Ok(s) => f.write_str(&s),
            // Only from a root of a byte vector written otherwise (`from_root`).
            Err(e) => f.write_str(&String::from_utf8_lossy(e.as_bytes())),
        }
    }
}

impl fmt::Debug for GcString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<&str> for GcString<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.eq_str(other)
    }
}

/// A [`GcString`]'s bytes as a vector that can be read, rooted and compared, not written.
#[derive(Clone, Copy, Debug)]
pub struct ReadOnlyVec<'tx>(GcVec<'tx, u8>);

impl<'tx> ReadOnlyVec<'tx> {
    /// The vector's head object, to root it (`tx.root(v.as_gc())`).
    pub fn as_gc(self) -> crate::Gc<'tx, VecHead<u8>> {
        self.0.as_gc()
    }

    /// The number of bytes.
    pub fn len(self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// Byte `i`.
    ///
    /// # Panics
    /// If `i >= len`.
    #[track_caller]
    pub fn get(self, i: usize) -> u8 {
        self.0.get(i)
    }
}
