//! Symbols: interned names, each holding its global variable and global function (the
//! global frame lives in the symbols).

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{alloc_obj, kind, Kind, Obj, Value, A_INT, HAS_VALUE};

/// A symbol's id (immutable: not in the read set).
#[inline(always)]
pub fn symbol_id(o: Gc<'_, Obj>) -> u32 {
    debug_assert_eq!(kind(o), Kind::Symbol);
    // SAFETY: the projection names the `bi` field; a symbol's id never changes.
    unsafe { o.read_field_untracked(|p| addr_of_mut!((*p).bi)) as u32 }
}

/// A new symbol with id `id`, unbound.
pub fn new_symbol(tx: &Tx, id: u32) -> Gc<'_, Obj> {
    alloc_obj(tx, Kind::Symbol, Value::None, Value::None, id as i32)
}

/// A symbol's global variable, if it has one.
///
/// Not in the read set: a symbol's global slots are written only by the main program's
/// transactions (`setq`/`defun` write the *current* frame, and queued calls never run in the
/// global frame), and the main program never runs at the same time as another transaction
/// (the driver runs queued calls only while the main program is suspended between its
/// transactions). So no commit can ever change a symbol under a running transaction, and
/// a read marker on it could never detect anything.
#[inline]
pub fn global_value(s: Gc<'_, Obj>) -> Option<Value<'_>> {
    // SAFETY: the projections name fields of the object (see above for the barrier).
    unsafe {
        let tags = s.read_field_untracked(|p| addr_of_mut!((*p).tags));
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
/// barrier of its own, for the reason given at [`global_value`].
#[inline]
pub fn global_function(s: Gc<'_, Obj>) -> Option<Gc<'_, Obj>> {
    // SAFETY: the projection names the `b` field (see `global_value` for the barrier).
    unsafe { s.read_field_untracked(|p| addr_of_mut!((*p).b)) }
}

/// Defines a symbol's global user function.
#[stm::transactional]
pub fn set_global_function(s: Gc<Obj>, f: Gc<Obj>) {
    s.b = Some(f);
}
