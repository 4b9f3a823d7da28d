//! `stm-rewrite`: inserts STM barriers and transaction boundaries into a source tree.
//! See `docs/rewrite.md`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{ArgGroup, Parser, ValueEnum};
use stm_rewrite::{Config, Format, Mode, RewriteOptions, Runtime};

const EXAMPLES: &str = "\
Examples:
  stm-rewrite src --diff                      show what would change, write nothing
  stm-rewrite src --check                     exit 1 and print the diff if anything would change
  stm-rewrite . --out-dir /tmp/rewritten      mirror the crate, rewritten (then build it there)
  stm-rewrite src --in-place --backup         replace the files, keeping FILE.rs.bk
  stm-rewrite . --all-functions --out-dir OUT every function that can reach the shared heap,
                                              built with cargo check; functions the compiler
                                              rejects are left as they were
  stm-rewrite - < src/lib.rs                  rewrite standard input to standard output
  stm-rewrite src --all-functions --stats     the per-file table, nothing written

Exit status: 0 ok, 1 --check found changes, 2 errors.
Documentation: docs/rewrite.md in the repository.";

/// Rewrites a tree of Rust files: `#[transactional]` and `#[in_transactions]` functions (or,
/// with --all-functions, every function that can reach the shared heap) get their read and
/// write barriers and transaction boundaries written out, using every `#[object]` struct of
/// the tree.
#[derive(Parser, Debug)]
#[command(name = "stm-rewrite", version, after_help = EXAMPLES, max_term_width = 100)]
#[command(group(ArgGroup::new("mode").args(["out_dir", "in_place", "check", "diff"])))]
struct Cli {
    /// Files and directories to rewrite (directories are walked; `.gitignore` is honoured).
    /// `-` alone: read standard input, write the result to standard output.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write the rewritten tree into DIR (mirroring it; non-Rust files copied unchanged).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Replace each changed file (atomically). Refused on files with uncommitted changes in
    /// git unless --allow-dirty.
    #[arg(long)]
    in_place: bool,
    /// With --in-place: keep each original as FILE.bk.
    #[arg(long, requires = "in_place")]
    backup: bool,
    /// With --in-place: rewrite files that have uncommitted changes too.
    #[arg(long, requires = "in_place")]
    allow_dirty: bool,
    /// Write nothing; exit 1 and print a unified diff if anything would change.
    #[arg(long)]
    check: bool,
    /// Write nothing; print a unified diff of what would change.
    #[arg(long)]
    diff: bool,
    /// Rewrite every function that can reach the shared heap (it mentions a handle, a
    /// `Root`, a `Tx`, an object type or `tx!()`, or calls a function that does), not only
    /// those marked: PyPy style, such code runs in transactions. One that takes no handle
    /// and no &Tx and has a loop becomes #[in_transactions] (its loops run as series of
    /// transactions), others #[transactional]. `main` without a loop, const, async and extern
    /// functions, functions the transformation rejects and items marked
    /// #[stm::not_transactional] are left alone. With --out-dir or --in-place on a Cargo
    /// package, the result is built (cargo check) and the functions the compiler rejects
    /// are put back as they were.
    #[arg(long)]
    all_functions: bool,
    /// With --all-functions: also functions that cannot reach the shared heap (they gain
    /// nothing from a transaction; for testing the rewriter on ordinary crates).
    #[arg(long, requires = "all_functions")]
    include_pure: bool,
    /// Do not build the rewritten package (write what --all-functions chose, unverified).
    #[arg(long)]
    no_verify: bool,
    /// With --in-place: add the `stm-runtime` dependency to the package's Cargo.toml (by
    /// default, the line to add is printed).
    #[arg(long, requires = "in_place")]
    add_dependency: bool,
    /// The `stm-runtime` the rewritten code depends on: a directory (a checkout of the
    /// crate) or a version. Default: the checkout this tool was built from, if it is there.
    #[arg(long, value_name = "DIR|VERSION")]
    runtime: Option<String>,
    /// Print per-file statistics: functions rewritten, barriers inserted,
    /// inevitable points, loops given break points, functions that cannot reach the heap.
    #[arg(long)]
    stats: bool,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Worker threads (default: one per CPU).
    #[arg(short, long, default_value_t = 0)]
    jobs: usize,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print only errors and what the mode prints (diffs, statistics).
    #[arg(short, long)]
    quiet: bool,
    /// Also note each function --all-functions leaves alone because it cannot reach the
    /// shared heap (by default they are only counted).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

fn main() {
    // Panics inside the transformation are caught and reported as errors with their file;
    // keep the default hook from printing them a second time.
    std::panic::set_hook(Box::new(|_| {}));
    let cli = Cli::parse();
    let stdin = cli.paths.iter().any(|p| p.as_os_str() == "-");
    let mode = if let Some(d) = cli.out_dir {
        Mode::OutDir(d)
    } else if cli.in_place {
        Mode::InPlace { backup: cli.backup }
    } else if cli.check {
        Mode::Check
    } else if cli.diff {
        Mode::Diff
    } else {
        Mode::Report
    };
    let config = Config {
        paths: cli.paths,
        mode,
        options: RewriteOptions {
            all_functions: cli.all_functions,
            include_pure: cli.include_pure,
        },
        stats: cli.stats,
        format: match cli.format {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        },
        jobs: cli.jobs,
        progress: !cli.no_progress,
        quiet: cli.quiet,
        verbose: cli.verbose,
        verify: !cli.no_verify,
        allow_dirty: cli.allow_dirty,
        add_dependency: cli.add_dependency,
        runtime: cli
            .runtime
            .as_deref()
            .map_or_else(Runtime::default_for_this_build, Runtime::parse),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    if stdin {
        std::process::exit(run_stdin(&config));
    }
    let report = stm_rewrite::run(&config);
    stm_rewrite::print(&config, &report, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(report.status.code());
}

/// `stm-rewrite -`: standard input to standard output, the report on standard error.
fn run_stdin(config: &Config) -> i32 {
    let usage = |msg: &str| {
        eprintln!("error: {msg}");
        2
    };
    if config.paths.len() != 1 {
        return usage("`-` (standard input) cannot be combined with other paths");
    }
    if matches!(config.mode, Mode::OutDir(_) | Mode::InPlace { .. }) {
        return usage(
            "`-` writes the result to standard output: --out-dir and --in-place do not apply",
        );
    }
    if config.format == Format::Json || config.stats {
        return usage(
            "`-` writes the code to standard output: --format json and --stats do not apply",
        );
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        return usage(&format!("cannot read standard input: {e}"));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = stm_rewrite::error::utf8_error_position(e.as_bytes(), &e.utf8_error());
            return usage(&format!(
                "<stdin>:{at}: not valid UTF-8 (Rust source files must be UTF-8)"
            ));
        }
    };
    let run = stm_rewrite::run_stdin(config, &text);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = out.write_all(run.output.as_bytes());
    let _ = out.flush();
    let stderr = std::io::stderr();
    stm_rewrite::print(
        config,
        &run.report,
        &mut std::io::sink(),
        &mut stderr.lock(),
    );
    run.report.status.code()
}
