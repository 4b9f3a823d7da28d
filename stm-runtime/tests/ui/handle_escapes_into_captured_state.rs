// A handle cannot be stored somewhere that outlives its transaction.
use stm_runtime::{Gc, Stm};

fn main() {
    let stm = Stm::builder().segments(1).build().unwrap();
    let mut outside: Option<Gc<'_, u64>> = None;
    stm.atomically(|tx| {
        outside = Some(tx.alloc(1u64));
    });
    let _ = outside;
}
