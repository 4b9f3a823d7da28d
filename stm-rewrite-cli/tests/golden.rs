//! Golden trees: `tests/golden/CASE/input` rewritten with `--out-dir` must equal
//! `tests/golden/CASE/expected` file for file. The case `all-functions` runs with
//! `--all-functions`. Regenerate after a deliberate change with
//! `STM_BLESS=1 cargo test -p stm-rewrite-cli --test golden`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use stm_rewrite::{Config, Mode, RewriteOptions, Status};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).expect("readable dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, fs::read(&p).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn check_case(name: &str, all_functions: bool) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(
        vec![case.join("input")],
        Mode::OutDir(tmp.path().to_path_buf()),
    );
    config.options = RewriteOptions {
        all_functions,
        ..Default::default()
    };
    let report = stm_rewrite::run(&config);
    assert_eq!(report.status, Status::Ok, "{:?}", report.errors);
    let got = files(tmp.path());
    let expected_dir = case.join("expected");
    if std::env::var_os("STM_BLESS").is_some() {
        let _ = fs::remove_dir_all(&expected_dir);
        for (rel, bytes) in &got {
            let p = expected_dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        return;
    }
    let want = files(&expected_dir);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (rel, bytes) in &want {
        assert!(
            got[rel] == *bytes,
            "{name}/{}: differs from the golden file (STM_BLESS=1 to regenerate):\n{}",
            rel.display(),
            String::from_utf8_lossy(&got[rel])
        );
    }
    // Rewriting the output again changes nothing.
    let mut again = Config::new(vec![tmp.path().to_path_buf()], Mode::Check);
    again.options = RewriteOptions {
        all_functions,
        ..Default::default()
    };
    let report = stm_rewrite::run(&again);
    assert_eq!(
        report.status,
        Status::Ok,
        "not idempotent: {:?}",
        report.files
    );
}

#[test]
fn basic() {
    check_case("basic", false);
}

#[test]
fn all_functions() {
    check_case("all-functions", true);
}
