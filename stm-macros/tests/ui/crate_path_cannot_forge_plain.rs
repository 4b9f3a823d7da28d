// Issue 13, class 3: `derive(Plain)`'s `unsafe impl` trusted `crate = path` for its field
// checks. With an attacker's module that replaces the check, a stored handle hidden behind a
// type alias became "plain data": untraced by the collector, and readable out of the heap as a
// stored handle. The impl now comes from the runtime's `impl_plain!`, whose bounds name the
// real `Plain` through `$crate`.
#![forbid(unsafe_code)]
use stm_runtime as stm;

#[allow(unused_imports)]
mod evil {
    pub use stm_runtime::*;
    pub mod __private {
        pub use stm_runtime::__private::*;
        pub const fn assert_plain<T>() {}
    }
}

#[stm::object]
struct Leaf {
    value: u64,
}

type Hidden = stm::GcRef<Leaf>;

#[derive(Clone, Copy, stm::Plain)]
#[stm(crate = evil)]
struct Smuggler {
    handle: Hidden,
}

fn main() {}
