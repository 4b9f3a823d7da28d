//! `duhton [--num-threads N] [FILE | -]`: runs a Duhton program, or a REPL when no file is
//! given. Errors go to stderr as `Error: file:line:col: <message>` with exit status 1; bad
//! command lines are refused by clap with exit status 2.

use std::io::{BufRead, BufWriter, IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::Parser;
use duhton::{reader, Interp, Options};

/// Duhton: a simple lisp-like language with STM support.
///
/// Runs a Duhton program; the calls it queues with `(transaction f args...)` run as
/// parallel transactions on the STM. Without a file, a REPL starts (prompt `))) `).
#[derive(Parser, Debug)]
#[command(
    name = "duhton",
    version,
    about = "Duhton: a simple lisp-like language with STM support",
    long_about = None,
    after_help = "Environment: DUHTON_HEAP_MB (shared heap size, default 2048), DUHTON_STATS=1 \
                  (commit/abort counters at exit), STM_CONFLICT_REPORT=1 (conflict report), \
                  DUHTON_HISTORY (REPL history file, default ~/.duhton_history)."
)]
struct Cli {
    /// Worker threads (and STM segments) for queued transactions [default: the number of
    /// CPUs]
    #[arg(long = "num-threads", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    num_threads: Option<u32>,
    /// The program to run ('-' reads it from stdin); without one, a REPL starts
    #[arg(value_name = "FILE")]
    file: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Worker threads of the transaction queue get this stack size (std reads it once, at
    // the first spawn): deep Duhton recursion ends in a clean error, not an overflow.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", (64usize << 20).to_string());
    }
    // Panics (heap exhausted, bugs) are reported as `Error: internal error: ...` by the
    // interpreter; the default hook's message would only duplicate it.
    std::panic::set_hook(Box::new(|_| {}));

    let mut opts = Options::default();
    if let Some(n) = cli.num_threads {
        opts.threads = n as usize;
    }
    let out = Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout()));
    let interp = match Interp::new(opts, out) {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    match cli.file {
        Some(path) => {
            let (src, name) = if path == "-" {
                let mut v = Vec::new();
                (std::io::stdin().read_to_end(&mut v).map(|_| v), "<stdin>")
            } else {
                (std::fs::read(&path), path.as_str())
            };
            let src = match src {
                Ok(s) => s,
                Err(e) => {
                    return fail(&duhton::Error::from(format!("cannot open '{path}': {e}")));
                }
            };
            let result = interp.run_named(&src, name);
            if std::env::var_os("DUHTON_STATS").is_some() {
                let _ = writeln!(std::io::stderr(), "{}", interp.stm().stats());
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        None if std::io::stdin().is_terminal() => repl_interactive(&interp),
        None => repl_piped(&interp),
    }
}

/// Where history is kept between sessions: `$DUHTON_HISTORY`, else `~/.duhton_history`.
fn history_file() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("DUHTON_HISTORY") {
        return Some(p.into());
    }
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".duhton_history"))
}

/// The REPL on a terminal: line editing and history (rustyline), a form may span lines
/// (continuation prompt `... `), an error is reported and the REPL goes on. Ctrl-C drops
/// the input being typed, Ctrl-D ends the session.
fn repl_interactive(interp: &Interp) -> ExitCode {
    use rustyline::error::ReadlineError;
    let mut rl = match rustyline::DefaultEditor::new() {
        Ok(rl) => rl,
        Err(_) => return repl_piped(interp),
    };
    let history = history_file();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let mut line_no: u32 = 1;
    let mut failed = false;
    'session: loop {
        let mut src = String::new();
        let first_line = line_no;
        loop {
            let prompt = if src.is_empty() { "))) " } else { "... " };
            match rl.readline(prompt) {
                Ok(line) => {
                    src.push_str(&line);
                    src.push('\n');
                    line_no += 1;
                    if reader::depth_after(src.as_bytes()) <= 0 {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => continue 'session,
                Err(_) => break 'session,
            }
        }
        if src.trim().is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(src.trim_end());
        if let Err(e) = interp.run_repl_input(src.as_bytes(), first_line) {
            report(&e);
            failed = true;
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    exit_status(failed)
}

/// The REPL reading a pipe: the prompt `))) ` before each input, a form may span lines,
/// an error is reported and the REPL goes on; the exit status says whether any failed.
fn repl_piped(interp: &Interp) -> ExitCode {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line_no: u32 = 1;
    let mut failed = false;
    loop {
        out("))) ");
        let mut src = Vec::new();
        let first_line = line_no;
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    out("\n");
                    return exit_status(failed);
                }
                Ok(_) => {}
            }
            line_no += 1;
            src.extend_from_slice(&line);
            if reader::depth_after(&src) <= 0 {
                break;
            }
        }
        if let Err(e) = interp.run_repl_input(&src, first_line) {
            report(&e);
            failed = true;
        }
    }
}

fn exit_status(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints `Error: ...` on stderr (after the program output so far).
fn report(e: &duhton::Error) {
    let _ = std::io::stdout().flush();
    let _ = writeln!(std::io::stderr(), "Error: {e}");
}

fn fail(e: &duhton::Error) -> ExitCode {
    report(e);
    ExitCode::FAILURE
}

/// Writes to stdout and flushes, ignoring errors (a closed pipe must not crash us).
fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(s.as_bytes());
    let _ = stdout.flush();
}
