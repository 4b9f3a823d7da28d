//! Handles cannot outlive or leave their transaction; only plain data lives in the heap.
//! Each case in `tests/ui` must fail to compile with the message in its `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
