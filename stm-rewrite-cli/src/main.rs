//! `stm-rewrite`: inserts STM barriers and transaction boundaries into a source tree.
//! See `docs/rewrite.md`.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, ValueEnum};
use stm_rewrite::{Config, Format, Mode, RewriteOptions};

/// Rewrites a tree of Rust files: `#[transactional]` and `#[in_transactions]` functions (or,
/// with --all-functions, every function) get their read and write barriers and transaction
/// boundaries written out,
/// using every `#[object]` struct of the tree. Exit status: 0 ok, 1 `--check` found changes,
/// 2 errors.
#[derive(Parser, Debug)]
#[command(name = "stm-rewrite", version)]
#[command(group(ArgGroup::new("mode").args(["out_dir", "in_place", "check", "diff"])))]
struct Cli {
    /// Files and directories to rewrite (directories are walked; `.gitignore` is honoured).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write the rewritten tree into DIR (mirroring it; non-Rust files copied unchanged).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Replace each changed file (atomically).
    #[arg(long)]
    in_place: bool,
    /// With --in-place: keep each original as FILE.bk.
    #[arg(long, requires = "in_place")]
    backup: bool,
    /// Write nothing; exit 1 and print a unified diff if anything would change.
    #[arg(long)]
    check: bool,
    /// Write nothing; print a unified diff of what would change.
    #[arg(long)]
    diff: bool,
    /// Rewrite every function, not only those marked (PyPy style: all code runs in
    /// transactions). A function that takes no handle and no &Tx and has a loop (outside
    /// closures) becomes #[in_transactions]: its loops run as series of transactions cut at
    /// break points, the rest outside transactions; `main` too if it has a loop. Other
    /// functions become #[transactional]. `main` without a loop, const, async and extern
    /// functions, and functions the transformation rejects are left alone with a note.
    #[arg(long)]
    all_functions: bool,
    /// Print per-file statistics: functions rewritten, barriers inserted,
    /// inevitable points, loops given break points.
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
        },
        stats: cli.stats,
        format: match cli.format {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        },
        jobs: cli.jobs,
        progress: !cli.no_progress,
        quiet: cli.quiet,
    };
    let report = stm_rewrite::run(&config);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    stm_rewrite::print(&config, &report, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(report.status.code());
}
