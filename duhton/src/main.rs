//! `duhton [--help] [--num-threads N] [FILE | -]`: runs a Duhton program, or a REPL when no
//! file is given. Errors go to stderr as `Error: <message>` with exit status 1.

use std::io::{BufRead, BufWriter, Read, Write};
use std::process::ExitCode;

use duhton::{reader, Interp, Options};

const HELP: &str = "Duhton: a simple lisp-like language with STM support

Usage: duhton [--help] [--num-threads no] [filename]
  --help: this help
  --num-threads <number>: number of threads (default: the number of CPUs)
  filename: the program to run ('-' reads it from stdin); without one, a REPL starts

";

fn main() -> ExitCode {
    // Worker threads of the transaction queue get this stack size (std reads it once, at
    // the first spawn): deep Duhton recursion ends in a clean error, not an overflow.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", (64usize << 20).to_string());
    }
    // Panics (heap exhausted, bugs) are reported as `Error: internal error: ...` by the
    // interpreter; the default hook's message would only duplicate it.
    std::panic::set_hook(Box::new(|_| {}));

    let mut opts = Options::default();
    let mut file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--help" {
            out(HELP);
            return ExitCode::SUCCESS;
        } else if a == "--num-threads" {
            let Some(n) = args.next() else {
                out("ERROR: --num-threads requires a parameter\n");
                return ExitCode::FAILURE;
            };
            match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => opts.threads = n,
                _ => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "Error: --num-threads: expected a positive number, got '{n}'"
                    );
                    return ExitCode::FAILURE;
                }
            }
        } else if a.starts_with("--") {
            out(&format!("ERROR: unrecognized parameter {a}\n"));
        } else {
            file = Some(a);
        }
    }

    let out = Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout()));
    let interp = match Interp::new(opts, out) {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    match file {
        Some(path) => {
            let src = if path == "-" {
                let mut v = Vec::new();
                std::io::stdin().read_to_end(&mut v).map(|_| v)
            } else {
                std::fs::read(&path)
            };
            let src = match src {
                Ok(s) => s,
                Err(_) => return fail(&duhton::Error(format!("cannot open '{path}'"))),
            };
            let result = interp.run_source(&src);
            if std::env::var_os("DUHTON_STATS").is_some() {
                let _ = writeln!(std::io::stderr(), "{}", interp.stm().stats());
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        None => repl(&interp),
    }
}

/// The REPL: prompt `))) `, read a line (more lines while parentheses are open), run it,
/// print its value.
fn repl(interp: &Interp) -> ExitCode {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        out("))) ");
        let mut src = Vec::new();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    out("\n");
                    return ExitCode::SUCCESS;
                }
                Ok(_) => {}
            }
            src.extend_from_slice(&line);
            if reader::depth_after(&src) <= 0 {
                break;
            }
        }
        match interp.run_repl_input(&src) {
            Ok(()) => {}
            Err(e) => return fail(&e),
        }
    }
}

fn fail(e: &duhton::Error) -> ExitCode {
    let _ = std::io::stdout().flush();
    let _ = writeln!(std::io::stderr(), "Error: {e}");
    ExitCode::FAILURE
}

/// Writes to stdout and flushes, ignoring errors (a closed pipe must not crash us).
fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(s.as_bytes());
    let _ = stdout.flush();
}
