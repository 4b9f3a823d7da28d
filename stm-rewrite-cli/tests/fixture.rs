//! End to end: the fixture crate (`tests/fixtures/bank-crate`) and the repository's own
//! `examples/` package, rewritten by the CLI, build with `cargo --offline` and pass their
//! tests; the rewritten bank prints exactly what the macro-instrumented build prints.
//!
//! Both builds share one target directory under the workspace's `target/`, so `stm-runtime`
//! is compiled once for all of them (about a minute the first time).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    workspace().join("target/stm-rewrite-fixture")
}

fn cargo(args: &[&str], manifest: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} on {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rewrite(input: &Path, out_dir: &Path) {
    rewrite_with(input, out_dir, &[]);
}

fn rewrite_with(input: &Path, out_dir: &Path, flags: &[&str]) {
    let _ = std::fs::remove_dir_all(out_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_stm-rewrite"))
        .arg(input)
        .arg("--out-dir")
        .arg(out_dir)
        .args(flags)
        .output()
        .expect("stm-rewrite runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rewritten_bank_prints_what_the_macro_build_prints() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bank-crate");
    // The same depth under the workspace as the fixture, so that its relative path to
    // stm-runtime still holds.
    let rewritten = workspace().join("target/stm-rewrite-tests/out/bank-crate");
    rewrite(&fixture, &rewritten);
    let main = std::fs::read_to_string(rewritten.join("src/main.rs")).expect("rewritten");
    assert!(!main.lines().any(|l| l.trim() == "#[stm::transactional]"));
    assert!(main.contains("__stm::update"));

    // Run each right after building it: both builds write target/debug/bank-crate.
    let macro_out = cargo(&["run", "--offline", "-q"], &fixture.join("Cargo.toml"));
    let cli_out = cargo(&["run", "--offline", "-q"], &rewritten.join("Cargo.toml"));
    let (a, b) = (
        String::from_utf8_lossy(&macro_out.stdout),
        String::from_utf8_lossy(&cli_out.stdout),
    );
    assert!(a.contains("transfers=400 refused=0 total=800000"), "{a}");
    assert_eq!(a, b, "the rewritten build behaves like the macro build");
    cargo(&["test", "--offline", "-q"], &rewritten.join("Cargo.toml"));

    // PyPy style: every function in a transaction, `main` (which has loops) in transactions
    // cut at break points; the same output, tests pass.
    let all = workspace().join("target/stm-rewrite-tests/all-functions/bank-crate");
    rewrite_with(&fixture, &all, &["--all-functions"]);
    let all_main = std::fs::read_to_string(all.join("src/main.rs")).expect("rewritten");
    assert!(
        all_main.contains("__stm::loop_in_transactions("),
        "{all_main}"
    );
    let all_out = cargo(&["run", "--offline", "-q"], &all.join("Cargo.toml"));
    assert_eq!(a, String::from_utf8_lossy(&all_out.stdout));
    cargo(&["test", "--offline", "-q"], &all.join("Cargo.toml"));

    // Rewriting the rewritten crate changes nothing.
    let check = Command::new(env!("CARGO_BIN_EXE_stm-rewrite"))
        .arg(&rewritten)
        .arg("--check")
        .output()
        .expect("stm-rewrite runs");
    assert_eq!(check.status.code(), Some(0));
}

#[test]
fn the_rewritten_examples_build_and_pass_their_tests() {
    let root = workspace().join("target/stm-rewrite-tests/examples-ws");
    let _ = std::fs::remove_dir_all(&root);
    rewrite(&workspace().join("examples"), &root.join("examples"));
    // A workspace like the repository's, reduced to the examples package.
    let manifest = format!(
        "[workspace]\nresolver = \"2\"\nmembers = [\"examples\"]\n\n\
         [workspace.package]\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         rust-version = \"1.85\"\nlicense = \"MIT OR Apache-2.0\"\n\n\
         [workspace.dependencies]\nstm-runtime = {{ path = {:?} }}\n\
         clap = {{ version = \"4\", features = [\"derive\"] }}\n\n\
         [workspace.lints.rust]\nunsafe_op_in_unsafe_fn = \"deny\"\n",
        workspace().join("stm-runtime").display().to_string()
    );
    std::fs::write(root.join("Cargo.toml"), manifest).expect("manifest");
    std::fs::copy(workspace().join("Cargo.lock"), root.join("Cargo.lock")).expect("lock");
    let bank = std::fs::read_to_string(root.join("examples/bank.rs")).expect("rewritten");
    assert!(bank.contains("__stm_tx"));
    // Builds the examples and runs the package's tests (which run every example).
    cargo(&["test", "--offline", "-q"], &root.join("Cargo.toml"));
    let out = Command::new(target_dir().join("debug/examples/bank"))
        .args(["--threads", "2", "--accounts", "64", "--transfers", "2000"])
        .output()
        .expect("the rewritten bank runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("check passed"), "{text}");
}
