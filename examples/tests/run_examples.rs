//! Runs every example (as built by `cargo test`, which builds the package's examples) with
//! small sizes on 1 and 2 threads, and checks that each reports a passed result check.
//! Under `--features stm-runtime/gil` the same runs check GIL mode.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, next to this test's own executable.
fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

fn run(name: &str, args: &[&str]) {
    for threads in ["1", "2"] {
        let path = example(name);
        let out = Command::new(&path)
            .args(args)
            .args(["--threads", threads])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("check passed"),
            "{name} {args:?} --threads {threads} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bank_low_and_high_contention() {
    run("bank", &["--transfers", "3000"]);
    run("bank", &["--transfers", "3000", "--accounts", "16"]);
}

#[test]
fn sorted_list() {
    run("sorted_list", &["--ops", "2000", "--updates", "50"]);
}

#[test]
fn hashmap() {
    run(
        "hashmap",
        &["--ops", "5000", "--updates", "50", "--buckets", "64"],
    );
}

#[test]
fn mandelbrot() {
    run(
        "mandelbrot",
        &["--width", "64", "--height", "32", "--iterations", "50"],
    );
}

#[test]
fn bounded_queue() {
    run("bounded_queue", &["--items", "500", "--capacity", "4"]);
}

#[test]
fn workers_with_break_points() {
    run("workers", &["--jobs", "400", "--work", "2000"]);
}

#[test]
fn the_natural_pool_on_a_tqueue_and_on_a_cursor() {
    for queue in ["tqueue", "cursor"] {
        run(
            "pool",
            &[
                "--jobs", "300", "--work", "500", "--repeat", "1", "--queue", queue,
            ],
        );
    }
}
