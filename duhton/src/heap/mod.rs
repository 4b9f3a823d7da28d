//! Every Duhton object, as objects of the shared STM heap.
//!
//! * [`Obj`] is the one object type of Duhton values: conses, lists, containers and symbols
//!   (`kind` says which). Ints and `None` are not objects: a [`Value`] holds them inline, and
//!   a value *slot* inside an object is an `i32`, an optional handle and a tag bit.
//! * [`Node`] is a node of a list's item tree (see [`list`]).
//! * [`Frame`] and [`Entry`] are a call frame: a chain of bindings, each with a value slot
//!   and a function slot. The global frame lives in the symbols themselves (each symbol
//!   holds its global value and function), so a global lookup is one object read.
//! * [`Call`] is a queued transaction (`(transaction f args...)`): the function body and the
//!   callee frame with its arguments already bound.
//! * [`Globals`] is the root object: the symbol table and the main program's pending calls.
//!
//! Immutable parts (an object's kind, a cons's car and cdr, a symbol's id) are read without a
//! read barrier, as the original did (`/* IMMUTABLE */`): nothing ever writes them after the
//! allocating transaction commits, so no conflict can involve them. Symbols' global slots
//! and frames are read without one too, because no two transactions ever use them at the
//! same time (see [`global_value`] and [`Fr`]). Everything else goes through the barriers,
//! written by `#[stm::transactional]` or explicitly; every write runs the write barrier.
//!
//! One file per kind of object, as the original splits them: [`cons`], [`list`],
//! [`container`], [`symbol`], [`frame`] (call frames), [`call`] (queued transactions) and
//! [`globals`] (the root object). This file holds what they share: the object type, its
//! kinds and value slots, and [`Value`].

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

pub mod call;
pub mod cons;
pub mod container;
pub mod frame;
pub mod globals;
pub mod list;
pub mod symbol;

pub use call::{call_parts, new_call, Call};
pub use cons::{cons_parts, new_cons};
pub use container::{container_get, container_set, new_container};
pub use frame::{find_entry, new_frame, set_frame_function, Entry, Fr, Frame, Spare};
pub use globals::{new_globals, pop_pending, push_pending, symtab, take_pending, Globals};
pub use list::{new_list, Node};
pub use symbol::{
    global_function, global_value, new_symbol, set_global_function, set_global_value, symbol_id,
};

/// What a heap [`Obj`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, stm::Plain)]
pub enum Kind {
    /// An immutable pair; slot a is the car, slot b the cdr.
    Cons,
    /// A mutable growable array: up to two items in slots a and b, then a tree of
    /// [`Node`]s (see [`crate::list`]).
    List,
    /// A mutable one-slot box; slot a is the content.
    Container,
    /// An interned symbol; `bi` is its id; slot a is its global value, `b` its global user
    /// function.
    Symbol,
}

/// Tag bit: slot a holds an int (when `a` is `None`).
pub const A_INT: u8 = 1;
/// Tag bit: slot b holds an int (when `b` is `None`).
pub const B_INT: u8 = 2;
/// Tag bit (symbols and frame entries): a variable binding exists.
pub const HAS_VALUE: u8 = 4;
/// Tag bit (frame entries): a function binding exists.
pub const HAS_FUNC: u8 = 8;

/// A Duhton object in the shared heap (cons, list, container or symbol).
#[stm::object]
pub struct Obj {
    /// What the object is (never changes).
    pub kind: Kind,
    /// Tag bits ([`A_INT`], [`B_INT`], [`HAS_VALUE`]).
    pub tags: u8,
    /// Slot a's int, or a list's length.
    pub ai: i32,
    /// Slot b's int, a list's tree height, or a symbol's id.
    pub bi: i32,
    /// Slot a's object.
    pub a: Option<Gc<Obj>>,
    /// Slot b's object.
    pub b: Option<Gc<Obj>>,
    /// A list's item tree.
    pub node: Option<Gc<Node>>,
}

/// A Duhton value as the interpreter handles it: ints and `None` inline, objects by handle.
#[derive(Clone, Copy, Debug)]
pub enum Value<'tx> {
    /// `None` (also the empty list `()`).
    None,
    /// A 32-bit wrapping int.
    Int(i32),
    /// A heap object.
    Obj(Gc<'tx, Obj>),
}

impl<'tx> Value<'tx> {
    /// Builds a value from a slot's three parts.
    #[inline(always)]
    pub fn from_slot(is_int: bool, i: i32, o: Option<Gc<'tx, Obj>>) -> Value<'tx> {
        match o {
            Some(o) => Value::Obj(o),
            None if is_int => Value::Int(i),
            None => Value::None,
        }
    }

    /// Splits a value into a slot's three parts.
    #[inline(always)]
    pub fn to_slot(self) -> (bool, i32, Option<Gc<'tx, Obj>>) {
        match self {
            Value::None => (false, 0, None),
            Value::Int(i) => (true, i, None),
            Value::Obj(o) => (false, 0, Some(o)),
        }
    }

    /// Whether this is `None`.
    pub fn is_none(self) -> bool {
        matches!(self, Value::None)
    }

    /// The object if this is a cons.
    #[inline(always)]
    pub fn as_cons(self) -> Option<Gc<'tx, Obj>> {
        match self {
            Value::Obj(o) if kind(o) == Kind::Cons => Some(o),
            _ => None,
        }
    }
}

/// The kind of an object (immutable: not in the read set).
#[inline(always)]
pub fn kind(o: Gc<'_, Obj>) -> Kind {
    // SAFETY: the projection names the `kind` field of the object. Untracked: the kind is
    // written once, by the allocation, and never changes.
    unsafe { o.read_field_untracked(|p| addr_of_mut!((*p).kind)) }
}

/// Allocates an object with two value slots.
#[stm::transactional]
pub(crate) fn alloc_obj(
    tx: &Tx,
    kind: Kind,
    a: Value<'tx>,
    b: Value<'tx>,
    bi_extra: i32,
) -> Gc<Obj> {
    let _ = tx;
    let (a_int, ai, a) = a.to_slot();
    let (b_int, bi, b) = b.to_slot();
    let tags = (a_int as u8) | ((b_int as u8) << 1);
    Gc::new(Obj {
        kind,
        tags,
        ai,
        bi: bi | bi_extra,
        a,
        b,
        node: None,
    })
}
