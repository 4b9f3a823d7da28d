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
    let src = "use stm_runtime as stm;\n\nfn helper(r: &stm::Root<i64>) -> i64 {\n    \
               r.get(stm::tx!()).get() * 2\n}\n\n\
               const fn c(_: Option<stm::Root<i32>>) -> i32 {\n    1\n}\n\n\
               fn pure(x: i64) -> i64 {\n    x + 1\n}\n\n\
               fn main() {\n    let r = stm::atomically(|tx| tx.root(tx.alloc(2)));\n    \
               println!(\"{}\", pure(helper(&r)));\n}\n";
    fs::write(d.path().join("main.rs"), src).unwrap();
    let o = run(&["--all-functions", "--in-place", "main.rs"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("main.rs:15:1: `main` left alone"), "{err}");
    assert!(
        err.contains("main.rs:7:1: `c` left alone: a `const fn`"),
        "{err}"
    );
    // A function that cannot reach the heap is left alone quietly, and counted.
    assert!(!err.contains("`pure`"), "{err}");
    assert!(
        err.contains("3 functions left alone (1 that cannot reach the shared heap)"),
        "{err}"
    );
    let out = fs::read_to_string(d.path().join("main.rs")).unwrap();
    assert!(
        out.contains("::stm_runtime::__private::atomically_fn(|__stm_tx"),
        "{out}"
    );
    assert!(
        out.contains("\nfn pure(x: i64) -> i64 {\n    x + 1\n}\n"),
        "{out}"
    );
    assert!(out.ends_with(
        "fn main() {\n    let r = stm::atomically(|tx| tx.root(tx.alloc(2)));\n    \
                           println!(\"{}\", pure(helper(&r)));\n}\n"
    ));
    // --verbose names it.
    fs::write(d.path().join("fresh.rs"), src).unwrap();
    let o = run(&["--all-functions", "-v", "fresh.rs"], d.path());
    assert!(
        text(&o.stderr)
            .contains("fresh.rs:11:1: `pure` left alone: it cannot reach the shared heap"),
        "{}",
        text(&o.stderr)
    );
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
               fn sum(v: &[u64]) -> u64 {\n    let mut s = 0;\n    for x in v {\n        s += x + total();\n    }\n    s\n}\n\n\
               fn bump(c: Gc<Counter>, n: u64) {\n    for _ in 0..n {\n        c.hits += 1;\n    }\n}\n\n\
               fn later() -> u64 {\n    let f = || {\n        let mut k = 0;\n        while k < 2 {\n            k += total();\n        }\n        k\n    };\n    f()\n}\n\n\
               fn joins() {\n    for _ in 0..2 {\n        std::thread::spawn(|| {}).join().ok();\n        total();\n    }\n}\n\n\
               fn total() -> u64 {\n    stm::tx!().retry()\n}\n\n\
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
               fn rounds(queue: &stm::TransactionQueue<'_>, seen: &stm::Root<u32>, n: u32) {\n    \
               for _ in 0..n {\n        queue.run(2);\n    }\n}\n";
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

#[test]
fn dash_reads_standard_input_and_writes_standard_output() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let mut child = bin()
        .arg("-")
        .current_dir(d.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!(
        "{ACCOUNT}\n#[stm::transactional]\nfn get(a: Gc<Account>) -> i64 {{\n    a.balance\n}}\n"
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("use stm_runtime as stm;"), "{out}");
    assert!(out.contains("__stm::field!"), "{out}");
    assert!(!out.contains("#[stm::transactional]\nfn get"), "{out}");
    // Nothing was written next to it, and the report went to standard error.
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    assert!(
        text(&o.stderr).contains("1 functions"),
        "{}",
        text(&o.stderr)
    );
    // `-` with a mode that writes files is a usage error.
    let o = run(&["-", "--out-dir", "x"], d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("standard output"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn in_place_refuses_a_dirty_git_tree_unless_allowed() {
    let d = tree();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(d.path())
            .output()
            .expect("git runs");
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "x",
    ]);
    let bank = d.path().join("src/bank.rs");
    fs::write(&bank, format!("{BANK}// an edit not committed\n")).unwrap();
    let before = fs::read_to_string(&bank).unwrap();
    let o = run(&["src", "--in-place"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("uncommitted changes (src/bank.rs)"), "{err}");
    assert!(err.contains("--allow-dirty"), "{err}");
    assert_eq!(
        fs::read_to_string(&bank).unwrap(),
        before,
        "nothing written"
    );
    let o = run(&["src", "--in-place", "--allow-dirty"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let after = fs::read_to_string(&bank).unwrap();
    assert!(after.contains("__stm::field!") && after.ends_with("// an edit not committed\n"));
}

#[test]
fn a_file_reached_twice_through_symlinks_is_rewritten_once() {
    let d = tree();
    std::os::unix::fs::symlink("bank.rs", d.path().join("src/alias.rs")).unwrap();
    std::os::unix::fs::symlink("src", d.path().join("again")).unwrap();
    let o = run(&["src", "again", "--in-place"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let meta = fs::symlink_metadata(d.path().join("src/alias.rs")).unwrap();
    assert!(meta.file_type().is_symlink(), "the link is kept a link");
    let bank = fs::read_to_string(d.path().join("src/bank.rs")).unwrap();
    assert_eq!(bank.matches("pub fn deposit").count(), 1);
    assert!(bank.contains("__stm::field!"), "{bank}");
    // Rewriting once more finds nothing to do: the first run did not rewrite it twice.
    let o = run(&["src", "again", "--check"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

/// Inputs that make recursive parsers overflow their stack: each is a clean error (or a
/// rewrite), never a crash.
#[test]
fn pathological_nesting_is_an_error_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let n = 100_000;
    let shapes: Vec<(&str, String)> = vec![
        (
            "parens",
            format!("fn f() -> i32 {{ {}1{} }}\n", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "unary",
            format!("fn f() -> i32 {{ {}1 }}\n", "- ".repeat(n)),
        ),
        (
            "binary",
            format!("fn f() -> i32 {{ 1{} }}\n", " + 1".repeat(n)),
        ),
        (
            "methods",
            format!("fn f(x: i32) -> i32 {{ x{} }}\n", ".abs()".repeat(n)),
        ),
        (
            "blocks",
            format!("fn f() {{ {}{} }}\n", "{".repeat(n), "}".repeat(n)),
        ),
        (
            "closures",
            format!("fn f() {{ let _c = {}1; }}\n", "|| ".repeat(n)),
        ),
        (
            "types",
            format!("fn f(_: {}i32{}) {{}}\n", "Vec<".repeat(n), ">".repeat(n)),
        ),
        (
            "else_if",
            format!(
                "fn f(a: bool) {{ if a {{}} {} }}\n",
                "else if a {} ".repeat(n)
            ),
        ),
        (
            "modules",
            format!("{}{}\n", "mod m { ".repeat(n), "}".repeat(n)),
        ),
        (
            "macro",
            format!(
                "fn f() {{ println!(\"{{}}\", {}1{}); }}\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
        ),
        ("unclosed", format!("fn f() {{ {}\n", "(".repeat(n))),
    ];
    for (name, src) in &shapes {
        let file = format!("{name}.rs");
        fs::write(d.path().join(&file), src).unwrap();
        for all in [false, true] {
            let mut args = vec![file.as_str(), "--diff"];
            if all {
                args.push("--all-functions");
            }
            let o = run(&args, d.path());
            let err = text(&o.stderr);
            assert!(
                matches!(o.status.code(), Some(0 | 2)),
                "{name} {args:?}: {:?}: {err}",
                o.status
            );
            if o.status.code() == Some(2) {
                assert!(err.contains(&format!("error: {file}:1:")), "{name}: {err}");
            }
        }
    }
    // Moderate nesting is rewritten as usual.
    let src = format!(
        "#[stm_runtime::transactional]\nfn f() -> i32 {{ {}1{} }}\n",
        "(".repeat(500),
        ")".repeat(500)
    );
    fs::write(d.path().join("fine.rs"), src).unwrap();
    let o = run(&["fine.rs", "--diff"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("+++ b/fine.rs"));
}

#[test]
fn errors_show_the_source_line_with_a_caret() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("bad.rs"), "fn ok() {}\nfn broken( {\n").unwrap();
    let o = run(&["bad.rs", "--diff"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("error: bad.rs:2:"), "{err}");
    assert!(err.contains("2 | fn broken( {"), "{err}");
    assert!(err.contains('^'), "{err}");
}

#[test]
fn help_has_examples_and_not_transactional_items_are_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["--help"], d.path());
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    assert!(help.contains("Examples:") && help.contains("stm-rewrite - < src/lib.rs"));
    assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
    let src = "use stm_runtime as stm;\n\n\
               #[stm::not_transactional]\nfn keep(r: &stm::Root<u64>) -> u64 {\n    \
               stm::atomically(|tx| r.get(tx).get())\n}\n\n\
               fn take(r: &stm::Root<u64>) -> u64 {\n    \
               stm::atomically(|tx| r.get(tx).get())\n}\n";
    fs::write(d.path().join("lib.rs"), src).unwrap();
    let o = run(&["lib.rs", "--all-functions", "--diff"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let diff = text(&o.stdout);
    // `take` runs in a transaction now; `keep` is as it was.
    assert!(diff.contains("-    stm::atomically(|tx| r.get(tx).get())\n+    ::stm_runtime::__private::atomically_fn"), "{diff}");
    assert_eq!(diff.matches("atomically_fn").count(), 1, "{diff}");
    assert!(
        !diff.contains("-fn keep(") && !diff.contains("+fn keep("),
        "{diff}"
    );
}
