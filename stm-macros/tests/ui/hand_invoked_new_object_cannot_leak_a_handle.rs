// Issue 13, class 3 (found by review): `new_object!` took its type as free tokens, so
// `[stash = Holder]` turned the literal into an assignment to a user local and a stored handle
// reached safe code. The type is a path now, and only `#[stm::object]` types are accepted
// (a plain type's value could be read back whole).
#![forbid(unsafe_code)]
use stm_runtime as stm;
use stm::{Gc, Stm, __private};

#[stm::object]
pub struct Leaf {
    tag: u32,
}

#[stm::object]
pub struct Holder {
    g: Option<Gc<Leaf>>,
}

fn main() {
    let stm = Stm::builder().segments(1).heap_size(4 << 20).build().unwrap();
    stm.atomically(|tx| {
        let leaf = tx.alloc(Leaf { tag: 7 });
        let mut stash = Holder { g: None };
        let _unit: Gc<()> = __private::new_object!(tx, [stash = Holder] { g: Some(leaf) });
        let _ = stash;
    });
}
