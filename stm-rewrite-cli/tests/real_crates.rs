//! `stm-rewrite --all-functions` on copies of real crates from the registry, each rewritten
//! crate built: the tool's own verification must say it builds, and an independent
//! `cargo check` of the output must agree. One crate whose tests pass unchanged (oorandom,
//! whose loops get break points) also runs its tests rewritten.
//!
//! The crates are dependencies of this workspace, so cargo has their sources already
//! (`cargo metadata` says where); their dev-dependencies are fetched like any other.
//! `scripts/test-all` runs this once (in its STM pass): the CLI does not link the runtime,
//! so GIL mode changes nothing here (`STM_REWRITE_SKIP_REAL_CRATES=1` skips it, loudly).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The crates: name, and whether its own tests run on the rewritten copy.
const CRATES: &[(&str, bool)] = &[
    ("fastrand", false),
    ("itoa", false),
    ("either", false),
    ("oorandom", true),
    ("heck", false),
    ("glob", false),
];

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Where cargo keeps each crate's source: `cargo metadata` of this workspace.
fn sources() -> Vec<(String, PathBuf)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&workspace)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata gives JSON");
    let packages = meta["packages"].as_array().expect("a package list");
    CRATES
        .iter()
        .map(|(name, _)| {
            let p = packages
                .iter()
                .filter(|p| p["name"] == *name)
                .max_by_key(|p| p["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| panic!("`{name}` is no longer a dependency of the workspace"));
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let id = format!("{name}-{}", p["version"].as_str().unwrap());
            (id, manifest.parent().unwrap().to_path_buf())
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else if ty.is_file() {
            fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn in_crate(dir: &Path, target: &Path, cmd: &mut Command) -> Output {
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("the command runs")
}

#[test]
fn rewritten_registry_crates_build() {
    if std::env::var_os("STM_REWRITE_SKIP_REAL_CRATES").is_some() {
        eprintln!("SKIPPED: STM_REWRITE_SKIP_REAL_CRATES is set");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    // One target directory for every crate and round: the runtime is built once, and kept
    // between runs of the suite.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-crates");
    let mut rewritten_total = 0;
    for ((id, src), &(_, run_tests)) in sources().iter().zip(CRATES) {
        eprintln!("== {id}");
        let input = scratch.path().join("in").join(id);
        let output = scratch.path().join("out").join(id);
        copy_tree(src, &input);
        let o = in_crate(
            &input,
            &target,
            Command::new(env!("CARGO_BIN_EXE_stm-rewrite"))
                .args([".", "--all-functions", "--include-pure", "--no-progress"])
                .arg("--out-dir")
                .arg(&output),
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{id}: {err}");
        let verified = err
            .lines()
            .find(|l| l.contains("verified: the rewritten package builds"))
            .unwrap_or_else(|| panic!("{id}: no verification: {err}"));
        eprintln!("{verified}");
        let summary = err.lines().last().unwrap_or_default();
        eprintln!("{summary}");
        // "N Rust files, M rewritten; F functions, ..."
        let functions: usize = summary
            .split("; ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{id}: cannot read the summary: {summary}"));
        assert!(functions > 0, "{id}: nothing was rewritten: {err}");
        rewritten_total += functions;
        // The output really is rewritten, and depends on the runtime.
        let manifest = fs::read_to_string(output.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("stm-runtime"), "{id}: {manifest}");
        // An independent build of what was written, with the targets the tool checked.
        let targets: Vec<&str> = verified
            .split("`cargo check ")
            .nth(1)
            .and_then(|s| s.split('`').next())
            .unwrap_or("--all-targets")
            .split(' ')
            .collect();
        let o = in_crate(&output, &target, cargo().arg("check").args(&targets));
        assert!(o.status.success(), "{id}: {}", text(&o.stderr));
        if run_tests {
            let o = in_crate(&output, &target, cargo().args(["test", "--lib"]));
            assert!(
                o.status.success(),
                "{id}: its tests fail rewritten: {}{}",
                text(&o.stdout),
                text(&o.stderr)
            );
        }
    }
    assert!(
        rewritten_total > 50,
        "{rewritten_total} functions rewritten"
    );
}
