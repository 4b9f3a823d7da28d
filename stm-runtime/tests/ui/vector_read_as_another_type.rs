// A rooted vector can only be read back with the element type it was made with: reading
// integers as handles would forge handles.
use stm_runtime::{GcRef, GcVec, Stm};

fn main() {
    let stm = Stm::builder().segments(1).build().unwrap();
    let root = stm.atomically(|tx| {
        let v = GcVec::<u64>::new(tx);
        v.push(12345);
        tx.root(v.as_gc())
    });
    stm.atomically(|tx| {
        let forged = GcVec::<Option<GcRef<u64>>>::from_root(tx, &root);
        let _ = forged;
    });
}
