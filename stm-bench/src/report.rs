//! Results: one row per run, JSON lines, the Markdown tables, the targets and the plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::Impl;

/// `v` with three significant digits.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (2 - v.log10().floor() as i32).clamp(3, 9) as usize;
        format!("{v:.digits$}")
    }
}

/// Below this overlap (the threads' CPU time against wall time × threads), a multi-thread
/// row's threads mostly took turns: it says nothing about scaling.
pub const MIN_OVERLAP: f64 = 0.7;
/// Runs shorter than this give no verdict (start-up and scheduling noise dominate).
pub const MIN_SECONDS: f64 = 0.1;
/// [`Row::no_verdict`] for a row whose threads took turns (overlap under [`MIN_OVERLAP`]).
pub const TOOK_TURNS: &str = "the threads took turns";
/// [`Row::no_verdict`] for a row whose run was shorter than [`MIN_SECONDS`].
pub const TOO_SHORT: &str = "shorter than 100 ms";

/// One configuration's result: the median of its runs, their spread, and its threads'
/// overlap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Implementation name.
    #[serde(rename = "impl")]
    pub imp: String,
    /// Worker threads.
    pub threads: usize,
    /// Operations (committed transactions) per run.
    pub ops: u64,
    /// Seconds of the timed phase: the median of the runs.
    pub seconds: f64,
    /// The fastest run's seconds.
    pub min_seconds: f64,
    /// The slowest run's seconds.
    pub max_seconds: f64,
    /// How many runs.
    pub runs: usize,
    /// Committed transactions (of the median run).
    pub commits: u64,
    /// Aborted attempts (of the median run).
    pub aborts: u64,
    /// The median over the runs of the threads' CPU time / (seconds × threads): 1.0 when the
    /// threads ran at the same time throughout, 1/threads when they took turns. `None` where
    /// it is not measured (one thread, the Duhton demos).
    pub overlap: Option<f64>,
    /// The machine's cross-CPU cache-line round trip, in nanoseconds, measured just before
    /// each run of a multi-thread row ([`crate::probe`]), in run order; empty where it is not
    /// measured. On the 2-vCPU VM it tells which placement of the vCPUs a run had.
    #[serde(default)]
    pub round_trips_ns: Vec<f64>,
    /// Whether the result check passed (in every run).
    pub check_ok: bool,
    /// The check's message (of a failed run, if any).
    pub check: String,
}

impl Row {
    /// Operations per second (of the median run).
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    /// Why this row gives no verdict on scaling or speed, if it does not: its threads took
    /// turns, or its runs were too short.
    pub fn no_verdict(&self) -> Option<&'static str> {
        if self.overlap.is_some_and(|o| o < MIN_OVERLAP) {
            Some(TOOK_TURNS)
        } else if self.seconds < MIN_SECONDS {
            Some(TOO_SHORT)
        } else {
            None
        }
    }

    /// The median and the range of [`Row::round_trips_ns`], if any was measured.
    pub fn round_trip(&self) -> Option<(f64, f64, f64)> {
        let mut v = self.round_trips_ns.clone();
        v.sort_by(f64::total_cmp);
        Some((*v.get(v.len() / 2)?, v[0], v[v.len() - 1]))
    }

    /// The row as one JSON object (with `ops_per_sec` added).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a row serializes");
        v["ops_per_sec"] = serde_json::json!(self.ops_per_sec());
        v.to_string()
    }

    /// Parses a line written by [`Row::to_json`] (the child process's output).
    pub fn from_json(line: &str) -> Option<Row> {
        serde_json::from_str(line).ok()
    }
}

/// All rows, indexed by (workload, impl, threads).
pub struct Results {
    rows: Vec<Row>,
    by_key: BTreeMap<(String, String, usize), usize>,
}

impl Results {
    /// Collects rows.
    pub fn new(rows: Vec<Row>) -> Results {
        let by_key = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.workload.clone(), r.imp.clone(), r.threads), i))
            .collect();
        Results { rows, by_key }
    }

    /// The row of one run.
    pub fn get(&self, w: &str, i: &str, t: usize) -> Option<&Row> {
        self.by_key
            .get(&(w.to_string(), i.to_string(), t))
            .map(|&k| &self.rows[k])
    }

    /// Throughput of one run.
    pub fn ops(&self, w: &str, i: &str, t: usize) -> Option<f64> {
        self.get(w, i, t).map(Row::ops_per_sec)
    }

    fn workloads(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for r in &self.rows {
            if !seen.contains(&r.workload) {
                seen.push(r.workload.clone());
            }
        }
        seen
    }

    fn impls(&self) -> Vec<&'static str> {
        Impl::ALL
            .iter()
            .map(|i| i.name())
            .filter(|n| self.rows.iter().any(|r| r.imp == *n))
            .collect()
    }

    fn threads(&self) -> Vec<usize> {
        let mut t: Vec<usize> = self.rows.iter().map(|r| r.threads).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// One Markdown table: a row per (workload, threads), a column per implementation, the
    /// cell `cell(row)` ("-" where nothing was measured; rows with no cell at all left out).
    fn grid(&self, title: &str, cell: impl Fn(&Row) -> Option<String>) -> String {
        let impls = self.impls();
        let mut s = String::new();
        let _ = writeln!(s, "{title}\n");
        let _ = writeln!(s, "| workload | threads | {} |", impls.join(" | "));
        let _ = writeln!(s, "|---|---:|{}", "---:|".repeat(impls.len()));
        for w in self.workloads() {
            for t in self.threads() {
                let cells: Vec<Option<String>> = impls
                    .iter()
                    .map(|i| self.get(&w, i, t).and_then(&cell))
                    .collect();
                if cells.iter().all(Option::is_none) {
                    continue;
                }
                let cells: Vec<String> = cells
                    .into_iter()
                    .map(|c| c.unwrap_or_else(|| "-".into()))
                    .collect();
                let _ = writeln!(s, "| {w} | {t} | {} |", cells.join(" | "));
            }
        }
        s
    }

    /// The Markdown tables: throughput (median of the runs, marked where the run gives no
    /// verdict), spread, the threads' overlap, and aborts.
    pub fn table(&self) -> String {
        let runs = self.rows.iter().map(|r| r.runs).max().unwrap_or(1);
        let mut s = self.grid(
            &format!(
                "Throughput, millions of transactions per second (higher is better), median of \
                 {runs} runs. † the threads took turns (overlap under {:.0}%), * shorter than \
                 100 ms: no verdict.",
                MIN_OVERLAP * 100.0
            ),
            |r| {
                Some(if !r.check_ok {
                    "CHECK FAILED".into()
                } else {
                    let mark = match r.no_verdict() {
                        Some(TOOK_TURNS) => " †",
                        Some(_) => " *",
                        None => "",
                    };
                    format!("{}{mark}", sig3(r.ops_per_sec() / 1e6))
                })
            },
        );
        s.push('\n');
        s.push_str(&self.grid(
            "Spread of the runs: fastest and slowest, percent of the median time:",
            |r| {
                (r.runs > 1).then(|| {
                    format!(
                        "{:+.0}/{:+.0}",
                        100.0 * (r.min_seconds / r.seconds - 1.0),
                        100.0 * (r.max_seconds / r.seconds - 1.0)
                    )
                })
            },
        ));
        s.push('\n');
        s.push_str(&self.grid(
            "Overlap of the multi-thread runs, percent (the threads' CPU time against wall \
             time × threads; 100: they ran together throughout):",
            |r| r.overlap.map(|o| format!("{:.0}", 100.0 * o)),
        ));
        s.push('\n');
        s.push_str(&self.grid(
            "Cross-CPU cache-line round trip measured before each multi-thread run, ns: median \
             (fastest-slowest). On a VM this says where the vCPUs were placed; threads that \
             share data slow down when it is high (`stm-bench/src/probe.rs`):",
            |r| {
                r.round_trip()
                    .map(|(m, lo, hi)| format!("{m:.0} ({lo:.0}-{hi:.0})"))
            },
        ));
        s.push('\n');
        s.push_str(&self.grid(
            "Aborted attempts per committed transaction, percent:",
            |r| {
                Some(format!(
                    "{:.1}",
                    100.0 * r.aborts as f64 / r.commits.max(1) as f64
                ))
            },
        ));
        s
    }

    /// Issue 16's targets (and, marked so, earlier ones), computed from this run:
    /// (description, figure, met). `met` is `None` for a figure given for reference, or
    /// when a row it uses gives no verdict (threads that took turns, a run under 100 ms).
    pub fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        let judge = |met: bool, used: &[(&str, &str, usize)]| -> Option<bool> {
            let why = used
                .iter()
                .filter_map(|&(w, i, t)| self.get(w, i, t)?.no_verdict())
                .next();
            why.is_none().then_some(met)
        };
        let ns = |w: &str, i: &str, t: usize| self.ops(w, i, t).map(|o| 1e9 / o);
        let scaling = |w: &str, i: &str| Some(self.ops(w, i, 2)? / self.ops(w, i, 1)?);
        // What the 2-thread row ran under: its overlap and the vCPUs' placement.
        let under = |w: &str| {
            let Some(r) = self.get(w, "stm", 2) else {
                return String::new();
            };
            let mut v = Vec::new();
            if let Some(o) = r.overlap {
                v.push(format!("overlap {:.0}%", 100.0 * o));
            }
            if let Some((m, _, _)) = r.round_trip() {
                let placed = crate::probe::placement(m)
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default();
                v.push(format!("round trip {m:.0} ns{placed}"));
            }
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        // 1. Scaling: 2 threads against 1, our runtime as a program configures it (one
        //    segment per thread).
        for (w, goal) in [
            ("vacation", 1.7),
            ("kmeans", 1.2),
            ("bank-low", 0.8),
            ("bank-disjoint", 1.7),
            ("long", 1.85),
        ] {
            if let Some(r) = scaling(w, "stm") {
                out.push((
                    format!("{w}: STM 2 threads vs 1 thread >= {goal}x"),
                    format!("{r:.2}x{}", under(w)),
                    judge(r >= goal, &[(w, "stm", 1), (w, "stm", 2)]),
                ));
            }
            for (imp, what) in [
                (
                    "stm-wide",
                    "stm-wide 2 threads vs 1 thread (for reference: the protocol on both sides)",
                ),
                (
                    "stm-0.4",
                    "the `stm` crate, 2 threads vs 1 thread (for reference)",
                ),
            ] {
                if let Some(r) = scaling(w, imp) {
                    out.push((format!("{w}: {what}"), format!("{r:.2}x"), None));
                }
            }
        }
        // 2. One thread against the sequential program and the uncontended Mutex.
        for (w, earlier) in [
            ("vacation", ""),
            ("kmeans", ""),
            ("long", " (earlier target)"),
        ] {
            if let (Some(s), Some(q)) = (ns(w, "stm", 1), ns(w, "seq", 1)) {
                let r = s / q;
                out.push((
                    format!("{w}, 1 thread: STM within 1.2x of the sequential program{earlier}"),
                    format!("{s:.0} ns vs {q:.0} ns per transaction = {r:.2}x"),
                    judge(r <= 1.2, &[(w, "stm", 1), (w, "seq", 1)]),
                ));
            }
        }
        if let (Some(s), Some(m)) = (ns("bank-low", "stm", 1), ns("bank-low", "mutex", 1)) {
            let r = s / m;
            out.push((
                "bank-low, 1 thread: STM within 2.5x of the uncontended Mutex".into(),
                format!("{s:.1} ns vs {m:.1} ns = {r:.2}x"),
                judge(
                    r <= 2.5,
                    &[("bank-low", "stm", 1), ("bank-low", "mutex", 1)],
                ),
            ));
        }
        // 3. Earlier targets still worth keeping: faster than the other STM crates, and no
        //    collapse under high contention.
        for w in ["bank-low", "counter"] {
            for c in ["stm-0.4", "fast-stm", "kovan-stm", "xstm"] {
                if let (Some(s), Some(x)) = (ns(w, "stm", 1), ns(w, c, 1)) {
                    let r = x / s;
                    out.push((
                        format!("{w}, 1 thread: STM >= 3x faster than {c} (earlier target)"),
                        format!("{x:.1} ns vs {s:.1} ns = {r:.1}x"),
                        judge(r >= 3.0, &[(w, "stm", 1), (w, c, 1)]),
                    ));
                }
            }
        }
        for w in ["bank-high", "counter"] {
            if let Some(r) = scaling(w, "stm") {
                out.push((
                    format!("{w}: STM 2 threads >= 0.8x of 1 thread (earlier target)"),
                    format!("{r:.2}x"),
                    judge(r >= 0.8, &[(w, "stm", 1), (w, "stm", 2)]),
                ));
            }
        }
        out
    }

    /// The targets as a Markdown table.
    pub fn targets_table(&self) -> String {
        let mut s = String::from("| target | measured | met |\n|---|---|---|\n");
        for (d, f, met) in self.targets() {
            let m = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None if d.contains("for reference") => "",
                None => "no verdict",
            };
            let _ = writeln!(s, "| {d} | {f} | {m} |");
        }
        s
    }

    /// Draws throughput against threads, one panel per workload, as an SVG file: thread
    /// counts on an integer axis, one colour per implementation whatever the run holds (its
    /// place in [`Impl::ALL`]), points only where something was measured (the sequential
    /// program, measured on one thread, is a dashed reference line without points), and a
    /// title that says what is measured, on which machine and when.
    pub fn plot(&self, path: &std::path::Path, title: &str) -> Result<(), String> {
        use plotters::prelude::*;
        let workloads = self.workloads();
        let impls = self.impls();
        let threads = self.threads();
        let cols = 4;
        let rows = (workloads.len() + 1).div_ceil(cols);
        let root = SVGBackend::new(path, (1400, 40 + 330 * rows as u32)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
        let panels = root.split_evenly((rows, cols));
        let tmax = *threads.last().unwrap_or(&1) as i32;
        let color = |name: &str| {
            let k = Impl::ALL.iter().position(|i| i.name() == name).unwrap_or(0);
            Palette99::pick(k).to_rgba()
        };
        for (area, w) in panels.iter().zip(&workloads) {
            let pts = |i: &str| -> Vec<(i32, f64)> {
                threads
                    .iter()
                    .filter_map(|&t| {
                        let r = self.get(w, i, t).filter(|r| r.check_ok)?;
                        Some((t as i32, r.ops_per_sec() / 1e6))
                    })
                    .collect()
            };
            let all: Vec<f64> = impls.iter().flat_map(|i| pts(i)).map(|p| p.1).collect();
            if all.is_empty() {
                continue;
            }
            let (lo, hi) = all
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
            let mut chart = ChartBuilder::on(area)
                .caption(w, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    (1..tmax.max(2)).into_segmented(),
                    (lo / 1.5..hi * 1.5).log_scale(),
                )
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc("threads")
                .y_desc("Mtx/s (higher is better)")
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(t) | SegmentValue::Exact(t) => t.to_string(),
                    SegmentValue::Last => String::new(),
                })
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(|x| e(&x))?;
            for i in &impls {
                let p = pts(i);
                let c = color(i);
                let at = |t: i32| SegmentValue::CenterOf(t);
                if *i == Impl::Seq.name() {
                    // One thread only: a reference line across the panel, no points.
                    if let Some(&(_, y)) = p.first() {
                        chart
                            .draw_series(DashedLineSeries::new(
                                [(at(1), y), (at(tmax), y)],
                                6,
                                4,
                                c.stroke_width(2),
                            ))
                            .map_err(|x| e(&x))?;
                    }
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(
                        p.iter().map(|&(t, y)| (at(t), y)),
                        c.stroke_width(2),
                    ))
                    .map_err(|x| e(&x))?;
                chart
                    .draw_series(
                        p.iter()
                            .map(|&(t, y)| Circle::new((at(t), y), 3, c.filled())),
                    )
                    .map_err(|x| e(&x))?;
            }
        }
        // The legend, in the last panel.
        if let Some(area) = panels.get(workloads.len()) {
            for (k, i) in impls.iter().enumerate() {
                let y = 30 + 26 * k as i32;
                area.draw(&PathElement::new(
                    vec![(40, y), (90, y)],
                    color(i).stroke_width(3),
                ))
                .map_err(|x| e(&x))?;
                area.draw(&Text::new(i.to_string(), (100, y - 8), ("sans-serif", 18)))
                    .map_err(|x| e(&x))?;
            }
        }
        root.present().map_err(|x| e(&x))?;
        Ok(())
    }
}
