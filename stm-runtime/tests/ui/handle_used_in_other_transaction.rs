// A handle of one transaction cannot be rooted (or stored) by another transaction, here one
// of another runtime nested inside the first.
use stm_runtime::Stm;

fn main() {
    let a = Stm::builder().segments(1).build().unwrap();
    let b = Stm::builder().segments(1).build().unwrap();
    a.atomically(|txa| {
        let x = txa.alloc(1u64);
        b.atomically(|txb| {
            let _root = txb.root(x);
        });
    });
}
