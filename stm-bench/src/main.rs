//! `cargo run --release -p stm-bench`: runs the benchmark matrix (workloads ×
//! implementations × thread counts), checks every result, prints a table (or `--json`), and
//! with `--out DIR` writes `DIR/results.md` and `DIR/throughput.svg`.
//!
//! Our runtime's GIL mode is a compile-time feature, so the `gil` runs come from a second
//! build of this binary (`--features gil`, target dir `target/gil`) that this one builds and
//! runs as a child process, reading its JSON lines.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;
use stm_bench::report::{Results, Row, MIN_SECONDS};
use stm_bench::schedule;
use stm_bench::workloads::{duhton_workloads, Workload, ALL};
use stm_bench::Impl;

#[derive(Parser, Debug)]
#[command(
    about = "STM benchmark matrix: workloads x implementations x threads, every result checked"
)]
struct Args {
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// A reduced matrix (3% of the operations, small Duhton sizes), under a minute once
    /// both binaries are built.
    #[arg(long)]
    quick: bool,
    /// Only these workloads (comma-separated; e.g. bank-low,rbtree-50).
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Only these implementations (comma-separated): seq, stm, stm-wide (ours with two
    /// segments even on one thread), gil, mutex, rwlock, stm-0.4, fast-stm, kovan-stm, xstm.
    #[arg(long = "impl", value_delimiter = ',')]
    imp: Vec<String>,
    /// Thread counts (comma-separated; default 1,2).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Scale every workload's operation count by this factor.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run each configuration this many times (at least 1), in rounds that run every
    /// configuration of a workload once each: the tables show the median, the spread and the
    /// threads' overlap.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Run exactly the scaled operation counts. By default (not with --quick) a
    /// configuration whose first run ends under 100 ms, too short for a verdict, runs again
    /// with its operations multiplied so that a run lasts about 200 ms (at most 64x).
    #[arg(long)]
    fixed_ops: bool,
    /// Write results.md and throughput.svg into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: run in-process implementations only (used for the GIL-mode child).
    #[arg(long, hide = true)]
    child: bool,
    /// Internal: `workload=count` for the workloads whose work grows with the count, as the
    /// parent sized them: the child runs exactly that many operations there.
    #[arg(long, hide = true, value_delimiter = ',')]
    sized: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let known: Vec<Workload> = ALL.iter().copied().chain(duhton_workloads()).collect();
    let workloads: Vec<Workload> = if args.workload.is_empty() {
        known.clone()
    } else {
        args.workload
            .iter()
            .map(|n| {
                *known.iter().find(|w| w.name() == *n).unwrap_or_else(|| {
                    let names: Vec<String> = known.iter().map(|w| w.name()).collect();
                    fail(&format!(
                        "unknown workload {n}; known: {}",
                        names.join(", ")
                    ))
                })
            })
            .collect()
    };
    let impls: Vec<Impl> = if args.imp.is_empty() {
        Impl::ALL.to_vec()
    } else {
        args.imp
            .iter()
            .map(|n| Impl::parse(n).unwrap_or_else(|| fail(&format!("unknown implementation {n}"))))
            .collect()
    };
    let threads = if args.threads.is_empty() {
        vec![1, 2]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        fail("--threads must be positive");
    }
    let scale = args.scale * if args.quick { 0.03 } else { 1.0 };

    let mut rows = Vec::new();
    // The operation counts of the workloads whose work grows with the count, for the child.
    let mut sized = Vec::new();
    for &w in &workloads {
        let (r, count) = run_workload(&args, w, &impls, &threads, scale);
        rows.extend(r);
        if let Some(n) = count.filter(|_| w.work_grows_with_ops()) {
            sized.push(format!("{}={n}", w.name()));
        }
    }
    // The other mode of our runtime runs in a child built with the other feature set.
    let others: Vec<Impl> = impls.iter().copied().filter(|i| !i.in_process()).collect();
    if !others.is_empty() && !args.child {
        rows.extend(run_child(
            &args, &others, &workloads, &threads, scale, &sized,
        ));
    }
    if args.child {
        return;
    }
    let results = Results::new(rows.clone());
    if !args.json {
        println!("{}", results.table());
        println!("{}", results.targets_table());
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
        let md = format!(
            "# Benchmark results\n\nMade by `cargo run --release -p stm-bench -- {}`.\n\n{}\n{}\n{}\n",
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            machine(),
            results.table(),
            results.targets_table()
        );
        let p = dir.join("results.md");
        std::fs::write(&p, md).unwrap_or_else(|e| fail(&format!("{}: {e}", p.display())));
        let svg = dir.join("throughput.svg");
        let title = format!(
            "Throughput, millions of transactions per second (higher is better), median of {} \
             runs; {} CPUs, {}",
            args.repeat.max(1),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            sh("date -u +%Y-%m-%d")
        );
        results
            .plot(&svg, &title)
            .unwrap_or_else(|e| fail(&format!("{}: {e}", svg.display())));
        eprintln!("wrote {} and {}", p.display(), svg.display());
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.check_ok).collect();
    for r in &failed {
        eprintln!(
            "CHECK FAILED: {} on {} with {} threads: {}",
            r.workload, r.imp, r.threads, r.check
        );
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
    eprintln!("all {} runs passed their result checks", rows.len());
}

/// Runs every in-process configuration (implementation x thread count) of `w` `--repeat`
/// times, in rounds, and sizes their operation counts, as `stm_bench::schedule` says (the
/// sizing is skipped with `--fixed-ops` or `--quick`, and in a child given `--sized`).
/// Returns one row per configuration, in the order of `impls` and `threads`, and the
/// operation count of the last configuration (all of them run the same count where an
/// operation's work grows with it).
fn run_workload(
    args: &Args,
    w: Workload,
    impls: &[Impl],
    threads: &[usize],
    scale: f64,
) -> (Vec<Row>, Option<u64>) {
    let configs: Vec<(Impl, usize)> = impls
        .iter()
        .filter(|i| i.in_process() && i.runs(w))
        .flat_map(|&i| {
            threads
                .iter()
                .filter(move |&&t| i.supports(t))
                .map(move |&t| (i, t))
        })
        .collect();
    if configs.is_empty() {
        return (Vec::new(), None);
    }
    let wall = Instant::now();
    // Before each multi-thread run, the machine's cross-CPU round trip: where the hypervisor
    // has put the vCPUs (`stm_bench::probe`).
    let once = |i: Impl, t: usize, ops: u64| {
        let watch = watchdog(format!("{} on {} with {t} threads", w.name(), i.name()));
        let started = Instant::now();
        let probe = if t > 1 {
            stm_bench::probe::round_trip_ns()
        } else {
            None
        };
        let outcome = stm_bench::run(i, w, t, ops);
        drop(watch);
        ((outcome, probe), started.elapsed().as_secs_f64())
    };
    // The count the parent chose (`--sized`), in the GIL-mode child.
    let given = args.sized.iter().find_map(|s| {
        let (name, n) = s.split_once('=')?;
        (name == w.name()).then(|| n.parse::<u64>().ok())?
    });
    let stretch =
        !args.fixed_ops && !args.quick && given.is_none() && !matches!(w, Workload::Duhton(_));
    let base = |t: usize| match w {
        Workload::Duhton(_) => u64::from(scale >= 0.5),
        _ => given.unwrap_or(((w.ops() as f64 * scale) as u64).max(t as u64)),
    };
    // The first round: each configuration's operation count, and its first run.
    let mut ops: Vec<u64> = configs.iter().map(|&(_, t)| base(t)).collect();
    // Each configuration's wall time, its sizing runs included.
    let mut spent = vec![0.0; configs.len()];
    let mut firsts = Vec::with_capacity(configs.len());
    for (c, &(i, t)) in configs.iter().enumerate() {
        let (run, secs) = once(i, t, ops[c]);
        spent[c] += secs;
        firsts.push(run);
    }
    // Stretch what was too short (`stm_bench::schedule`).
    let shared = w.work_grows_with_ops();
    let factors = if stretch {
        let f: Vec<(f64, bool)> = firsts
            .iter()
            .map(|(o, _)| (o.seconds, o.check.is_ok()))
            .collect();
        schedule::stretch_factors(&f, shared)
    } else {
        vec![None; configs.len()]
    };
    if let (true, Some(Some(f))) = (shared, factors.first()) {
        eprintln!(
            "stm-bench: {}: a configuration ran under {:.0} ms: {f}x the operations for all \
             of them (an operation's work grows with their count here)",
            w.name(),
            MIN_SECONDS * 1e3
        );
    }
    for (c, &(i, t)) in configs.iter().enumerate() {
        let Some(f) = factors[c] else { continue };
        if !shared {
            eprintln!(
                "stm-bench: {} on {} with {t} thread{} ran {:.0} ms: {f}x the operations, so \
                 that a run lasts over {:.0} ms",
                w.name(),
                i.name(),
                if t == 1 { "" } else { "s" },
                firsts[c].0.seconds * 1e3,
                MIN_SECONDS * 1e3
            );
        }
        ops[c] *= f as u64;
        let (run, secs) = once(i, t, ops[c]);
        spent[c] += secs;
        firsts[c] = run;
    }
    let mut runs: Vec<Vec<_>> = firsts.into_iter().map(|f| vec![f]).collect();
    let rounds = args.repeat.max(1);
    for round in 1..rounds {
        if !args.json && !args.child && configs.len() > 1 {
            eprintln!(
                "stm-bench: {}: round {round} of {rounds} done ({:.1} s)",
                w.name(),
                wall.elapsed().as_secs_f64()
            );
        }
        for c in schedule::round_order(round, configs.len()) {
            let (i, t) = configs[c];
            let (run, secs) = once(i, t, ops[c]);
            runs[c].push(run);
            spent[c] += secs;
        }
    }
    // A failed check in any run fails its row.
    let mut rows = Vec::with_capacity(configs.len());
    for ((&(i, t), runs), secs) in configs.iter().zip(runs).zip(spent) {
        let (outcomes, round_trips): (Vec<_>, Vec<_>) = runs.into_iter().unzip();
        let row = summarize(w.name(), i.name(), t, outcomes, round_trips);
        emit(args, &row, Some(secs));
        rows.push(row);
    }
    (rows, ops.last().copied())
}

/// Says on stderr which run is still going after a minute (none should take that long), so
/// a hang names its run. Dropping the sender stops the watch.
fn watchdog(what: String) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(std::time::Duration::from_secs(60))
        {
            eprintln!("still running after a minute: {what}");
        }
    });
    tx
}

fn emit(args: &Args, r: &Row, wall: Option<f64>) {
    if args.json || args.child {
        println!("{}", r.to_json());
        let _ = std::io::stdout().flush();
    } else {
        let overlap = r
            .overlap
            .map_or(String::new(), |o| format!("  overlap {:>3.0}%", 100.0 * o));
        let trip = r
            .round_trip()
            .map_or(String::new(), |(m, _, _)| format!("  round trip {m:.0} ns"));
        let verdict = r
            .no_verdict()
            .map_or(String::new(), |why| format!("  (no verdict: {why})"));
        eprintln!(
            "{:>10} {:>10} {} thr: {:>9.3} Mtx/s (median of {}, {:.0}-{:.0} ms){overlap}{trip}  \
             {:>5.1}% aborts  {:>5.2}s  {}{}{verdict}",
            r.workload,
            r.imp,
            r.threads,
            r.ops_per_sec() / 1e6,
            r.runs,
            r.min_seconds * 1e3,
            r.max_seconds * 1e3,
            100.0 * r.aborts as f64 / r.commits.max(1) as f64,
            wall.unwrap_or(r.seconds),
            if r.check_ok { "ok: " } else { "CHECK FAILED: " },
            r.check
        );
    }
}

/// Builds this binary with our runtime in the other mode and runs `impls` there.
fn run_child(
    args: &Args,
    impls: &[Impl],
    workloads: &[Workload],
    threads: &[usize],
    scale: f64,
    sized: &[String],
) -> Vec<Row> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let gil = Impl::runtime_here() == Impl::Stm;
    // The child's own target directory, inside the one cargo uses (`CARGO_TARGET_DIR` if set).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(if gil { "gil" } else { "stm" });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "stm-bench",
            "--bin",
            "stm-bench",
            "--target-dir",
        ])
        .arg(&target);
    if gil {
        build.args(["--features", "gil"]);
    }
    eprintln!(
        "building the {} mode binary into {}",
        if gil { "GIL" } else { "STM" },
        target.display()
    );
    let ok = build
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        fail("could not build the other-mode binary (see cargo's output above)");
    }
    let names: Vec<&str> = impls.iter().map(|i| i.name()).collect();
    let wl: Vec<String> = workloads.iter().map(|w| w.name()).collect();
    let th: Vec<String> = threads.iter().map(|t| t.to_string()).collect();
    let exe = target.join("release").join("stm-bench");
    let mut child = Command::new(&exe)
        .args([
            "--child",
            "--impl",
            &names.join(","),
            "--workload",
            &wl.join(","),
        ])
        .args(["--threads", &th.join(","), "--scale", &scale.to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .args((!sized.is_empty()).then(|| format!("--sized={}", sized.join(","))))
        // (`--quick` reaches the child as its scale; it must not stretch either.)
        .args((args.fixed_ops || args.quick).then_some("--fixed-ops"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", exe.display())));
    let out = std::io::read_to_string(child.stdout.take().expect("piped")).unwrap_or_default();
    if !child.wait().map(|s| s.success()).unwrap_or(false) {
        fail("the other-mode child failed");
    }
    out.lines()
        .filter_map(Row::from_json)
        .inspect(|r| emit(args, r, None))
        .collect()
}

/// The output of a shell command (empty if it fails).
fn sh(c: &str) -> String {
    Command::new("sh")
        .args(["-c", c])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The runs of one configuration as one row: the median run's figures, the fastest and
/// slowest times, the median overlap, the round-trip probes taken before the runs, and the
/// first failed check if any.
fn summarize(
    workload: String,
    imp: &str,
    threads: usize,
    mut runs: Vec<stm_bench::workloads::Outcome>,
    round_trips: Vec<Option<f64>>,
) -> Row {
    let n = runs.len();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut overlaps: Vec<f64> = runs
        .iter()
        .filter(|_| threads > 1)
        .filter_map(|o| Some(o.cpu_seconds? / (o.seconds.max(1e-9) * threads as f64)))
        .collect();
    overlaps.sort_by(f64::total_cmp);
    let failed = runs.iter().position(|o| o.check.is_err());
    let (min, max) = (runs[0].seconds, runs[n - 1].seconds);
    let pick = runs.swap_remove(failed.unwrap_or(n / 2));
    Row {
        workload,
        imp: imp.to_string(),
        threads,
        ops: pick.ops,
        seconds: pick.seconds,
        min_seconds: min,
        max_seconds: max,
        runs: n,
        commits: pick.commits,
        aborts: pick.aborts,
        overlap: overlaps.get(overlaps.len() / 2).copied(),
        round_trips_ns: round_trips.into_iter().flatten().collect(),
        check_ok: pick.check.is_ok(),
        check: match pick.check {
            Ok(m) | Err(m) => m,
        },
    }
}

/// The machine, for the results file.
fn machine() -> String {
    format!(
        "Machine (`nproc`: {}):\n\n```text\n{}\n{}\n```\n",
        sh("nproc"),
        sh("lscpu | head -20"),
        sh("rustc --version"),
    )
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}
