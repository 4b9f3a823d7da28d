//! Results: one row per run, JSON lines, the Markdown tables, the targets and the plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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

/// One run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Implementation name.
    pub imp: String,
    /// Worker threads.
    pub threads: usize,
    /// Operations (committed transactions).
    pub ops: u64,
    /// Seconds of the timed phase.
    pub seconds: f64,
    /// Committed transactions.
    pub commits: u64,
    /// Aborted attempts.
    pub aborts: u64,
    /// Whether the result check passed.
    pub check_ok: bool,
    /// The check's message.
    pub check: String,
}

impl Row {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    /// The row as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"workload\":\"{}\",\"impl\":\"{}\",\"threads\":{},\"ops\":{},\"seconds\":{:.6},\"ops_per_sec\":{:.1},\"commits\":{},\"aborts\":{},\"check_ok\":{},\"check\":\"{}\"}}",
            self.workload,
            self.imp,
            self.threads,
            self.ops,
            self.seconds,
            self.ops_per_sec(),
            self.commits,
            self.aborts,
            self.check_ok,
            self.check.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }

    /// Parses a line written by [`Row::to_json`] (the child process's output).
    pub fn from_json(line: &str) -> Option<Row> {
        let field = |name: &str| -> Option<&str> {
            let key = format!("\"{name}\":");
            let start = line.find(&key)? + key.len();
            let rest = &line[start..];
            if let Some(s) = rest.strip_prefix('"') {
                // Strings: up to the next unescaped quote.
                let mut prev = ' ';
                for (i, ch) in s.char_indices() {
                    if ch == '"' && prev != '\\' {
                        return Some(&s[..i]);
                    }
                    prev = ch;
                }
                None
            } else {
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                Some(&rest[..end])
            }
        };
        Some(Row {
            workload: field("workload")?.to_string(),
            imp: field("impl")?.to_string(),
            threads: field("threads")?.parse().ok()?,
            ops: field("ops")?.parse().ok()?,
            seconds: field("seconds")?.parse().ok()?,
            commits: field("commits")?.parse().ok()?,
            aborts: field("aborts")?.parse().ok()?,
            check_ok: field("check_ok")? == "true",
            check: field("check")?.replace("\\\"", "\"").replace("\\\\", "\\"),
        })
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

    /// The Markdown throughput table (millions of transactions per second) and the abort
    /// table.
    pub fn table(&self) -> String {
        let impls = self.impls();
        let mut s = String::new();
        let header = |s: &mut String| {
            let _ = writeln!(s, "| workload | threads | {} |", impls.join(" | "));
            let _ = writeln!(s, "|---|---:|{}", "---:|".repeat(impls.len()));
        };
        let _ = writeln!(
            s,
            "Throughput, millions of transactions per second (higher is better):\n"
        );
        header(&mut s);
        for w in self.workloads() {
            for t in self.threads() {
                let cells: Vec<String> = impls
                    .iter()
                    .map(|i| match self.get(&w, i, t) {
                        Some(r) if r.check_ok => sig3(r.ops_per_sec() / 1e6),
                        Some(_) => "CHECK FAILED".into(),
                        None => "-".into(),
                    })
                    .collect();
                if cells.iter().all(|c| c == "-") {
                    continue;
                }
                let _ = writeln!(s, "| {w} | {t} | {} |", cells.join(" | "));
            }
        }
        let _ = writeln!(
            s,
            "\nAborted attempts per committed transaction, percent:\n"
        );
        header(&mut s);
        for w in self.workloads() {
            for t in self.threads() {
                let cells: Vec<String> = impls
                    .iter()
                    .map(|i| match self.get(&w, i, t) {
                        Some(r) => {
                            format!("{:.1}", 100.0 * r.aborts as f64 / r.commits.max(1) as f64)
                        }
                        None => "-".into(),
                    })
                    .collect();
                if cells.iter().all(|c| c == "-") {
                    continue;
                }
                let _ = writeln!(s, "| {w} | {t} | {} |", cells.join(" | "));
            }
        }
        s
    }

    /// The targets, computed from this run: (description, figure, met).
    pub fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        let ns = |w: &str, i: &str, t: usize| self.ops(w, i, t).map(|o| 1e9 / o);
        // 1. Small transactions, one thread.
        for w in ["bank-low", "counter"] {
            if let (Some(s), Some(m)) = (ns(w, "stm", 1), ns(w, "mutex", 1)) {
                let r = s / m;
                out.push((
                    format!("{w}, 1 thread: STM within 3x of the uncontended Mutex (goal 2x)"),
                    format!("{s:.1} ns vs {m:.1} ns = {r:.2}x"),
                    Some(r <= 3.0),
                ));
            }
            for c in ["stm-0.4", "fast-stm", "kovan-stm", "xstm"] {
                if let (Some(s), Some(x)) = (ns(w, "stm", 1), ns(w, c, 1)) {
                    let r = x / s;
                    out.push((
                        format!("{w}, 1 thread: STM >= 3x faster than {c}"),
                        format!("{x:.1} ns vs {s:.1} ns = {r:.1}x"),
                        Some(r >= 3.0),
                    ));
                }
            }
        }
        // 2. Long transactions, one thread.
        if let (Some(s), Some(q)) = (ns("long", "stm", 1), ns("long", "seq", 1)) {
            let r = s / q;
            out.push((
                "long, 1 thread: STM within 1.2x of the sequential program".into(),
                format!("{s:.0} ns vs {q:.0} ns per transaction = {r:.2}x"),
                Some(r <= 1.2),
            ));
        }
        // 3. Low contention scaling.
        if let (Some(a), Some(b)) = (
            self.ops("bank-low", "stm", 1),
            self.ops("bank-low", "stm", 2),
        ) {
            let r = b / a;
            out.push((
                "bank-low: STM 2 threads vs 1 thread >= 1.8x".into(),
                format!("{r:.2}x"),
                Some(r >= 1.8),
            ));
        }
        if let (Some(a), Some(b)) = (self.ops("long", "stm", 1), self.ops("long", "stm", 2)) {
            out.push((
                "long: STM 2 threads vs 1 thread (for reference)".into(),
                format!("{:.2}x", b / a),
                None,
            ));
        }
        if let (Some(q), Some(b)) = (self.ops("long", "seq", 1), self.ops("long", "stm", 2)) {
            let r = b / q;
            out.push((
                "long: STM on 2 threads >= 1.6x faster than the sequential program".into(),
                format!("{r:.2}x"),
                Some(r >= 1.6),
            ));
        }
        // 4. High contention: no collapse.
        for w in ["bank-high", "counter"] {
            if let (Some(a), Some(b)) = (self.ops(w, "stm", 1), self.ops(w, "stm", 2)) {
                let r = b / a;
                out.push((
                    format!("{w}: STM 2 threads >= 0.8x of 1 thread"),
                    format!("{r:.2}x"),
                    Some(r >= 0.8),
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
                None => "",
            };
            let _ = writeln!(s, "| {d} | {f} | {m} |");
        }
        s
    }

    /// Draws throughput against threads, one panel per workload, as an SVG file.
    pub fn plot(&self, path: &std::path::Path) -> Result<(), String> {
        use plotters::prelude::*;
        let workloads = self.workloads();
        let impls = self.impls();
        let threads = self.threads();
        let cols = 4;
        let rows = (workloads.len() + 1).div_ceil(cols);
        let root = SVGBackend::new(path, (1400, 330 * rows as u32)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let panels = root.split_evenly((rows, cols));
        let tmax = *threads.last().unwrap_or(&1) as f64;
        let color = |k: usize| Palette99::pick(k).to_rgba();
        for (area, w) in panels.iter().zip(&workloads) {
            let pts = |i: &str| -> Vec<(f64, f64)> {
                threads
                    .iter()
                    .filter_map(|&t| self.ops(w, i, t).map(|o| (t as f64, o / 1e6)))
                    .collect()
            };
            let all: Vec<f64> = impls.iter().flat_map(|i| pts(i)).map(|p| p.1).collect();
            let (lo, hi) = all
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
            if all.is_empty() {
                continue;
            }
            let mut chart = ChartBuilder::on(area)
                .caption(w, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.8f64..tmax + 0.2, (lo / 1.5..hi * 1.5).log_scale())
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc("threads")
                .y_desc("Mtx/s")
                .x_labels(threads.len() + 1)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(|x| e(&x))?;
            for (k, i) in impls.iter().enumerate() {
                let mut p = pts(i);
                if p.len() == 1 {
                    // The sequential program: a reference line across the thread counts.
                    p.push((tmax, p[0].1));
                }
                let c = color(k);
                chart
                    .draw_series(LineSeries::new(p.clone(), c.stroke_width(2)))
                    .map_err(|x| e(&x))?;
                chart
                    .draw_series(p.iter().map(|&q| Circle::new(q, 3, c.filled())))
                    .map_err(|x| e(&x))?;
            }
        }
        // The legend, in the last panel.
        if let Some(area) = panels.get(workloads.len()) {
            for (k, i) in impls.iter().enumerate() {
                let y = 30 + 26 * k as i32;
                area.draw(&PathElement::new(
                    vec![(40, y), (90, y)],
                    color(k).stroke_width(3),
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
