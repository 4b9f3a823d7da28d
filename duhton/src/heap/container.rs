//! Containers: mutable one-slot boxes (`(container x)`, `get`, `set`).

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{alloc_obj, Kind, Obj, Value, A_INT};

/// A new container holding `v`.
pub fn new_container<'tx>(tx: &'tx Tx, v: Value<'tx>) -> Gc<'tx, Obj> {
    alloc_obj(tx, Kind::Container, v, Value::None, 0)
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
