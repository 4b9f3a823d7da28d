//! Printing a [`Report`]: diffs, per-file statistics (a table or JSON), errors, notes and the
//! closing summary.

use std::io::Write;

use std::io::IsTerminal;

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use serde_json::json;
use stm_transform::Stats;

use crate::rewrite::NoteKind;
use crate::tree::{Config, Format, Mode, Report};

/// Prints the report: diffs and statistics on `out`, errors, notes and the summary on `err`.
/// Write errors (a closed pipe) are ignored.
pub fn print(config: &Config, report: &Report, out: &mut dyn Write, err: &mut dyn Write) {
    print_errors(report, err, std::io::stderr().is_terminal());
    if config.format == Format::Json {
        let _ = writeln!(out, "{:#}", to_json(config, report));
        return;
    }
    if !config.quiet {
        for f in &report.files {
            for n in &f.notes {
                if n.kind == NoteKind::Pure && !config.verbose {
                    continue;
                }
                let _ = writeln!(
                    err,
                    "note: {}:{}: `{}` left alone: {}",
                    f.path.display(),
                    n.at,
                    n.function,
                    n.reason
                );
            }
        }
    }
    for f in &report.files {
        if let Some(d) = &f.diff {
            let _ = write!(out, "{d}");
        }
    }
    if config.stats {
        print_table(report, out);
    }
    if !config.quiet {
        for m in &report.messages {
            let _ = writeln!(err, "note: {m}");
        }
        let _ = writeln!(err, "{}", summary(config, report));
    }
}

/// Prints each error: `error: path:line:col: message`, then, where the error is about a
/// place in a source file, that line with a caret under the place (rustc's layout, by
/// `annotate-snippets`), coloured on a terminal.
pub fn print_errors(report: &Report, err: &mut dyn Write, color: bool) {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    for e in &report.errors {
        match e.excerpt() {
            Some(x) => {
                let title = e.to_string();
                let group = Level::ERROR.primary_title(title.as_str()).element(
                    Snippet::source(x.text.as_str())
                        .line_start(x.line)
                        .annotation(AnnotationKind::Primary.span(x.range.clone())),
                );
                let _ = writeln!(err, "{}", renderer.render(&[group]));
            }
            None => {
                let _ = writeln!(err, "error: {e}");
            }
        }
    }
}

/// The functions of a file left alone because they cannot reach the shared heap.
fn pure_count(f: &crate::tree::FileReport) -> usize {
    f.notes.iter().filter(|n| n.kind == NoteKind::Pure).count()
}

fn print_table(report: &Report, out: &mut dyn Write) {
    let width = report
        .files
        .iter()
        .map(|f| f.path.display().to_string().chars().count())
        .max()
        .unwrap_or(4)
        .max(24);
    let _ = writeln!(
        out,
        "{:<width$}  {:>9} {:>8} {:>10} {:>8} {:>6} {:>5}",
        "file", "functions", "barriers", "inevitable", "inferred", "breaks", "pure"
    );
    let row = |out: &mut dyn Write, name: &str, s: &Stats, pure: usize| {
        let _ = writeln!(
            out,
            "{:<width$}  {:>9} {:>8} {:>10} {:>8} {:>6} {:>5}",
            name,
            s.functions,
            s.read_barriers + s.write_barriers,
            s.inevitable_points,
            s.inferred,
            s.break_loops,
            pure
        );
    };
    for f in &report.files {
        row(out, &f.path.display().to_string(), &f.stats, pure_count(f));
    }
    let t = report.total();
    let pure: usize = report.files.iter().map(pure_count).sum();
    row(
        out,
        &format!("total ({} files)", report.files.len()),
        &t,
        pure,
    );
}

/// The closing line.
pub fn summary(config: &Config, report: &Report) -> String {
    let t = report.total();
    let verb = match config.mode {
        Mode::Check | Mode::Diff | Mode::Report => "would change",
        Mode::InPlace { .. } => "changed",
        Mode::OutDir(_) => "rewritten",
    };
    let mut s = format!(
        "stm-rewrite: {} Rust files, {} {verb}; {} functions, {} barriers inserted ({} read, \
         {} write), {} inevitable points, {} loops given break points, {} bindings \
         typed by whole-tree knowledge",
        report.files.len(),
        report.changed(),
        t.functions,
        t.read_barriers + t.write_barriers,
        t.read_barriers,
        t.write_barriers,
        t.inevitable_points,
        t.break_loops,
        t.inferred,
    );
    if report.copied > 0 {
        s.push_str(&format!("; {} other files copied", report.copied));
    }
    let notes: usize = report.files.iter().map(|f| f.notes.len()).sum();
    let pure: usize = report.files.iter().map(pure_count).sum();
    match (notes, pure) {
        (0, _) => {}
        (n, 0) => s.push_str(&format!("; {n} functions left alone")),
        (n, p) => s.push_str(&format!(
            "; {n} functions left alone ({p} that cannot reach the shared heap)"
        )),
    }
    match report.errors.len() {
        0 => {}
        1 => s.push_str("; 1 error"),
        n => s.push_str(&format!("; {n} errors")),
    }
    s
}

fn stats_json(s: &Stats) -> serde_json::Value {
    json!({
        "functions_rewritten": s.functions,
        "barriers_inserted": s.read_barriers + s.write_barriers,
        "read_barriers": s.read_barriers,
        "write_barriers": s.write_barriers,
        "inevitable_points": s.inevitable_points,
        "allocations": s.allocations,
        "bindings_typed_by_knowledge": s.inferred,
        "break_loops": s.break_loops,
        "atomic_blocks": s.atomic_blocks,
    })
}

/// The report as one JSON document.
pub fn to_json(config: &Config, report: &Report) -> serde_json::Value {
    let files: Vec<serde_json::Value> = report
        .files
        .iter()
        .map(|f| {
            let mut v = stats_json(&f.stats);
            let o = v.as_object_mut().expect("an object");
            o.insert("path".into(), json!(f.path.display().to_string()));
            o.insert("changed".into(), json!(f.changed));
            o.insert("failed".into(), json!(f.failed));
            o.insert("pure_functions".into(), json!(pure_count(f)));
            o.insert(
                "skipped".into(),
                json!(f
                    .notes
                    .iter()
                    .filter(|n| n.kind != NoteKind::Pure || config.verbose)
                    .map(|n| json!({
                        "function": n.function,
                        "line": n.at.line,
                        "column": n.at.column,
                        "reason": n.reason,
                        "kind": match n.kind {
                            NoteKind::Pure => "pure",
                            NoteKind::Skipped => "skipped",
                            NoteKind::Build => "build",
                        },
                    }))
                    .collect::<Vec<_>>()),
            );
            if let Some(d) = &f.diff {
                o.insert("diff".into(), json!(d));
            }
            v
        })
        .collect();
    let mut total = stats_json(&report.total());
    if let Some(o) = total.as_object_mut() {
        o.insert("files".into(), json!(report.files.len()));
        o.insert("changed".into(), json!(report.changed()));
        o.insert("copied".into(), json!(report.copied));
        o.insert("object_types".into(), json!(report.objects));
        o.insert(
            "pure_functions".into(),
            json!(report.files.iter().map(pure_count).sum::<usize>()),
        );
    }
    json!({
        "mode": match &config.mode {
            Mode::Report => "report",
            Mode::OutDir(_) => "out-dir",
            Mode::InPlace { .. } => "in-place",
            Mode::Check => "check",
            Mode::Diff => "diff",
        },
        "files": files,
        "total": total,
        "errors": report.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "notes": report.messages,
        "verification": report.verification.as_ref().map(|v| json!({
            "packages": v.packages.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "builds": v.builds,
            "builds_ok": v.builds_ok,
            "left_alone": v.left_alone,
        })),
        "exit_code": report.status.code(),
    })
}
