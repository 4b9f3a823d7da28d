//! Compile-fail and pass cases for the macros, in one trybuild run.
//! Regenerate expectations with `TRYBUILD=overwrite cargo test -p stm-macros --test compiletest`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
