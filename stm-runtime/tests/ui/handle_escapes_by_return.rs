// A handle cannot be returned out of its transaction.
use stm_runtime::Stm;

fn main() {
    let stm = Stm::builder().segments(1).build().unwrap();
    let leaked = stm.atomically(|tx| tx.alloc(1u64));
    let _ = leaked;
}
