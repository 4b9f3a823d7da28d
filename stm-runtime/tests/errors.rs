//! Bad configurations and a full heap are clean errors, and the runtime stays usable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stm_runtime::{Stm, StmError};

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    let zero = Stm::builder().segments(0).build().unwrap_err();
    assert!(
        zero.to_string().contains("segments must be at least 1"),
        "{zero}"
    );
    let many = Stm::builder().segments(100_000).build().unwrap_err();
    assert!(many.to_string().contains("maximum"), "{many}");
    let tiny = Stm::builder().heap_size(10).build().unwrap_err();
    assert!(matches!(tiny, StmError::Config(_)), "{tiny}");
    let huge = Stm::builder().heap_size(usize::MAX).build().unwrap_err();
    assert!(huge.to_string().contains("heap_size"), "{huge}");
}

#[test]
fn a_full_heap_is_an_error_and_rolling_back_frees_the_space() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(1 << 20)
        .build()
        .unwrap();
    // Fill the heap inside one transaction, then give up.
    let filled: Result<(), usize> = stm.try_atomically(|tx| {
        let mut n = 0;
        loop {
            match tx.try_alloc([0u64; 31]) {
                Ok(_) => n += 1,
                Err(StmError::HeapExhausted {
                    requested,
                    heap_size,
                }) => {
                    assert_eq!(heap_size, 1 << 20);
                    assert!(requested >= 256);
                    return Err(n);
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    });
    let n = filled.unwrap_err();
    assert!(n > 3_000, "only {n} objects of 256 bytes fit in 1 MiB");
    // `alloc` turns exhaustion into a panic that rolls the transaction back.
    let err = catch_unwind(AssertUnwindSafe(|| {
        stm.atomically(|tx| loop {
            tx.alloc([0u64; 31]);
        })
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("STM heap exhausted"), "{msg}");
    // The rolled-back space is reused: the same amount fits again, and commits work.
    let kept = stm.atomically(|tx| {
        let roots: Vec<_> = (0..n).map(|_| tx.root(tx.alloc([1u64; 31]))).collect();
        roots
    });
    assert_eq!(stm.atomically(|tx| kept[n - 1].get(tx).get()[30]), 1);
}
