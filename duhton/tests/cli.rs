//! The `duhton` binary: command line, exit status, stderr, stdin, the REPL, hostile input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn duhton(args: &[&str], stdin: &[u8]) -> Output {
    duhton_env(args, stdin, &[])
}

fn duhton_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duhton"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the duhton binary runs");
    let mut input = child.stdin.take().expect("piped stdin");
    // A process that refuses its command line exits without reading: ignore the pipe.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("the binary finishes")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn script(name: &str, src: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duhton-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, src).expect("script written");
    path
}

#[test]
fn runs_a_file_with_threads() {
    let path = script(
        "ok.duh",
        "(setq c (container 0)) (defun f () (set c (+ (get c) 1)))
         (setq i 0) (while (< i 50) (transaction f) (setq i (+ i 1)))
         (run-transactions) (print (get c))",
    );
    for threads in ["1", "2"] {
        let out = duhton(&["--num-threads", threads, path.to_str().unwrap()], b"");
        assert!(out.status.success());
        assert_eq!(text(&out.stdout), "50\n");
        assert_eq!(text(&out.stderr), "");
    }
}

#[test]
fn reads_the_program_from_stdin() {
    let out = duhton(&["-"], b"(print (+ 1 2))");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "3\n");
}

#[test]
fn errors_go_to_stderr_with_a_failure_status() {
    let out = duhton(&["-"], b"(print 1) (print x)");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "1\n");
    // The position is the form that failed: `(print x)`, line 1, column 11.
    assert_eq!(
        text(&out.stderr),
        "Error: <stdin>:1:11: symbol not defined as a variable: 'x'\n"
    );
    let path = script(
        "pos.duh",
        "(defun f (l)\n  (get l 5))\n(print 1)\n(f (list 1 2))\n",
    );
    let out = duhton(&[path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "Error: {}:2:3: list_get: index out of range\n",
            path.display()
        )
    );
    let out = duhton(&["/nonexistent/file.duh"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("Error: cannot open '/nonexistent/file.duh': "));
}

#[test]
fn hostile_input_is_a_clean_error() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"(/ 1 0)".to_vec(),
            "Error: <stdin>:1:1: /: division by zero\n",
        ),
        (b"((((".to_vec(), "Error: <stdin>:1:4: more '(' than ')'\n"),
        (b"))".to_vec(), "Error: <stdin>:1:1: more ')' than '('\n"),
        (
            b"(defun f (n) (f n)) (f 1)".to_vec(),
            "Error: <stdin>:1:14: maximum recursion depth exceeded\n",
        ),
    ];
    for (src, stderr) in cases {
        let out = duhton(&["--num-threads", "2", "-"], &src);
        assert_eq!(out.status.code(), Some(1), "{}", text(&src));
        assert_eq!(text(&out.stderr), stderr);
    }
    // The depth is a stack limit, so which form of the recursion crosses it depends on the
    // frames' sizes (the build): either form on the recursive path is the right answer.
    let src = b"(defun f (n) (+ 1 (f n))) (transaction f 1)";
    let out = duhton(&["--num-threads", "2", "-"], src);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        [
            "Error: <stdin>:1:14: maximum recursion depth exceeded\n",
            "Error: <stdin>:1:19: maximum recursion depth exceeded\n"
        ]
        .contains(&err.as_str()),
        "{err}"
    );
    // Huge ints wrap; binary junk reads as symbols.
    let out = duhton(
        &["-"],
        b"(print 123456789012345678901234567890 (+ 2147483647 1))",
    );
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "-1 -2147483648\n");
    let junk: Vec<u8> = (0..=255u8).cycle().take(4000).collect();
    let out = duhton(&["-"], &junk);
    assert!(!out.status.success());
    assert!(text(&out.stderr).starts_with("Error: "));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn sleepms_reports_on_stderr() {
    let out = duhton(&["-"], b"(sleepms 5) (print 1)");
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "[sleeping 5 ms]\n[slept 5 ms]\n");
    assert_eq!(text(&out.stdout), "1\n");
}

#[test]
fn the_repl_prints_each_value() {
    let out = duhton(
        &[],
        b"(+ 1 2)\n(defun f (n) (print n))\n(transaction f 7)\n(setq x\n  (list 1 2))\nx\n",
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "))) 3\n))) None\n))) None\n7\n))) [ 1 2 ]\n))) [ 1 2 ]\n))) \n"
    );
    // A function called as a statement, with `run-transactions` inside: its value shows.
    let out = duhton(
        &[],
        b"(setq c (container 0))\n(defun inc () (set c 1))\n(defun m () (transaction inc) (run-transactions) (get c))\n(m)\n",
    );
    assert_eq!(
        text(&out.stdout),
        "))) <container 0>\n))) None\n))) None\n))) 1\n))) \n"
    );
    // An error is reported (with its position in the session) and the REPL goes on;
    // the exit status says an input failed.
    let out = duhton(&[], b"(print 1)\n(car\n  1)\n(print 2)\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "))) 1\nNone\n))) ))) 2\nNone\n))) \n");
    assert_eq!(
        text(&out.stderr),
        "Error: <repl>:2:1: DuCons_Car: expected 'cons' argument, got 'int'\n"
    );
}

#[test]
fn command_line_options() {
    let out = duhton(&["--help"], b"");
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Duhton: a simple lisp-like language with STM support"));
    assert!(text(&out.stdout).contains("--num-threads <N>"));
    let out = duhton(&["--version"], b"");
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("duhton {}\n", env!("CARGO_PKG_VERSION"))
    );
    // Bad command lines: refused on stderr with status 2, nothing run.
    for args in [
        &["--num-threads"][..],
        &["--num-threads", "zero", "-"],
        &["--num-threads", "0", "-"],
        &["--bogus", "-"],
        &["a.duh", "b.duh"],
    ] {
        let out = duhton(args, b"(print 1)");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stdout), "");
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}");
    }
}

#[test]
fn a_full_heap_is_a_clean_error() {
    for (threads, src) in [
        ("1", &b"(setq l (list)) (while 1 (append l (cons 1 2)))"[..]),
        (
            "2",
            &b"(defun f (n) (append l (cons 1 2)) (transaction f n)) (setq l (list)) (transaction f 1)"[..],
        ),
    ] {
        let out = duhton_env(&["--num-threads", threads, "-"], src, &[("DUHTON_HEAP_MB", "4")]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.starts_with("Error: out of memory: STM heap exhausted"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }
}
