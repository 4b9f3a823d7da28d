//! Helpers: run a program in-process with 1 and with 2 worker threads.

#![allow(dead_code)]

/// Runs `src` with `threads` workers; returns stdout and the error message, if any.
pub fn run_with(src: &str, threads: usize) -> (String, Option<String>) {
    let (out, result) = duhton::run_to_vec(src.as_bytes(), threads);
    (
        String::from_utf8_lossy(&out).into_owned(),
        result.err().map(|e| e.message),
    )
}

/// Runs a deterministic program with 1 and 2 threads; both must succeed with the same output.
pub fn run(src: &str) -> String {
    let (one, e1) = run_with(src, 1);
    assert_eq!(e1, None, "program failed (1 thread):\n{src}");
    let (two, e2) = run_with(src, 2);
    assert_eq!(e2, None, "program failed (2 threads):\n{src}");
    assert_eq!(one, two, "1 and 2 threads disagree on:\n{src}");
    one
}

/// Runs a program that must fail, with 1 and 2 threads; returns its stdout and message.
pub fn fails(src: &str) -> (String, String) {
    let (one, e1) = run_with(src, 1);
    let (two, e2) = run_with(src, 2);
    let e1 = e1.unwrap_or_else(|| panic!("program should fail:\n{src}\noutput:\n{one}"));
    assert_eq!(Some(e1.clone()), e2, "1 and 2 threads disagree on:\n{src}");
    assert_eq!(one, two);
    (one, e1)
}

/// The error message of a failing program.
pub fn error(src: &str) -> String {
    fails(src).1
}
