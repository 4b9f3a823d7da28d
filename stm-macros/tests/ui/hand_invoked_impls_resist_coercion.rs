// Issue 13, class 3 (found by review): the exact-type check of the impl macros was beaten by
// deref coercion (a `Copy` type that derefs to `u64` passed for `u64`, and the collector then
// ran its `Deref` on another thread), checked with no
// coercion now. (The internal arm of `impl_plain!` is gone: `impl_plain_has_no_internal_arm.rs`.)
#![forbid(unsafe_code)]
use std::cell::RefCell;
use std::ops::Deref;
use stm_runtime::__private;

#[stm_runtime::object]
struct Leaf {
    tag: u32,
}

#[derive(Clone, Copy)]
struct Spy(&'static RefCell<Vec<u64>>);
static ZERO: u64 = 0;
impl Deref for Spy {
    type Target = u64;
    fn deref(&self) -> &u64 {
        &ZERO
    }
}

struct Obj {
    s: Spy,
    n: u64,
}
__private::object_impls! {
    impl [] Obj where [] plain [] object [] fields { s: u64, n: u64 }
}

#[derive(Clone, Copy)]
struct Coerced {
    r: &'static u64,
}
__private::impl_plain! { impl [] Coerced where [] struct { r: f0: u64 } }

fn main() {}
