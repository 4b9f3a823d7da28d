// Issue 13, class 3 (found by review): every arm of a `macro_rules!` macro can be invoked by
// anyone, and `impl_plain!` had an internal arm that wrote `unsafe impl Plain` with no check.
// The arm is gone: each public arm checks its description against the type.
#![forbid(unsafe_code)]
use stm_runtime::{GcRef, __private};

#[stm_runtime::object]
struct Leaf {
    tag: u32,
}

#[derive(Clone, Copy)]
struct Thief {
    g: Option<GcRef<Leaf>>,
}
__private::impl_plain! { @impl [] Thief [] [] [] }

fn main() {}
