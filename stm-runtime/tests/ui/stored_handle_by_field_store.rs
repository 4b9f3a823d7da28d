// Issue 13, class 3: `Field::store` turns a handle into its stored form, which outlives the
// transaction: it is `unsafe`, so safe code cannot keep a stored handle.
#![forbid(unsafe_code)]
use stm_runtime::{Field, GcRef, Stm};

fn main() {
    let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    let _kept: GcRef<u64> = stm.atomically(|tx| <GcRef<u64> as Field>::store(tx.alloc(1u64)));
}
