//! Duhton lists: a growable array of values in the shared heap.
//!
//! A list is an [`Obj`] of kind `List` (its length in `ai`, the height of its item tree in
//! `bi`, the tree's root in `node`) and a radix tree of [`Node`]s with [`B`] slots each.
//! Every node is its own object, so a write to one item backs up, commits and conflicts on
//! one leaf of `B` items, not on the whole array (stmgc's card marking, for the same
//! reason). All list access goes through this module's functions, so the representation can
//! move to the runtime's `TVec` once it can hold a Duhton value (an int or a handle) per item.

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

use crate::heap::{Node, Obj, Value};

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

/// The list's length, height and root.
#[stm::transactional]
fn header(l: Gc<Obj>) -> (usize, u32, Option<Gc<Node>>) {
    (l.ai as usize, l.bi as u32, l.node)
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
#[stm::transactional]
pub fn len(l: Gc<Obj>) -> usize {
    l.ai as usize
}

/// Item `idx`, or `None` if out of range.
pub fn get(l: Gc<'_, Obj>, idx: usize) -> Option<Value<'_>> {
    let (len, height, root) = header(l);
    if idx >= len {
        return None;
    }
    let root = root?;
    Some(slot(leaf(root, height, idx), idx & (B - 1)))
}

/// Replaces item `idx`; `false` if out of range.
pub fn set<'tx>(l: Gc<'tx, Obj>, idx: usize, v: Value<'tx>) -> bool {
    let (len, height, root) = header(l);
    let Some(root) = root.filter(|_| idx < len) else {
        return false;
    };
    set_slot(leaf(root, height, idx), idx & (B - 1), v);
    true
}

/// Sets the list's length, height and root.
#[stm::transactional]
fn set_header(l: Gc<Obj>, len: usize, height: u32, root: Gc<Node>) {
    l.ai = len as i32;
    l.bi = height as i32;
    l.node = Some(root);
}

/// Sets the list's length.
#[stm::transactional]
fn set_len(l: Gc<Obj>, len: usize) {
    l.ai = len as i32;
}

/// Appends an item.
pub fn push<'tx>(tx: &'tx Tx, l: Gc<'tx, Obj>, v: Value<'tx>) {
    let (len, mut height, root) = header(l);
    let mut root = match root {
        Some(r) => r,
        None => tx.alloc(Node::EMPTY),
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
    let (len, height, root) = header(l);
    if idx >= len {
        return None;
    }
    let root = root?;
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
