//! Property test on real-world code: every `.rs` file of the crates in Cargo's registry cache
//! (the build's own dependencies) is rewritten, with and without `--all-functions`. Each one
//! must either rewrite to code that parses again and is unchanged by a second rewrite
//! (idempotent), or be reported as a clean error: never a panic.
//!
//! The first 200 files (in path order) by default; `STM_REWRITE_ALL_FILES=1` runs them all.

use std::path::{Path, PathBuf};

use stm_rewrite::{learn_source, rewrite_source, Knowledge, RewriteOptions};

fn registry_files() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Generated inputs that stress the splicing: unusual but valid files and invalid ones.
const GENERATED: &[&str] = &[
    "",
    "\u{feff}#[stm::transactional] fn f(a: Gc<A>) -> i64 { a.x }",
    "#!/usr/bin/env run-cargo-script\n#[stm::transactional]\nfn f(a: Gc<A>) { a.x = 1; }\n",
    "#![allow(dead_code)]\nmod m { mod n { #[transactional] fn f(a: Gc<A>) { a.x += 1 } } }\n",
    "fn é() { let s = \"ü\"; }\n#[transactional] fn g(a: Gc<A>) -> u8 { a.ü }\n",
    "impl<'tx> X<'tx> { #[transactional] fn f(&self, a: Gc<A>) {} }",
    "#[transactional] impl X { fn a(self: Gc<Self>) {} fn b(self: Gc<Self>) {} }",
    "#[transactional] struct S;",
    "#[transactional(crate = ::my::rt)] fn f(a: Gc<A>) { a.x = r\"multi\nline\"; }",
    "#[transactional(nonsense)] fn f() {}",
    "fn f( {",
    "#[transactional] fn f() { let x = ; }",
    "macro_rules! m { () => {} }\n#[transactional] fn f(a: Gc<A>) { m!(); a.b.c.d = 1; }",
    "#[transactional] async fn f() {}",
    "#[transactional] fn f(a: Gc<A>) { std::thread::spawn(|| {}); }",
    "trait T { fn d(&self) {} }\nextern \"C\" { fn c(); }\nunion U { a: u8 }\n",
    "#[stm::in_transactions]\nfn f(n: u64) -> u64 {\n    let mut s = 0;\n    for i in 0..n { s += i; }\n    s\n}\n",
    "#[in_transactions] fn f(a: Gc<A>) { loop {} }",
    "#[in_transactions] impl X { fn f() { loop {} } }",
    "#[in_transactions] fn f() { let x = stm::tx!(); }",
    "#[transactional] #[in_transactions] fn f() {}",
    "fn main() {\n    'o: loop { while true { break 'o; } }\n}\nfn g() { for _ in 0..2 { std::thread::spawn(|| {}).join(); } }\n",
];

fn check(name: &str, source: &str, knowledge: &Knowledge, counts: &mut (usize, usize)) {
    for all_functions in [false, true] {
        // Pure functions too: the property is about the rewriter, on as much code as can be.
        let options = RewriteOptions {
            all_functions,
            include_pure: all_functions,
        };
        let result = std::panic::catch_unwind(|| rewrite_source(source, knowledge, options));
        let Ok(result) = result else {
            panic!("{name}: panicked (all_functions = {all_functions})");
        };
        match result {
            Ok(r) => {
                counts.0 += 1;
                if r.output != source {
                    let reparsed = syn::parse_file(r.output.trim_start_matches('\u{feff}'));
                    // A shebang line is kept as it was; syn parses it too.
                    assert!(
                        reparsed.is_ok(),
                        "{name}: the output does not parse ({:?}, all_functions = \
                         {all_functions}):\n{}",
                        reparsed.err(),
                        r.output
                    );
                }
                let again = rewrite_source(&r.output, knowledge, options)
                    .unwrap_or_else(|d| panic!("{name}: the output fails: {d:?}"));
                assert!(
                    again.output == r.output,
                    "{name}: not idempotent (all_functions = {all_functions})"
                );
            }
            Err(d) => {
                counts.1 += 1;
                assert!(d.at.line >= 1 && d.at.column >= 1, "{name}: {d:?}");
                assert!(!d.message.is_empty());
                assert!(
                    !d.message.contains("internal error"),
                    "{name}: internal error: {}",
                    d.message
                );
            }
        }
    }
}

#[test]
fn generated_inputs_never_panic() {
    let mut counts = (0, 0);
    for (i, src) in GENERATED.iter().enumerate() {
        let mut k = Knowledge::default();
        learn_source(&mut k, src);
        check(&format!("generated #{i}"), src, &k, &mut counts);
    }
    assert!(counts.0 > 0 && counts.1 > 0, "{counts:?}");
}

#[test]
fn registry_files_rewrite_or_fail_cleanly() {
    let mut files = registry_files();
    if std::env::var_os("STM_REWRITE_ALL_FILES").is_none() {
        files.truncate(200);
    }
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect();
    let mut knowledge = Knowledge::default();
    for (_, t) in &texts {
        learn_source(&mut knowledge, t);
    }
    let mut counts = (0, 0);
    for (p, t) in &texts {
        check(&p.display().to_string(), t, &knowledge, &mut counts);
    }
    eprintln!(
        "{} files: {} rewrites, {} clean errors",
        texts.len(),
        counts.0,
        counts.1
    );
}
