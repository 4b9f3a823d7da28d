//! What can go wrong, one variant per cause, each message naming the file (and the line and
//! column where there is one).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::rewrite::Position;

/// A failure on one path. None of them stops the run: the other files are still processed,
/// and the exit status says that something failed ([`Status::Failed`]).
#[derive(Debug)]
pub enum Error {
    /// A path given on the command line does not exist.
    MissingPath(PathBuf),
    /// The walk found a symbolic link that leads back to one of its own ancestors.
    SymlinkLoop {
        /// The link.
        path: PathBuf,
        /// The directory it leads back to.
        ancestor: PathBuf,
    },
    /// The walk could not list a directory or read an entry.
    Walk {
        /// Where, if known.
        path: Option<PathBuf>,
        /// The walker's message.
        message: String,
    },
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A `.rs` file is not UTF-8 (Rust source must be).
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The first invalid byte.
        at: Position,
    },
    /// A file does not parse as Rust (or nests too deeply to be parsed safely).
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        at: Position,
        /// The parser's message.
        message: String,
        /// The source line, for the caret.
        excerpt: Option<Excerpt>,
    },
    /// The transformation rejected an item (the item is left unchanged, with its attribute,
    /// so the macro reports the same problem at build time).
    Transform {
        /// The file.
        path: PathBuf,
        /// Where.
        at: Position,
        /// The transformation's message.
        message: String,
        /// The source line, for the caret.
        excerpt: Option<Excerpt>,
    },
    /// A file nests too deeply to be parsed safely (see `rewrite::MAX_NESTING`).
    TooDeep {
        /// The file.
        path: PathBuf,
        /// Where the limit is passed.
        at: Position,
        /// What the limit is.
        message: String,
        /// The source line, for the caret.
        excerpt: Option<Excerpt>,
    },
    /// The tool failed inside (a bug): the file is left as it is.
    Internal {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// `--in-place` on files with uncommitted changes (without `--allow-dirty`).
    Dirty {
        /// The path given on the command line.
        path: PathBuf,
        /// The changed files, as `git status` lists them.
        files: Vec<String>,
    },
    /// A path that `--in-place` cannot replace (standard input, a pipe, a device).
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// The rewritten package could not be verified by a build.
    Verify {
        /// The package's manifest.
        manifest: PathBuf,
        /// Why.
        message: String,
    },
    /// A file could not be written (the original, or the previous output, is intact).
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output directory is unusable.
    OutDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingPath(p) => write!(f, "{}: no such file or directory", p.display()),
            Error::SymlinkLoop { path, ancestor } => write!(
                f,
                "{}: symbolic link loop (leads back to {}); not followed",
                path.display(),
                ancestor.display()
            ),
            Error::Walk {
                path: Some(p),
                message,
            } => write!(f, "{}: {message}", p.display()),
            Error::Walk {
                path: None,
                message,
            } => write!(f, "{message}"),
            Error::Read { path, source } => {
                write!(f, "{}: cannot read: {}", path.display(), io_message(source))
            }
            Error::NotUtf8 { path, at } => write!(
                f,
                "{}:{at}: not valid UTF-8 (Rust source files must be UTF-8); file skipped",
                path.display()
            ),
            Error::Parse {
                path, at, message, ..
            } => {
                write!(f, "{}:{at}: does not parse: {message}", path.display())
            }
            Error::Transform {
                path, at, message, ..
            } => {
                write!(f, "{}:{at}: cannot rewrite: {message}", path.display())
            }
            Error::TooDeep {
                path, at, message, ..
            } => write!(f, "{}:{at}: {message}", path.display()),
            Error::Internal { path, message } => write!(f, "{}: {message}", path.display()),
            Error::Dirty { path, files } => {
                let shown: Vec<&str> = files.iter().take(8).map(String::as_str).collect();
                let more = match files.len().saturating_sub(8) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                write!(
                    f,
                    "{}: has uncommitted changes ({}{more}); --in-place would mix them with \
                     the rewrite: commit or stash them first, or pass --allow-dirty",
                    path.display(),
                    shown.join(", ")
                )
            }
            Error::NotRegular { path } => write!(
                f,
                "{}: not a regular file, cannot be replaced in place (`stm-rewrite -` reads \
                 standard input and writes standard output)",
                path.display()
            ),
            Error::Verify { manifest, message } => {
                write!(
                    f,
                    "{}: cannot verify the rewrite: {message}",
                    manifest.display()
                )
            }
            Error::Write { path, source } => {
                write!(
                    f,
                    "{}: cannot write: {}",
                    path.display(),
                    io_message(source)
                )
            }
            Error::OutDir { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The source line the error is about, if it has one.
    pub fn excerpt(&self) -> Option<&Excerpt> {
        match self {
            Error::Parse { excerpt, .. }
            | Error::Transform { excerpt, .. }
            | Error::TooDeep { excerpt, .. } => excerpt.as_ref(),
            _ => None,
        }
    }
}

/// A source line and the part of it an error is about, shown under the message with a caret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    /// The line's number, from 1.
    pub line: usize,
    /// The line's text (without its line ending).
    pub text: String,
    /// The byte range in `text` the caret marks (at least one character, or the end).
    pub range: std::ops::Range<usize>,
}

impl Excerpt {
    /// The excerpt of `source` from `at` to `end` (on `at`'s line: a range that goes on to
    /// later lines is marked to the end of the first); `None` if `at` is not in the text.
    pub fn of(source: &str, at: Position, end: Position) -> Option<Excerpt> {
        let text = source.lines().nth(at.line.checked_sub(1)?)?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        let text = if at.line == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let byte = |column: usize| {
            text.char_indices()
                .nth(column.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i)
        };
        let start = byte(at.column);
        let mut stop = if end.line == at.line && end.column > at.column {
            byte(end.column)
        } else if end.line > at.line {
            text.len()
        } else {
            start
        };
        if stop <= start {
            // One character, or the end of the line.
            stop = text[start..]
                .chars()
                .next()
                .map_or(start, |c| start + c.len_utf8());
        }
        Some(Excerpt {
            line: at.line,
            text: text.to_string(),
            range: start..stop,
        })
    }
}

fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// The outcome of a run, as an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Everything went well (and, with `--check`, nothing would change).
    Ok = 0,
    /// `--check`: some file would change.
    WouldChange = 1,
    /// Something failed (a file did not parse, could not be read or written, ...).
    Failed = 2,
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The position of the first invalid byte of a non-UTF-8 text.
pub fn utf8_error_position(bytes: &[u8], err: &std::str::Utf8Error) -> Position {
    let valid = &bytes[..err.valid_up_to()];
    // The prefix is valid UTF-8 by definition.
    let text = std::str::from_utf8(valid).unwrap_or_default();
    let line = text.matches('\n').count() + 1;
    let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}
