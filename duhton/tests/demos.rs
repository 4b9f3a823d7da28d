//! The demos in `duhton/demos/` run (with small sizes preset) and print the expected results
//! with 1 and 2 threads.

mod common;
use common::run;

fn demo(name: &str, sizes: &str) -> String {
    let path = format!("{}/demos/{name}.duh", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("the demo exists");
    run(&format!("{sizes}\n{src}"))
}

#[test]
fn square_roots() {
    // isqrt(10^9 + i) is 31622 for these i.
    assert_eq!(
        demo("square_roots", "(setq TASKS 6 PER-TASK 10)"),
        format!("'square-roots' 60 'checksum' {}\n", 60 * 31622)
    );
}

#[test]
fn trees() {
    assert_eq!(
        demo("trees", "(setq TASKS 5 DEPTH 4)"),
        "'trees' 5 'leaves' 80\n"
    );
}

#[test]
fn counter() {
    assert_eq!(
        demo("counter", "(setq CHAINS 4 STEPS 30)"),
        "'counter' 120 'expected' 120\n"
    );
}

#[test]
fn nqueens() {
    assert_eq!(demo("nqueens", "(setq N 6)"), "'queens' 6 'solutions' 4\n");
}

#[test]
fn micro_transactions() {
    assert_eq!(
        demo("micro_transactions", "(setq CHAINS 20 STEPS 50)"),
        "'transactions' 1000\n"
    );
}

#[test]
fn sort() {
    assert_eq!(
        demo("sort", "(setq N 100 CHUNK 7)"),
        "'sorted' 100 'in-order' 1 'sum' 535263\n"
    );
    assert_eq!(
        demo("sort", "(setq N 0 CHUNK 7)"),
        "'sorted' 0 'in-order' 1 'sum' 0\n"
    );
}
