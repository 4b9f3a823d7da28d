//! The Duhton demos (`duhton/demos/*.duh`) as workloads: the interpreter runs on our runtime,
//! so only the `stm` and `gil` implementations run them. Sizes are set so that one run takes
//! a fraction of a second. The check: the program succeeds, its self-checks hold (`'counter'
//! N 'expected' N`, `'in-order' 1`), and its output equals the one-thread output.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::workloads::Outcome;

/// The demos and the sizes the bench gives them: (name, full sizes, `--quick` sizes).
pub const DEMOS: &[(&str, &str, &str)] = &[
    (
        "square_roots",
        "(setq TASKS 200 PER-TASK 100)",
        "(setq TASKS 20 PER-TASK 100)",
    ),
    (
        "micro_transactions",
        "(setq CHAINS 200 STEPS 500)",
        "(setq CHAINS 20 STEPS 500)",
    ),
    ("nqueens", "(setq N 8)", "(setq N 6)"),
    (
        "sort",
        "(setq N 10000 CHUNK 100)",
        "(setq N 1000 CHUNK 100)",
    ),
    (
        "trees",
        "(setq TASKS 100 DEPTH 10)",
        "(setq TASKS 10 DEPTH 10)",
    ),
    (
        "counter",
        "(setq CHAINS 200 STEPS 500)",
        "(setq CHAINS 20 STEPS 500)",
    ),
];

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static ONE_THREAD: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Runs demo `name` with `threads` worker threads, at its full sizes or (`small`) its
/// `--quick` sizes.
pub fn run(name: &str, threads: usize, small: bool) -> Outcome {
    let &(_, full, quick) = DEMOS
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("a known demo");
    let sizes = if small { quick } else { full };
    let path = format!("{}/../duhton/demos/{name}.duh", env!("CARGO_MANIFEST_DIR"));
    let src = match std::fs::read_to_string(&path) {
        Ok(s) => format!("{sizes}\n{s}"),
        Err(e) => return failed(format!("{path}: {e}")),
    };
    let buf = Buf::default();
    let opts = duhton::Options {
        threads,
        heap_size: 1 << 30,
    };
    let interp = match duhton::Interp::new(opts, Box::new(buf.clone())) {
        Ok(i) => i,
        Err(e) => return failed(format!("interpreter: {e:?}")),
    };
    let before = interp.stm().stats();
    let start = Instant::now();
    let result = interp.run_source(src.as_bytes());
    interp.flush();
    let seconds = start.elapsed().as_secs_f64();
    let stats = interp.stm().stats() - before;
    let out =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let check = (|| {
        result.map_err(|e| format!("the program failed: {e:?}"))?;
        self_check(&out)?;
        let mut cache = ONE_THREAD.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        if threads == 1 {
            cache.insert(format!("{name}{sizes}"), out.clone());
        } else if let Some(one) = cache.get(&format!("{name}{sizes}")) {
            if *one != out {
                return Err(format!(
                    "output {out:?} differs from the one-thread output {one:?}"
                ));
            }
        }
        Ok(format!("output {:?}", out.trim()))
    })();
    Outcome {
        ops: stats.commits,
        seconds,
        commits: stats.commits,
        aborts: stats.aborts(),
        cpu_seconds: None,
        check,
    }
}

/// The demos' own result lines: `'counter' N 'expected' N`, `'in-order' 1`.
fn self_check(out: &str) -> Result<(), String> {
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
    };
    if out.trim().is_empty() {
        return Err("no output".into());
    }
    if let (Some(a), Some(b)) = (after("'counter'"), after("'expected'")) {
        if a != b {
            return Err(format!("counter {a}, expected {b}"));
        }
    }
    if let Some(v) = after("'in-order'") {
        if *v != "1" {
            return Err("the sorted list is out of order".into());
        }
    }
    Ok(())
}

fn failed(msg: String) -> Outcome {
    Outcome {
        ops: 0,
        seconds: 0.0,
        commits: 0,
        aborts: 0,
        cpu_seconds: None,
        check: Err(msg),
    }
}
