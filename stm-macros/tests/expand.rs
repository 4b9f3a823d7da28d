//! Expansion snapshots: `tests/expand/NAME.rs` expands to `tests/expand/NAME.expanded.rs`.
//! Regenerate after a deliberate change with `STM_BLESS=1 cargo test -p stm-macros --test expand`.

use std::path::Path;

#[test]
fn snapshots_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let bless = std::env::var_os("STM_BLESS").is_some();
    let mut checked = 0;
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/expand exists") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable input");
        let expanded = stm_transform::expand_file(&source).expect("input parses");
        let out = path.with_extension("expanded.rs");
        if bless {
            std::fs::write(&out, &expanded).expect("writable snapshot");
        } else if std::fs::read_to_string(&out).ok().as_deref() != Some(expanded.as_str()) {
            stale.push(out.display().to_string());
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected at least three snapshot inputs");
    assert!(
        stale.is_empty(),
        "stale expansion snapshots (run with STM_BLESS=1 to regenerate): {stale:?}"
    );
}
