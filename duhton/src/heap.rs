//! Every Duhton object, as objects of the shared STM heap.
//!
//! * [`Obj`] is the one object type of Duhton values: conses, lists, containers and symbols
//!   (`kind` says which). Ints and `None` are not objects: a [`Value`] holds them inline, and
//!   a value *slot* inside an object is an `i32`, an optional handle and a tag bit.
//! * [`Node`] is a node of a list's item tree (see [`crate::list`]).
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

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

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

/// The kind of an object (immutable: no read barrier).
#[inline(always)]
pub fn kind(o: Gc<'_, Obj>) -> Kind {
    // SAFETY: the projection names the `kind` field of the object. No barrier: the kind is
    // written once, by the allocation, and never changes.
    unsafe { o.read_field_unbarriered(|p| addr_of_mut!((*p).kind)) }
}

/// The car and cdr of a cons (immutable: no read barrier).
#[inline(always)]
pub fn cons_parts(o: Gc<'_, Obj>) -> (Value<'_>, Value<'_>) {
    debug_assert_eq!(kind(o), Kind::Cons);
    // SAFETY: the projections name fields of the object. No barrier: conses are immutable,
    // so after their allocating transaction commits nothing can write them.
    unsafe {
        let tags = o.read_field_unbarriered(|p| addr_of_mut!((*p).tags));
        let ai = o.read_field_unbarriered(|p| addr_of_mut!((*p).ai));
        let bi = o.read_field_unbarriered(|p| addr_of_mut!((*p).bi));
        let a = o.read_field_unbarriered(|p| addr_of_mut!((*p).a));
        let b = o.read_field_unbarriered(|p| addr_of_mut!((*p).b));
        (
            Value::from_slot(tags & A_INT != 0, ai, a),
            Value::from_slot(tags & B_INT != 0, bi, b),
        )
    }
}

/// A symbol's id (immutable: no read barrier).
#[inline(always)]
pub fn symbol_id(o: Gc<'_, Obj>) -> u32 {
    debug_assert_eq!(kind(o), Kind::Symbol);
    // SAFETY: the projection names the `bi` field; a symbol's id never changes.
    unsafe { o.read_field_unbarriered(|p| addr_of_mut!((*p).bi)) as u32 }
}

/// Allocates an object with two value slots.
#[stm::transactional]
fn alloc_obj(tx: &Tx, kind: Kind, a: Value<'tx>, b: Value<'tx>, bi_extra: i32) -> Gc<Obj> {
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

/// A new cons.
#[inline]
pub fn new_cons<'tx>(tx: &'tx Tx, car: Value<'tx>, cdr: Value<'tx>) -> Gc<'tx, Obj> {
    alloc_obj(tx, Kind::Cons, car, cdr, 0)
}

/// A new container holding `v`.
pub fn new_container<'tx>(tx: &'tx Tx, v: Value<'tx>) -> Gc<'tx, Obj> {
    alloc_obj(tx, Kind::Container, v, Value::None, 0)
}

/// A new symbol with id `id`, unbound.
pub fn new_symbol(tx: &Tx, id: u32) -> Gc<'_, Obj> {
    alloc_obj(tx, Kind::Symbol, Value::None, Value::None, id as i32)
}

/// A new empty list.
pub fn new_list(tx: &Tx) -> Gc<'_, Obj> {
    alloc_obj(tx, Kind::List, Value::None, Value::None, 0)
}

/// A container's content.
#[stm::transactional]
pub fn container_get(c: Gc<Obj>) -> Value<'tx> {
    Value::from_slot(c.tags & A_INT != 0, c.ai, c.a)
}

/// Replaces a container's content.
#[stm::transactional]
pub fn container_set(c: Gc<Obj>, v: Value<'tx>) {
    let (is_int, i, o) = v.to_slot();
    c.tags = if is_int { A_INT } else { 0 };
    c.ai = i;
    c.a = o;
}

/// A symbol's global variable, if it has one.
///
/// No read barrier: a symbol's global slots are written only by the main program's
/// transactions (`setq`/`defun` write the *current* frame, and queued calls never run in the
/// global frame), and the main program never runs at the same time as another transaction
/// (the driver runs queued calls only while the main program is suspended between its
/// transactions). So no commit can ever change a symbol under a running transaction, and
/// a read marker on it could never detect anything.
#[inline]
pub fn global_value(s: Gc<'_, Obj>) -> Option<Value<'_>> {
    // SAFETY: the projections name fields of the object (see above for the barrier).
    unsafe {
        let tags = s.read_field_unbarriered(|p| addr_of_mut!((*p).tags));
        if tags & HAS_VALUE == 0 {
            return None;
        }
        let ai = s.read_field_unbarriered(|p| addr_of_mut!((*p).ai));
        let a = s.read_field_unbarriered(|p| addr_of_mut!((*p).a));
        Some(Value::from_slot(tags & A_INT != 0, ai, a))
    }
}

/// Binds a symbol's global variable.
#[stm::transactional]
pub fn set_global_value(s: Gc<Obj>, v: Value<'tx>) {
    let (is_int, i, o) = v.to_slot();
    s.tags = HAS_VALUE | if is_int { A_INT } else { 0 };
    s.ai = i;
    s.a = o;
}

/// A symbol's global user function (`(params . body)`), if one was defined. No read
/// barrier, for the reason given at [`global_value`].
#[inline]
pub fn global_function(s: Gc<'_, Obj>) -> Option<Gc<'_, Obj>> {
    // SAFETY: the projection names the `b` field (see `global_value` for the barrier).
    unsafe { s.read_field_unbarriered(|p| addr_of_mut!((*p).b)) }
}

/// Defines a symbol's global user function.
#[stm::transactional]
pub fn set_global_function(s: Gc<Obj>, f: Gc<Obj>) {
    s.b = Some(f);
}

/// A node of a list's item tree: leaves use `o`/`i`/`ints`, interior nodes use `kids`.
///
/// Declared by hand (the object macro does not take arrays of handles): its fields are
/// private to this crate and a node is only ever built as `Node::EMPTY`, then filled
/// through the barriers, so it never holds a handle that did not come from a `Gc` of the
/// transaction that stored it.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Node {
    pub(crate) o: [Option<stm::GcRef<Obj>>; crate::list::B],
    pub(crate) kids: [Option<stm::GcRef<Node>>; crate::list::B],
    pub(crate) i: [i32; crate::list::B],
    pub(crate) ints: u32,
}

impl Node {
    /// A node with no items and no children.
    pub(crate) const EMPTY: Node = Node {
        o: [None; crate::list::B],
        kids: [None; crate::list::B],
        i: [0; crate::list::B],
        ints: 0,
    };
}

// SAFETY: `Node` is `Copy`, `'static`, aligned to 4, and its fields are `Field`s (plain ints
// and optional stored handles). Nodes are only built as `Node::EMPTY` (no handles); handles
// are stored only by `Gc::write_field` from handles of the writing transaction. `trace`
// reports every stored handle.
unsafe impl stm::Object for Node {
    fn trace(&self, tracer: &mut stm::Tracer) {
        for r in self.o.iter().flatten() {
            tracer.visit(*r);
        }
        for r in self.kids.iter().flatten() {
            tracer.visit(*r);
        }
    }
}

/// One binding of a call frame.
#[stm::object]
pub struct Entry {
    /// The bound symbol.
    pub sym: Gc<Obj>,
    /// [`HAS_VALUE`], [`HAS_FUNC`], [`A_INT`] (the value is an int).
    pub tags: u8,
    /// The value's int.
    pub vi: i32,
    /// The value's object.
    pub v: Option<Gc<Obj>>,
    /// The function (`(params . body)`).
    pub f: Option<Gc<Obj>>,
    /// The next binding.
    pub next: Option<Gc<Entry>>,
}

/// A call frame (the global frame is the symbols' own slots).
#[stm::object]
pub struct Frame {
    /// The newest binding.
    pub first: Option<Gc<Entry>>,
}

/// A new empty frame.
#[stm::transactional]
pub fn new_frame(tx: &Tx) -> Gc<Frame> {
    let _ = tx;
    Gc::new(Frame { first: None })
}

/// The binding of `sym` in `frame`, if any.
#[stm::transactional]
pub fn find_entry(frame: Gc<Frame>, sym: Gc<Obj>) -> Option<Gc<Entry>> {
    let mut cur = frame.first;
    while let Some(e) = cur {
        if e.sym.ptr_eq(sym) {
            return Some(e);
        }
        cur = e.next;
    }
    None
}

/// The binding of `sym` in `frame`, created (unbound) if missing.
#[stm::transactional]
fn entry_for(frame: Gc<Frame>, sym: Gc<Obj>) -> Gc<Entry> {
    if let Some(e) = find_entry(frame, sym) {
        return e;
    }
    let e = Gc::new(Entry {
        sym,
        tags: 0,
        vi: 0,
        v: None,
        f: None,
        next: frame.first,
    });
    frame.first = Some(e);
    e
}

/// Adds a binding in front of `frame`'s others.
#[stm::transactional]
fn new_entry(frame: Gc<Frame>, sym: Gc<Obj>, tags: u8, vi: i32, v: Option<Gc<Obj>>) {
    let e = Gc::new(Entry {
        sym,
        tags,
        vi,
        v,
        f: None,
        next: frame.first,
    });
    frame.first = Some(e);
}

/// Defines the function `sym` in `frame`.
#[stm::transactional]
pub fn set_frame_function(frame: Gc<Frame>, sym: Gc<Obj>, f: Gc<Obj>) {
    let e = entry_for(frame, sym);
    e.tags |= HAS_FUNC;
    e.f = Some(f);
}

/// Frames and entries of the running attempt whose calls have returned, ready for reuse:
/// a call then costs no allocation, and the attempt commits (copies out) fewer objects.
#[derive(Default)]
pub struct Spare<'tx> {
    frames: std::cell::RefCell<Vec<Gc<'tx, Frame>>>,
    entries: std::cell::RefCell<Vec<Gc<'tx, Entry>>>,
}

/// A frame as the evaluator holds it.
///
/// **Frames are private**: a frame is only ever used by one transaction at a time. A call
/// frame belongs to the attempt that made it; the frame of a queued call, made by the
/// parent before it committed, is used only by the one task that runs the call (attempts
/// of a task run one after the other); the main program's frames only by the main
/// program, which runs alone. So no transaction can commit a write to a frame or entry
/// another one is reading: frames are read without read barriers. Writes still run the
/// write barrier, so an aborted attempt's frame changes are rolled back.
#[derive(Clone, Copy, Debug)]
pub struct Fr<'tx> {
    /// The frame object.
    pub gc: Gc<'tx, Frame>,
}

/// Reads a field of a frame or entry, without a read barrier (see [`Fr`]).
macro_rules! rd {
    ($h:expr, $f:ident) => {
        // SAFETY: the projection names a field of the object; no barrier because frames
        // and their entries are private to one transaction at a time (see `Fr`).
        unsafe { $h.read_field_unbarriered(|p| addr_of_mut!((*p).$f)) }
    };
}

impl<'tx> Fr<'tx> {
    /// A new empty frame, allocated by the running attempt (a spare one if there is one).
    pub fn new(tx: &'tx Tx, spare: &Spare<'tx>) -> Fr<'tx> {
        let gc = spare
            .frames
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| new_frame(tx));
        Fr { gc }
    }

    /// Gives a frame that [`Fr::new`] made for a call that has returned, and its entries,
    /// to `spare` for reuse by later calls of this attempt. Nothing refers to a returned
    /// call's frame: frames are not values, and queued calls get frames of their own.
    pub fn recycle(self, spare: &Spare<'tx>) {
        let mut entries = spare.entries.borrow_mut();
        let mut cur = rd!(self.gc, first);
        while let Some(e) = cur {
            entries.push(e);
            cur = rd!(e, next);
        }
        // SAFETY: the projection names the `first` field of the frame.
        unsafe { self.gc.write_field(|p| addr_of_mut!((*p).first), None) };
        spare.frames.borrow_mut().push(self.gc);
    }

    /// The binding of `sym`, if any.
    #[inline]
    pub fn find(self, sym: Gc<'tx, Obj>) -> Option<Gc<'tx, Entry>> {
        let mut cur = rd!(self.gc, first);
        while let Some(e) = cur {
            if rd!(e, sym).ptr_eq(sym) {
                return Some(e);
            }
            cur = rd!(e, next);
        }
        None
    }

    /// The variable `sym`, if bound here.
    #[inline]
    pub fn value(self, sym: Gc<'tx, Obj>) -> Option<Value<'tx>> {
        let e = self.find(sym)?;
        let tags = rd!(e, tags);
        if tags & HAS_VALUE == 0 {
            return None;
        }
        Some(Value::from_slot(tags & A_INT != 0, rd!(e, vi), rd!(e, v)))
    }

    /// The function binding of `sym`: `Some(None)` when `sym` has an entry here (even one
    /// holding only a value, which hides the global function), `None` when it has none.
    #[inline]
    pub fn function(self, sym: Gc<'tx, Obj>) -> Option<Option<Gc<'tx, Obj>>> {
        let e = self.find(sym)?;
        if rd!(e, tags) & HAS_FUNC == 0 {
            return Some(None);
        }
        Some(rd!(e, f))
    }

    /// Binds the variable `sym` (in a spare entry if there is one).
    #[inline]
    pub fn set_value(self, sym: Gc<'tx, Obj>, v: Value<'tx>, spare: &Spare<'tx>) {
        let (is_int, i, o) = v.to_slot();
        let tags = HAS_VALUE | if is_int { A_INT } else { 0 };
        match self.find(sym) {
            Some(e) => {
                let tags = (rd!(e, tags) & HAS_FUNC) | tags;
                // SAFETY: the projections name fields of the entry.
                unsafe {
                    e.write_field(|p| addr_of_mut!((*p).tags), tags);
                    e.write_field(|p| addr_of_mut!((*p).vi), i);
                    e.write_field(|p| addr_of_mut!((*p).v), o);
                }
            }
            None => match spare.entries.borrow_mut().pop() {
                Some(e) => {
                    let first = rd!(self.gc, first);
                    // SAFETY: the projections name fields of the entry (a spare one of this
                    // attempt, no longer part of any frame) and of the frame.
                    unsafe {
                        e.write_field(|p| addr_of_mut!((*p).sym), sym);
                        e.write_field(|p| addr_of_mut!((*p).tags), tags);
                        e.write_field(|p| addr_of_mut!((*p).vi), i);
                        e.write_field(|p| addr_of_mut!((*p).v), o);
                        e.write_field(|p| addr_of_mut!((*p).f), None);
                        e.write_field(|p| addr_of_mut!((*p).next), first);
                        self.gc.write_field(|p| addr_of_mut!((*p).first), Some(e));
                    }
                }
                None => new_entry(self.gc, sym, tags, i, o),
            },
        }
    }

    /// Defines the function `sym`.
    pub fn set_function(self, sym: Gc<'tx, Obj>, f: Gc<'tx, Obj>) {
        set_frame_function(self.gc, sym, f)
    }
}

/// A queued transaction: run `body` (a progn) in `frame`.
#[stm::object]
pub struct Call {
    /// The function body.
    pub body: Option<Gc<Obj>>,
    /// The callee frame, arguments bound.
    pub frame: Gc<Frame>,
    /// The next older pending call (the main program's pending list).
    pub next: Option<Gc<Call>>,
}

/// A new queued call.
#[stm::transactional]
pub fn new_call(frame: Gc<Frame>, body: Option<Gc<Obj>>) -> Gc<Call> {
    Gc::new(Call {
        body,
        frame,
        next: None,
    })
}

/// The body and frame of a queued call.
#[stm::transactional]
pub fn call_parts(c: Gc<Call>) -> (Option<Gc<Obj>>, Gc<Frame>) {
    (c.body, c.frame)
}

/// The root object: the symbol table and the main program's pending calls.
#[stm::object]
pub struct Globals {
    /// Every symbol, indexed by id (a Duhton list).
    pub symtab: Gc<Obj>,
    /// The main program's queued calls, newest first.
    pub pending: Option<Gc<Call>>,
}

/// A new root object with an empty symbol table.
#[stm::transactional]
pub fn new_globals(tx: &Tx) -> Gc<Globals> {
    let symtab = new_list(tx);
    Gc::new(Globals {
        symtab,
        pending: None,
    })
}

/// The symbol table.
#[stm::transactional]
pub fn symtab(g: Gc<Globals>) -> Gc<Obj> {
    g.symtab
}

/// Pushes a call on the main program's pending list.
#[stm::transactional]
pub fn push_pending(g: Gc<Globals>, c: Gc<Call>) {
    c.next = g.pending;
    g.pending = Some(c);
}

/// Takes the main program's pending calls, oldest first.
#[stm::transactional]
pub fn take_pending(g: Gc<Globals>) -> Vec<Gc<Call>> {
    let mut out = Vec::new();
    let mut cur = g.pending.take();
    while let Some(c) = cur {
        out.push(c);
        cur = c.next;
    }
    out.reverse();
    out
}

/// Takes the newest of the main program's pending calls.
#[stm::transactional]
pub fn pop_pending(g: Gc<Globals>) -> Option<Gc<Call>> {
    let c = g.pending?;
    g.pending = c.next;
    Some(c)
}
