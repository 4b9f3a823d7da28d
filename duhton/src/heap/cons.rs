//! Conses: immutable pairs, the code and the `( ... )` data of Duhton.

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{alloc_obj, kind, Kind, Obj, Value, A_INT, B_INT};

/// The car and cdr of a cons (immutable: not in the read set).
#[inline(always)]
pub fn cons_parts(o: Gc<'_, Obj>) -> (Value<'_>, Value<'_>) {
    debug_assert_eq!(kind(o), Kind::Cons);
    // SAFETY: the projections name fields of the object. Untracked: conses are immutable,
    // so after their allocating transaction commits nothing can write them. The first read
    // brings the image up to date; the others follow it in the same attempt.
    unsafe {
        let tags = o.read_field_untracked(|p| addr_of_mut!((*p).tags));
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

/// A new cons.
#[inline]
pub fn new_cons<'tx>(tx: &'tx Tx, car: Value<'tx>, cdr: Value<'tx>) -> Gc<'tx, Obj> {
    alloc_obj(tx, Kind::Cons, car, cdr, 0)
}
