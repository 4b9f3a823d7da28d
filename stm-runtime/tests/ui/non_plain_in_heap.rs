// Only plain data (or objects declared with the object attribute) can live in the heap.
use stm_runtime::Stm;

fn main() {
    let stm = Stm::builder().segments(1).build().unwrap();
    stm.atomically(|tx| {
        tx.alloc(String::from("not plain"));
    });
}
