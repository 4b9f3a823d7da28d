// Issue 13, class 3: a stored handle (`GcRef`) outlives its transaction, so safe code can
// never hold one: objects can then be built with struct literals, and no literal can hold a
// stale or forged handle. `Gc::to_ref` is private (and `Field::store` unsafe: see
// `stored_handle_by_field_store.rs`).
#![forbid(unsafe_code)]
use stm_runtime::{GcRef, Stm};

fn main() {
    let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    let _kept: Option<GcRef<u64>> = stm.atomically(|tx| {
        let h = tx.alloc(1u64);
        Some(h.to_ref())
    });
}
