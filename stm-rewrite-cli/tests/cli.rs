//! Command-level tests: every mode and exit code, on temporary directories.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const ACCOUNT: &str = "use stm_runtime as stm;
use stm::Gc;

/// An account.
#[stm::object]
pub struct Account {
    pub balance: i64,
}
";

const BANK: &str = "use stm_runtime as stm;
use stm::Gc;
use crate::account::Account;

// A comment that must survive, byte for byte.
fn untouched( x :i32 ) -> i32 { x+1 }   // odd formatting kept

/// Deposits.
#[stm::transactional]
pub fn deposit(a: Gc<Account>, amount: i64) {
    a.balance += amount;
}

mod inner {
    #[stm::transactional]
    pub fn read(a: super::Gc<super::Account>) -> i64 {
        a.balance
    }
}
";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stm-rewrite"))
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("stm-rewrite runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small crate: `src/lib.rs`, `src/bank.rs`, `src/account.rs`, a README, a `.gitignore`d file.
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("temp dir");
    let src = d.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("lib.rs"), "pub mod account;\npub mod bank;\n").unwrap();
    fs::write(src.join("account.rs"), ACCOUNT).unwrap();
    fs::write(src.join("bank.rs"), BANK).unwrap();
    fs::write(d.path().join("README.md"), "# a crate\n").unwrap();
    fs::write(d.path().join(".gitignore"), "/generated\n").unwrap();
    fs::create_dir_all(d.path().join("generated")).unwrap();
    fs::write(
        d.path().join("generated/gen.rs"),
        "#[stm::transactional] fn g(a: Gc<A>) -> i64 { a.x }\n",
    )
    .unwrap();
    d
}

#[test]
fn out_dir_mirrors_the_tree_and_copies_other_files() {
    let d = tree();
    let out = d.path().join("out");
    let o = run(&["src", "--out-dir", out.to_str().unwrap()], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bank = fs::read_to_string(out.join("bank.rs")).unwrap();
    assert!(
        bank.contains("__stm::update(a, __stm::field!(a, balance)"),
        "{bank}"
    );
    assert!(!bank.contains("#[stm::transactional]"));
    // Splices: everything outside the rewritten items is byte for byte.
    assert!(bank.starts_with(
        "use stm_runtime as stm;\nuse stm::Gc;\nuse crate::account::Account;\n\n\
         // A comment that must survive, byte for byte.\n\
         fn untouched( x :i32 ) -> i32 { x+1 }   // odd formatting kept\n\n/// Deposits.\n"
    ));
    // The item inside the module keeps the module's indentation.
    assert!(bank.contains("\n    pub fn read<'tx>(a: super::Gc<'tx, super::Account>) -> i64 {\n"));
    assert_eq!(fs::read_to_string(out.join("account.rs")).unwrap(), ACCOUNT);
    assert_eq!(
        fs::read_to_string(out.join("lib.rs")).unwrap(),
        "pub mod account;\npub mod bank;\n"
    );
    // The source is untouched.
    assert_eq!(
        fs::read_to_string(d.path().join("src/bank.rs")).unwrap(),
        BANK
    );
    // No temporary files left behind.
    for e in fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "{name}");
    }
}

#[test]
fn out_dir_of_a_whole_crate_copies_non_rust_files_and_honours_gitignore() {
    let d = tree();
    let out = tempfile::tempdir().unwrap();
    let o = run(&[".", "--out-dir", out.path().to_str().unwrap()], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        fs::read_to_string(out.path().join("README.md")).unwrap(),
        "# a crate\n"
    );
    assert!(out.path().join(".gitignore").exists());
    assert!(out.path().join("src/bank.rs").exists());
    assert!(
        !out.path().join("generated").exists(),
        "ignored by .gitignore"
    );
}

#[test]
fn check_fails_with_a_diff_then_passes_on_the_rewritten_tree() {
    let d = tree();
    let o = run(&["--check", "src"], d.path());
    assert_eq!(o.status.code(), Some(1));
    let diff = text(&o.stdout);
    assert!(diff.contains("--- a/src/bank.rs"), "{diff}");
    assert!(diff.contains("+++ b/src/bank.rs"));
    assert!(diff.contains("-#[stm::transactional]"));
    assert!(!diff.contains("account.rs"), "unchanged files have no diff");
    // Nothing written.
    assert_eq!(
        fs::read_to_string(d.path().join("src/bank.rs")).unwrap(),
        BANK
    );

    let out = d.path().join("out");
    assert!(run(&["src", "--out-dir", "out"], d.path()).status.success());
    let o = run(&["--check", out.to_str().unwrap()], d.path());
    assert_eq!(o.status.code(), Some(0), "idempotent: {}", text(&o.stdout));
    assert!(o.stdout.is_empty());
}

#[test]
fn diff_prints_and_writes_nothing() {
    let d = tree();
    let o = run(&["--diff", "src"], d.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("+++ b/src/bank.rs"));
    assert_eq!(
        fs::read_to_string(d.path().join("src/bank.rs")).unwrap(),
        BANK
    );
}

#[test]
fn in_place_with_backup_then_nothing_to_do() {
    let d = tree();
    let o = run(&["--in-place", "--backup", "src"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bank = fs::read_to_string(d.path().join("src/bank.rs")).unwrap();
    assert!(bank.contains("__stm_tx"));
    assert_eq!(
        fs::read_to_string(d.path().join("src/bank.rs.bk")).unwrap(),
        BANK
    );
    assert!(
        !d.path().join("src/account.rs.bk").exists(),
        "unchanged: no backup"
    );
    let o = run(&["--in-place", "src"], d.path());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(d.path().join("src/bank.rs")).unwrap(),
        bank
    );
    assert!(text(&o.stderr).contains("0 changed"), "{}", text(&o.stderr));
}

#[test]
fn modes_are_exclusive_and_paths_required() {
    let d = tree();
    assert_eq!(
        run(&["--check", "--diff", "src"], d.path()).status.code(),
        Some(2)
    );
    assert_eq!(run(&[], d.path()).status.code(), Some(2));
    assert_eq!(run(&["--backup", "src"], d.path()).status.code(), Some(2));
}

#[test]
fn stats_table_and_json() {
    let d = tree();
    let o = run(&["--stats", "src"], d.path());
    assert_eq!(o.status.code(), Some(0));
    let table = text(&o.stdout);
    assert!(table.contains("functions barriers"), "{table}");
    assert!(table.contains("total (3 files)"), "{table}");
    assert!(
        text(&o.stderr).contains("2 functions"),
        "{}",
        text(&o.stderr)
    );

    let o = run(&["--check", "--format", "json", "src"], d.path());
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["mode"], "check");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["total"]["files"], 3);
    assert_eq!(v["total"]["changed"], 1);
    assert_eq!(v["total"]["functions_rewritten"], 2);
    assert_eq!(v["total"]["object_types"], 1);
    let bank = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "src/bank.rs")
        .expect("bank.rs");
    assert_eq!(bank["changed"], true);
    assert_eq!(bank["barriers_inserted"], 3);
    assert!(bank["diff"].as_str().unwrap().contains("+++ b/src/bank.rs"));
}

#[test]
fn a_file_that_does_not_parse_is_reported_and_the_others_are_processed() {
    let d = tree();
    fs::write(
        d.path().join("src/broken.rs"),
        "fn ok() {}\n\nfn broken( {\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let o = run(&["src", "--out-dir", out.to_str().unwrap()], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("src/broken.rs:3:"), "{err}");
    assert!(err.contains("does not parse"), "{err}");
    assert!(err.contains("1 error"), "{err}");
    assert!(fs::read_to_string(out.join("bank.rs"))
        .unwrap()
        .contains("__stm_tx"));
    // Copied unchanged, so that the mirror is complete.
    assert_eq!(
        fs::read_to_string(out.join("broken.rs")).unwrap(),
        "fn ok() {}\n\nfn broken( {\n"
    );
    // In place: the broken file is left alone, the others are rewritten.
    let o = run(&["--in-place", "src"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(fs::read_to_string(d.path().join("src/bank.rs"))
        .unwrap()
        .contains("__stm_tx"));
}

#[test]
fn non_utf8_missing_paths_and_rejected_items() {
    let d = tree();
    fs::write(d.path().join("src/latin1.rs"), b"// caf\xe9\nfn f() {}\n").unwrap();
    fs::write(
        d.path().join("src/bad.rs"),
        "use stm_runtime as stm;\n\n#[stm::transactional]\nconst fn c() -> i32 { 1 }\n",
    )
    .unwrap();
    let o = run(&["src", "nowhere", "--check"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("src/latin1.rs:1:7: not valid UTF-8"), "{err}");
    assert!(err.contains("nowhere: no such file or directory"), "{err}");
    assert!(
        err.contains("src/bad.rs:4:1: cannot rewrite: a `const fn` cannot be transactional"),
        "{err}"
    );
    // The rejected item keeps its attribute (the macro reports the same error at build time).
    let diff = text(&o.stdout);
    assert!(!diff.contains("bad.rs"), "{diff}");
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_unreadable_files() {
    let d = tree();
    std::os::unix::fs::symlink("..", d.path().join("src/loop")).unwrap();
    let secret = d.path().join("src/secret.rs");
    fs::write(&secret, "fn s() {}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let readable = fs::read(&secret).is_ok(); // root reads anything
    let o = run(&["src", "--diff"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("symbolic link loop"), "{err}");
    if !readable {
        assert!(
            err.contains("src/secret.rs: cannot read: permission denied"),
            "{err}"
        );
    }
    assert!(text(&o.stdout).contains("+++ b/src/bank.rs"));
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn all_functions_skips_main_with_a_note_and_is_idempotent() {
    let d = tempfile::tempdir().unwrap();
    let src = "use stm_runtime as stm;\n\nfn helper(x: i64) -> i64 {\n    x * 2\n}\n\n\
               const fn c() -> i32 {\n    1\n}\n\nfn main() {\n    println!(\"{}\", helper(2));\n}\n";
    fs::write(d.path().join("main.rs"), src).unwrap();
    let o = run(&["--all-functions", "--in-place", "main.rs"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("main.rs:11:1: `main` left alone"), "{err}");
    assert!(
        err.contains("main.rs:7:1: `c` left alone: a `const fn`"),
        "{err}"
    );
    let out = fs::read_to_string(d.path().join("main.rs")).unwrap();
    assert!(
        out.contains("::stm_runtime::__private::atomically_fn(|__stm_tx"),
        "{out}"
    );
    assert!(out.ends_with("fn main() {\n    println!(\"{}\", helper(2));\n}\n"));
    let o = run(&["--all-functions", "--check", "main.rs"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

#[test]
fn in_transactions_items_are_rewritten_and_their_errors_have_positions() {
    let d = tree();
    let src = "use stm_runtime as stm;\nuse stm::{Gc, Root};\n\n\
               #[stm::in_transactions]\nfn bad(n: u64, c: Gc<Counter>) {\n    for _ in 0..n {}\n}\n\n\
               #[stm::in_transactions]\npub fn good(r: &Root<Counter>, n: u64) -> u64 {\n    \
               let mut t = 0;\n    for _ in 0..n {\n        t += r.get(stm::tx!()).hits;\n    }\n    t\n}\n\n\
               struct S;\n\nimpl S {\n    #[in_transactions]\n    fn m(&self) {\n        \
               let mut i = 0;\n        while i < 3 {\n            i += 1;\n        }\n    }\n}\n\n\
               #[stm::transactional]\n#[stm::in_transactions]\nfn both() {}\n";
    fs::write(d.path().join("src/loops.rs"), src).unwrap();
    let o = run(&["--check", "--format", "json", "src"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "src/loops.rs:5:19: cannot rewrite: a function that runs in transactions cannot \
             take a handle"
        ),
        "{err}"
    );
    assert!(
        err.contains("src/loops.rs:31:1: cannot rewrite: an item marked #[transactional]"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let loops = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "src/loops.rs")
        .expect("loops.rs");
    assert_eq!(loops["functions_rewritten"], 2, "{loops}");
    assert_eq!(loops["break_loops"], 2, "{loops}");
    assert_eq!(v["total"]["break_loops"], 2);

    // The good items are rewritten, the rejected ones keep their attributes.
    let o = run(&["--in-place", "src"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("2 loops given break points"));
    let out = fs::read_to_string(d.path().join("src/loops.rs")).unwrap();
    assert_eq!(out.matches("#[stm::in_transactions]").count(), 2, "{out}");
    assert!(out.contains("#[stm::in_transactions]\nfn bad("), "{out}");
    assert!(out.contains("#[stm::in_transactions]\nfn both("), "{out}");
    assert!(!out.contains("#[in_transactions]"), "{out}");
    assert_eq!(
        out.matches("__stm::loop_in_transactions(").count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("let mut t = 0;\n"),
        "unchanged statements kept: {out}"
    );
    // Idempotent: only the rejected items are left, reported again.
    let o = run(&["--check", "src"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stdout).is_empty(), "{}", text(&o.stdout));
}

#[test]
fn all_functions_runs_functions_with_loops_in_transactions() {
    let d = tempfile::tempdir().unwrap();
    let src = "use stm_runtime as stm;\nuse stm::Gc;\n\n\
               fn sum(v: &[u64]) -> u64 {\n    let mut s = 0;\n    for x in v {\n        s += x;\n    }\n    s\n}\n\n\
               fn bump(c: Gc<Counter>, n: u64) {\n    for _ in 0..n {\n        c.hits += 1;\n    }\n}\n\n\
               fn later() -> u64 {\n    let f = || {\n        let mut k = 0;\n        while k < 2 {\n            k += 1;\n        }\n        k\n    };\n    f()\n}\n\n\
               fn joins() {\n    for _ in 0..2 {\n        std::thread::spawn(|| {}).join().ok();\n    }\n}\n\n\
               fn main() {\n    let mut n = 0;\n    while n < 3 {\n        n += 1;\n    }\n    \
               println!(\"{}\", sum(&[n]) + later());\n    joins();\n}\n";
    fs::write(d.path().join("main.rs"), src).unwrap();
    let o = run(
        &["--all-functions", "--stats", "--in-place", "main.rs"],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(!err.contains("`main` left alone"), "{err}");
    assert!(
        err.contains(
            "main.rs:29:1: `joins` left alone: its loops block, spawn threads or run \
             transaction queues"
        ),
        "{err}"
    );
    assert!(err.contains("2 loops given break points"), "{err}");
    let table = text(&o.stdout);
    assert!(table.contains("inferred breaks"), "{table}");
    let out = fs::read_to_string(d.path().join("main.rs")).unwrap();
    let item = |name: &str| {
        let start = out.find(&format!("fn {name}")).expect("the function");
        let end = out[start..].find("\n}\n").map_or(out.len(), |e| start + e);
        out[start..end].to_string()
    };
    // No handle and a loop: in transactions, cut at break points.
    assert!(
        item("sum").contains("__stm::loop_in_transactions("),
        "{out}"
    );
    assert!(
        item("main").contains("__stm::loop_in_transactions("),
        "{out}"
    );
    assert!(
        item("main").contains("    println!(\"{}\", sum(&[n]) + later());\n"),
        "{out}"
    );
    // A handle: in the caller's transaction, the loop an ordinary one.
    assert!(item("bump").contains("::stm_runtime::Gc::tx(c)"), "{out}");
    assert!(!item("bump").contains("loop_in_transactions"), "{out}");
    // Its only loop is in a closure: one transaction.
    assert!(item("later").contains("__private::atomically_fn("), "{out}");
    assert!(
        item("joins").starts_with("fn joins() {\n    for _ in 0..2 {"),
        "{out}"
    );
    let o = run(&["--all-functions", "--check", "main.rs"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

#[test]
fn json_output_is_one_document_even_with_errors() {
    let d = tree();
    let o = run(&["--format", "json", "src", "missing"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    assert_eq!(v["exit_code"], 2);
}

#[test]
fn a_large_tree_piped_gets_no_progress_bar_only_the_summary() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..150 {
        let dir = d.path().join(format!("m{}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("f{i}.rs")),
            format!("#[stm::transactional]\nfn f{i}(a: Gc<A>) -> i64 {{\n    a.x\n}}\n"),
        )
        .unwrap();
    }
    let o = run(&["--check", "-j", "3", "."], d.path());
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("stm-rewrite: 150 Rust files, 150 would change; 150 functions"),
        "{err}"
    );
    let o = run(&["--check", "-q", "."], d.path());
    assert!(o.stderr.is_empty());
    // Deterministic order whatever the threads.
    let again = run(&["--check", "-j", "1", "."], d.path());
    assert_eq!(o.stdout, again.stdout);
}

#[test]
fn an_output_directory_inside_the_tree_is_not_walked() {
    let d = tree();
    for _ in 0..2 {
        let o = run(&[".", "--out-dir", "out"], d.path());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    assert!(d.path().join("out/src/bank.rs").exists());
    assert!(!d.path().join("out/out").exists());
}

/// Issue 13, class 8: `TransactionQueue::run` refuses to run inside a transaction (its tasks'
/// commits would not be in the caller's snapshot), so `--all-functions` must not put a loop
/// that calls it into a series of transactions.
#[test]
fn all_functions_keeps_loops_that_run_a_queue_out_of_transactions() {
    let d = tempfile::tempdir().unwrap();
    let src = "use stm_runtime as stm;\n\n\
               fn rounds(queue: &stm::TransactionQueue<'_>, n: u32) {\n    for _ in 0..n {\n        \
               queue.run(2);\n    }\n}\n";
    fs::write(d.path().join("lib.rs"), src).unwrap();
    let o = run(&["--all-functions", "--in-place", "lib.rs"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("`rounds` left alone: its loops block, spawn threads or run transaction"),
        "{err}"
    );
    let out = fs::read_to_string(d.path().join("lib.rs")).unwrap();
    assert_eq!(out, src, "the function must stay as written");
}
