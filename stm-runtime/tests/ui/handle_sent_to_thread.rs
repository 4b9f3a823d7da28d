// A handle belongs to one transaction on one thread: it is not Send.
use stm_runtime::Stm;

fn main() {
    let stm = Stm::builder().segments(2).build().unwrap();
    stm.atomically(|tx| {
        let h = tx.alloc(1u64);
        std::thread::scope(|s| {
            s.spawn(move || h.get());
        });
    });
}
