// Issue 13, class 3: the runtime's impl macros hold the `unsafe` the proc macros need, and
// safe code can invoke them by hand. They check what they are told against the type: an
// exhaustive destructuring with exact field types, so a field list that leaves out or lies
// about a stored handle fails to compile.
#![forbid(unsafe_code)]
use stm_runtime::{GcRef, __private};

#[stm_runtime::object]
struct Leaf {
    value: u64,
}

#[derive(Clone, Copy)]
struct LeftOut {
    n: u8,
    hidden: GcRef<Leaf>,
}
__private::impl_plain! { impl [] LeftOut where [] struct { n: f0: u8 } }

#[derive(Clone, Copy)]
struct Disguised {
    hidden: &'static GcRef<Leaf>,
}
__private::impl_plain! { impl [] Disguised where [] struct { hidden: f0: GcRef<Leaf> } }

struct Untraced {
    child: Option<GcRef<Leaf>>,
    n: u64,
}
__private::object_impls! {
    impl [] Untraced where [] plain [] object [] fields { n: u64 }
}

fn main() {}
