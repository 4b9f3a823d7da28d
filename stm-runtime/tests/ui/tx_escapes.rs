// The transaction context cannot leave `atomically` either.
use stm_runtime::Stm;

fn main() {
    let stm = Stm::builder().segments(1).build().unwrap();
    let tx = stm.atomically(|tx| tx);
    let _ = tx;
}
