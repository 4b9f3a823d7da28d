//! Duhton lists: a growable array of values in the shared heap.
//!
//! A list is an [`Obj`] of kind `List`. Up to two items live in the object itself (its
//! value slots a and b; the length in its tag bits), so small lists (pairs, tree nodes)
//! cost one small object. From the third item on, the items move to a radix tree of
//! [`Node`]s with [`B`] slots each (length in `ai`, tree height in `bi`, root in `node`).
//! Every node is its own object, so a write to one item backs up, commits and conflicts on
//! one leaf of `B` items, not on the whole array (stmgc's card marking, for the same
//! reason). All list access goes through this module's functions, so the representation can
//! move to the runtime's `TVec` once it can hold a Duhton value (an int or a handle) per item.

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{alloc_obj, Kind, Obj, Value, A_INT, B_INT};

/// A new empty list.
pub fn new_list(tx: &Tx) -> Gc<'_, Obj> {
    alloc_obj(tx, Kind::List, Value::None, Value::None, 0)
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

/// Items per leaf, children per interior node.
pub const B: usize = 8;
const SHIFT: u32 = B.trailing_zeros();

#[inline(always)]
fn kid<'tx>(n: Gc<'tx, Node>, k: usize) -> Option<Gc<'tx, Node>> {
    // SAFETY: the projection names element `k` (< B, bounds-checked) of the `kids` array.
    unsafe { n.read_field(|p| addr_of_mut!((*p).kids[k])) }
}

#[inline(always)]
fn set_kid<'tx>(n: Gc<'tx, Node>, k: usize, child: Gc<'tx, Node>) {
    // SAFETY: the projection names element `k` (< B, bounds-checked) of the `kids` array.
    unsafe { n.write_field(|p| addr_of_mut!((*p).kids[k]), Some(child)) }
}

#[inline(always)]
fn slot<'tx>(n: Gc<'tx, Node>, k: usize) -> Value<'tx> {
    n.read_barrier();
    // SAFETY: the projections name fields of the node (element `k` < B of its arrays); the
    // read barrier above ran on this node in this transaction.
    unsafe {
        let ints = n.read_field_unbarriered(|p| addr_of_mut!((*p).ints));
        let i = n.read_field_unbarriered(|p| addr_of_mut!((*p).i[k]));
        let o = n.read_field_unbarriered(|p| addr_of_mut!((*p).o[k]));
        Value::from_slot(ints & (1 << k) != 0, i, o)
    }
}

#[inline(always)]
fn set_slot<'tx>(n: Gc<'tx, Node>, k: usize, v: Value<'tx>) {
    let (is_int, i, o) = v.to_slot();
    n.write_barrier();
    // SAFETY: the projections name fields of the node (element `k` < B of its arrays). The
    // write barrier above ran, and also marks the node read, so the read of `ints` is covered.
    unsafe {
        let ints = n.read_field_unbarriered(|p| addr_of_mut!((*p).ints));
        let ints = if is_int {
            ints | (1 << k)
        } else {
            ints & !(1 << k)
        };
        n.write_field(|p| addr_of_mut!((*p).ints), ints);
        n.write_field(|p| addr_of_mut!((*p).i[k]), i);
        n.write_field(|p| addr_of_mut!((*p).o[k]), o);
    }
}

/// Tag bit of a list: its items are in the tree (`ai` length, `bi` height, `node` root);
/// without it, the list holds at most two items inline, in slots a and b, and its length is
/// in the tag bits [`INLINE_LEN`].
const TREE: u8 = 16;
/// Tag bits of an inline list's length (0, 1 or 2), shifted by 2.
const INLINE_LEN: u8 = 4 | 8;

/// Where a list's items are.
#[derive(Clone, Copy)]
enum Items<'tx> {
    /// Up to two items inside the list object.
    Inline(usize),
    /// `len` items in a tree of height `height`.
    Tree(usize, u32, Gc<'tx, Node>),
}

/// The list's representation.
#[stm::transactional]
fn items(l: Gc<Obj>) -> Items<'tx> {
    let tags = l.tags;
    if tags & TREE == 0 {
        return Items::Inline(((tags & INLINE_LEN) >> 2) as usize);
    }
    match l.node {
        Some(root) => Items::Tree(l.ai as usize, l.bi as u32, root),
        None => unreachable!("a tree list has a root"),
    }
}

/// Inline item `k` (0 or 1).
#[stm::transactional]
fn inline_get(l: Gc<Obj>, k: usize) -> Value<'tx> {
    let tags = l.tags;
    if k == 0 {
        Value::from_slot(tags & A_INT != 0, l.ai, l.a)
    } else {
        Value::from_slot(tags & B_INT != 0, l.bi, l.b)
    }
}

/// Sets inline item `k` (0 or 1) and the inline length.
#[stm::transactional]
fn inline_set(l: Gc<Obj>, k: usize, v: Value<'tx>, len: usize) {
    let (is_int, i, o) = v.to_slot();
    let bit = if k == 0 { A_INT } else { B_INT };
    let tags = (l.tags & !(bit | INLINE_LEN)) | if is_int { bit } else { 0 };
    l.tags = tags | ((len as u8) << 2);
    if k == 0 {
        l.ai = i;
        l.a = o;
    } else {
        l.bi = i;
        l.b = o;
    }
}

/// Switches a list to its tree form.
#[stm::transactional]
fn make_tree(l: Gc<Obj>, len: usize, root: Gc<Node>) {
    l.tags = TREE;
    l.ai = len as i32;
    l.bi = 0;
    l.a = None;
    l.b = None;
    l.node = Some(root);
}

/// The leaf holding item `idx` (which must exist).
fn leaf<'tx>(root: Gc<'tx, Node>, height: u32, idx: usize) -> Gc<'tx, Node> {
    let mut n = root;
    let mut level = height;
    while level > 0 {
        let k = (idx >> (SHIFT * level)) & (B - 1);
        n = kid(n, k).expect("list tree: a node on the path of an existing item is missing");
        level -= 1;
    }
    n
}

/// The number of items.
pub fn len(l: Gc<'_, Obj>) -> usize {
    match items(l) {
        Items::Inline(n) | Items::Tree(n, _, _) => n,
    }
}

/// Item `idx`, or `None` if out of range.
pub fn get(l: Gc<'_, Obj>, idx: usize) -> Option<Value<'_>> {
    match items(l) {
        Items::Inline(n) => (idx < n).then(|| inline_get(l, idx)),
        Items::Tree(n, height, root) => {
            (idx < n).then(|| slot(leaf(root, height, idx), idx & (B - 1)))
        }
    }
}

/// Replaces item `idx`; `false` if out of range.
pub fn set<'tx>(l: Gc<'tx, Obj>, idx: usize, v: Value<'tx>) -> bool {
    match items(l) {
        Items::Inline(n) if idx < n => inline_set(l, idx, v, n),
        Items::Tree(n, height, root) if idx < n => {
            set_slot(leaf(root, height, idx), idx & (B - 1), v)
        }
        _ => return false,
    }
    true
}

/// Sets a tree list's length, height and root.
#[stm::transactional]
fn set_header(l: Gc<Obj>, len: usize, height: u32, root: Gc<Node>) {
    l.ai = len as i32;
    l.bi = height as i32;
    l.node = Some(root);
}

/// Sets a tree list's length.
#[stm::transactional]
fn set_len(l: Gc<Obj>, len: usize) {
    l.ai = len as i32;
}

/// Appends an item.
pub fn push<'tx>(tx: &'tx Tx, l: Gc<'tx, Obj>, v: Value<'tx>) {
    let (len, mut height, mut root) = match items(l) {
        Items::Inline(n) if n < 2 => {
            inline_set(l, n, v, n + 1);
            return;
        }
        Items::Inline(n) => {
            let leaf = tx.alloc(Node::EMPTY);
            set_slot(leaf, 0, inline_get(l, 0));
            set_slot(leaf, 1, inline_get(l, 1));
            make_tree(l, n, leaf);
            (n, 0, leaf)
        }
        Items::Tree(n, height, root) => (n, height, root),
    };
    let capacity = (B as u64) << (SHIFT * height);
    if len as u64 == capacity {
        let top = tx.alloc(Node::EMPTY);
        set_kid(top, 0, root);
        root = top;
        height += 1;
    }
    let mut n = root;
    let mut level = height;
    while level > 0 {
        let k = (len >> (SHIFT * level)) & (B - 1);
        n = match kid(n, k) {
            Some(c) => c,
            None => {
                let c = tx.alloc(Node::EMPTY);
                set_kid(n, k, c);
                c
            }
        };
        level -= 1;
    }
    set_slot(n, len & (B - 1), v);
    set_header(l, len + 1, height, root);
}

/// Removes and returns item `idx`, shifting the later items down; `None` if out of range.
pub fn pop(l: Gc<'_, Obj>, idx: usize) -> Option<Value<'_>> {
    match items(l) {
        Items::Inline(n) if idx < n => {
            let out = inline_get(l, idx);
            if idx == 0 && n == 2 {
                inline_set(l, 0, inline_get(l, 1), 2);
            }
            inline_set(l, n - 1, Value::None, n - 1);
            Some(out)
        }
        Items::Tree(len, height, root) if idx < len => {
            let out = slot(leaf(root, height, idx), idx & (B - 1));
            for j in idx..len - 1 {
                let next = slot(leaf(root, height, j + 1), (j + 1) & (B - 1));
                set_slot(leaf(root, height, j), j & (B - 1), next);
            }
            set_slot(
                leaf(root, height, len - 1),
                (len - 1) & (B - 1),
                Value::None,
            );
            set_len(l, len - 1);
            Some(out)
        }
        _ => None,
    }
}
