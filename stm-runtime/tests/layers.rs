//! The runtime's modules are layered: each one uses only modules of its own layer or of
//! lower ones (ARCHITECTURE.md, "Layers"). This test reads the sources and fails on any
//! `crate::` path that points upwards, so the protocol stays readable on its own and a
//! cycle through it cannot come back unnoticed.
//!
//! What it reads: every `crate::name` and `use crate::{name, ..}` outside comments and
//! outside the unit-test module at the end of a file (tests may use anything).

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. Modules of one layer may use each other.
const LAYERS: &[(&str, &[&str])] = &[
    ("data", &["config", "sys", "stats", "report", "footprint"]),
    ("heap and committed heap", &["heap", "committed"]),
    ("segments and their pool", &["owner", "segment", "pool"]),
    ("protocol", &["facade", "protocol", "commit"]),
    ("collector", &["gc"]),
    ("transactions", &["tx", "handle", "runtime"]),
    (
        "library",
        &[
            "queue",
            "series",
            "tvec",
            "text",
            "tmap",
            "tqueue",
            "macro_support",
            "lib",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The code of a file without comments and without its trailing `mod tests`.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(") && t.contains("test") {
            if let Some(next) = lines.peek() {
                if next.trim_start().starts_with("mod tests") {
                    break;
                }
            }
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The modules a piece of code names through `crate::`.
fn uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        if start > 0 && (bytes[start - 1] == b'$' || bytes[start - 1].is_ascii_alphanumeric()) {
            continue; // `$crate::` (the macros' own paths) or part of a longer name
        }
        let rest = &code[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_uses_only_its_own_layer_or_lower_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut seen = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("the runtime's src/") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let Some(mine) = layer_of(&module) else {
            violations.push(format!(
                "src/{module}.rs is in no layer: add it to LAYERS in tests/layers.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("a source file");
        for used in uses(&code_of(&text)) {
            // Items re-exported at the crate root (`crate::Root`, `crate::__private`) are
            // the library's public face, not a module.
            let Some(theirs) = layer_of(&used) else {
                continue;
            };
            seen.insert(module.clone(), mine);
            if theirs > mine {
                violations.push(format!(
                    "src/{module}.rs ({}) uses crate::{used} ({}), a higher layer",
                    LAYERS[mine].0, LAYERS[theirs].0
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "the runtime's layering is broken:\n  {}",
        violations.join("\n  ")
    );
    assert!(
        seen.len() >= 10,
        "the check found too few modules to be reading the sources: {seen:?}"
    );
}

#[test]
fn the_reader_finds_paths_and_groups_and_skips_comments_and_tests() {
    let code = code_of(
        "use crate::commit::{self, STM};\n\
         use crate::{heap, log::Entry};\n\
         // crate::tx in a comment\n\
         let x = crate::gc::MIN; // crate::series here too\n\
         $crate::__private::x();\n\
         #[cfg(all(test, not(feature = \"gil\")))]\n\
         mod tests {\n    use crate::queue;\n}\n",
    );
    assert_eq!(uses(&code), ["commit", "heap", "log", "gc"]);
}
