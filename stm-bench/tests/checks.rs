//! Every workload on every in-process implementation, at a tiny size: the result checks
//! (conservation, structures equal to the sequential model, red-black invariants) pass.

use stm_bench::workloads::{duhton_workloads, ALL};
use stm_bench::{run, Impl};

#[test]
fn every_workload_passes_its_checks_on_every_implementation() {
    for w in ALL.iter().map(|w| w.tiny()) {
        for i in Impl::ALL.into_iter().filter(|i| i.in_process()) {
            for threads in [1, 2] {
                if !i.supports(threads) {
                    continue;
                }
                let ops = (w.ops() / 2000).max(64);
                let out = run(i, w, threads, ops);
                assert!(
                    out.check.is_ok(),
                    "{} on {} with {threads} threads: {:?}",
                    w.name(),
                    i.name(),
                    out.check
                );
                assert_eq!(out.commits, out.ops);
            }
        }
    }
}

#[test]
fn duhton_demos_pass_their_checks_on_the_runtime() {
    let here = Impl::runtime_here();
    for w in duhton_workloads() {
        for threads in [1, 2] {
            // `ops` 0: the demo's small sizes.
            let out = run(here, w, threads, 0);
            assert!(
                out.check.is_ok(),
                "{} with {threads} threads: {:?}",
                w.name(),
                out.check
            );
        }
    }
}

fn row(imp: &str, threads: usize, seconds: f64, overlap: Option<f64>) -> stm_bench::report::Row {
    stm_bench::report::Row {
        workload: "bank-low".into(),
        imp: imp.into(),
        threads,
        ops: 1_000_000,
        seconds,
        min_seconds: seconds * 0.9,
        max_seconds: seconds * 1.2,
        runs: 5,
        commits: 1_000_000,
        aborts: 10,
        overlap,
        round_trips_ns: if threads > 1 {
            vec![60.0, 330.0, 61.0]
        } else {
            Vec::new()
        },
        check_ok: true,
        check: "total \"conserved\"".into(),
    }
}

/// Rows go through JSON unchanged (the GIL child's output); a multi-thread row whose threads
/// took turns, or a run under 100 ms, is marked and not judged against a target; the plot
/// says what it shows.
#[test]
fn rows_say_when_they_give_no_verdict() {
    use stm_bench::report::Results;
    let took_turns = row("stm", 2, 0.5, Some(0.55));
    assert_eq!(
        stm_bench::report::Row::from_json(&took_turns.to_json()),
        Some(took_turns.clone())
    );
    assert_eq!(took_turns.no_verdict(), Some("the threads took turns"));
    assert_eq!(
        row("stm", 1, 0.05, None).no_verdict(),
        Some("shorter than 100 ms")
    );
    assert_eq!(row("stm", 2, 0.5, Some(0.95)).no_verdict(), None);

    let judged = |two: stm_bench::report::Row| {
        let r = Results::new(vec![row("stm", 1, 1.0, None), two]);
        let t = r.targets();
        let (_, figure, met) = t
            .iter()
            .find(|(d, _, _)| d.starts_with("bank-low: STM 2 threads"))
            .expect("the scaling target")
            .clone();
        (figure, met, r.table())
    };
    let (figure, met, table) = judged(took_turns);
    assert_eq!(
        (figure.as_str(), met),
        ("2.00x (overlap 55%, round trip 61 ns)", None)
    );
    assert!(table.contains("2.00 †"), "{table}");
    assert!(table.contains("| bank-low | 2 | 55 |"), "{table}");
    // The probes before the runs: median and range, for multi-thread rows only; and an old
    // row without them (a JSON line from before the field existed) still parses.
    let probes = &table[table.find("Cross-CPU").expect("the probes' table")..];
    let probes = &probes[..probes.find("Aborted").expect("the next table")];
    assert!(probes.contains("| bank-low | 2 | 61 (60-330) |"), "{table}");
    assert!(!probes.contains("| bank-low | 1 |"), "{table}");
    let mut old =
        serde_json::from_str::<serde_json::Value>(&row("stm", 2, 0.5, None).to_json()).unwrap();
    old.as_object_mut().unwrap().remove("round_trips_ns");
    let parsed = stm_bench::report::Row::from_json(&old.to_string()).expect("an old row parses");
    assert!(parsed.round_trips_ns.is_empty());
    let (_, met, _) = judged(row("stm", 2, 0.5, Some(0.95)));
    assert_eq!(met, Some(true));
    // Issue 16's goal for bank-low is 0.8x: 2 threads taking 1.5 s against 1 s miss it.
    let (figure, met, _) = judged(row("stm", 2, 1.5, Some(0.95)));
    assert_eq!(
        (figure.as_str(), met),
        ("0.67x (overlap 95%, round trip 61 ns)", Some(false))
    );
    // A 2-thread row whose vCPUs sat far apart, or on two hyperthreads, says so.
    let placed = |trips: Vec<f64>| {
        let mut two = row("stm", 2, 0.5, Some(0.95));
        two.round_trips_ns = trips;
        judged(two).0
    };
    assert_eq!(
        placed(vec![320.0, 330.0, 60.0]),
        "2.00x (overlap 95%, round trip 320 ns: vCPUs far apart)"
    );
    assert_eq!(
        placed(vec![29.0, 30.0, 31.0]),
        "2.00x (overlap 95%, round trip 30 ns: vCPUs on two hyperthreads)"
    );

    let dir = std::env::temp_dir().join(format!("stm-bench-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("p.svg");
    Results::new(vec![
        row("seq", 1, 0.8, None),
        row("stm", 1, 1.0, None),
        row("stm", 2, 0.5, Some(0.95)),
    ])
    .plot(&svg, "Throughput (higher is better), test machine, today")
    .unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(text.contains("Throughput (higher is better), test machine, today"));
    assert!(!text.contains("1.5"), "thread counts are integers");
}

/// The binary's schedule end to end: a vacation run too short for a verdict is stretched,
/// and every configuration gets the same operation count (its tables fill up as operations
/// accumulate, so different counts would compare different work), with one row each.
#[test]
fn vacation_configurations_run_one_operation_count() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stm-bench"))
        .args([
            "--workload",
            "vacation",
            "--impl",
            "seq,stm",
            "--threads",
            "1,2",
        ])
        .args(["--repeat", "2", "--scale", "0.002", "--json"])
        .output()
        .expect("stm-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stm-bench failed: {stderr}");
    let rows: Vec<stm_bench::report::Row> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(stm_bench::report::Row::from_json)
        .collect();
    let configs: Vec<(String, usize)> = rows.iter().map(|r| (r.imp.clone(), r.threads)).collect();
    assert_eq!(
        configs,
        [("seq".into(), 1), ("stm".into(), 1), ("stm".into(), 2)],
        "one row per configuration, in order"
    );
    assert!(rows.iter().all(|r| r.runs == 2 && r.check_ok), "{rows:?}");
    // 400 operations run in well under 100 ms: stretched, and alike.
    assert!(rows[0].ops > 400, "not stretched: {stderr}");
    assert!(rows.iter().all(|r| r.ops == rows[0].ops), "{rows:?}");
}
