//! Rewriting a whole tree: walk (parallel, `.gitignore`-aware), learn (first pass: every
//! `#[object]` of the tree), rewrite and write (second pass, parallel, one atomic write per
//! file), then report in a deterministic order.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use stm_transform::{Knowledge, Stats};

use crate::error::{utf8_error_position, Error, Status};
use crate::rewrite::{learn_source, rewrite_source, Note, RewriteOptions};

/// What to do with the rewritten files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Write nothing; report what would be done (the default).
    Report,
    /// Mirror the tree into this directory: `.rs` files rewritten, other files copied.
    OutDir(PathBuf),
    /// Replace each changed file (atomically), keeping `FILE.bk` if `backup`.
    InPlace {
        /// Keep the original as `FILE.bk`.
        backup: bool,
    },
    /// Write nothing; print a unified diff and fail (status 1) if anything would change.
    Check,
    /// Write nothing; print a unified diff.
    Diff,
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// One JSON document on standard output.
    Json,
}

/// A run's configuration (what the command line says).
#[derive(Clone, Debug)]
pub struct Config {
    /// Files and directories to rewrite.
    pub paths: Vec<PathBuf>,
    /// What to do with the result.
    pub mode: Mode,
    /// What to rewrite.
    pub options: RewriteOptions,
    /// Print per-file statistics.
    pub stats: bool,
    /// Text or JSON.
    pub format: Format,
    /// Worker threads (0: one per CPU).
    pub jobs: usize,
    /// Allow a progress bar (drawn only when standard error is a terminal).
    pub progress: bool,
    /// Print only errors (and what the mode prints on standard output).
    pub quiet: bool,
}

impl Config {
    /// A configuration with the defaults for `paths` and `mode`.
    pub fn new(paths: Vec<PathBuf>, mode: Mode) -> Config {
        Config {
            paths,
            mode,
            options: RewriteOptions::default(),
            stats: false,
            format: Format::Text,
            jobs: 0,
            progress: false,
            quiet: true,
        }
    }
}

/// What happened to one Rust file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The path, as walked (under the path given on the command line).
    pub path: PathBuf,
    /// Whether the rewrite changed it.
    pub changed: bool,
    /// What the transformation did.
    pub stats: Stats,
    /// Functions `--all-functions` left alone.
    pub notes: Vec<Note>,
    /// The unified diff (`--check` and `--diff`, when changed).
    pub diff: Option<String>,
    /// Whether the file failed (parse error, transformation error, read or write error).
    pub failed: bool,
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    /// The Rust files, sorted by path.
    pub files: Vec<FileReport>,
    /// Other files copied (`--out-dir`).
    pub copied: usize,
    /// Everything that failed, sorted by path.
    pub errors: Vec<Error>,
    /// Object types found in the tree (the first pass).
    pub objects: usize,
    /// The exit status.
    pub status: Status,
}

impl Report {
    /// The sum of every file's statistics.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for f in &self.files {
            t += f.stats;
        }
        t
    }

    /// How many files changed (or would change).
    pub fn changed(&self) -> usize {
        self.files.iter().filter(|f| f.changed).count()
    }
}

/// A file found by the walk.
#[derive(Clone, Debug)]
struct Source {
    /// The path as walked.
    path: PathBuf,
    /// Where it goes under `--out-dir`.
    rel: PathBuf,
    /// A Rust file (`.rs`, or named on the command line).
    rust: bool,
}

/// Runs the whole rewrite: walks, rewrites, writes (by the mode). Never panics on any input.
pub fn run(config: &Config) -> Report {
    let mut errors = Vec::new();
    let out_dir = match &config.mode {
        Mode::OutDir(d) => match prepare_out_dir(d) {
            Ok(c) => Some(c),
            Err(e) => {
                return Report {
                    files: Vec::new(),
                    copied: 0,
                    errors: vec![e],
                    objects: 0,
                    status: Status::Failed,
                }
            }
        },
        _ => None,
    };
    let sources = walk(config, out_dir.as_deref(), &mut errors);
    let rust: Vec<&Source> = sources.iter().filter(|s| s.rust).collect();
    let others: Vec<&Source> = sources.iter().filter(|s| !s.rust).collect();
    let jobs = if config.jobs == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.jobs
    };
    let bar = progress_bar(config, rust.len(), rust.len() * 2 + others.len());

    // First pass: read every Rust file and learn the objects of the tree.
    let read: Vec<(Result<String, Error>, Knowledge)> = par_map(&rust, jobs, |s| {
        let r = read_source(&s.path);
        let mut k = Knowledge::default();
        if let Ok(text) = &r {
            learn_source(&mut k, text);
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
        (r, k)
    });
    let mut knowledge = Knowledge {
        infer_types: true,
        ..Knowledge::default()
    };
    let mut texts = Vec::with_capacity(read.len());
    for (r, k) in read {
        knowledge.merge(k);
        texts.push(r);
    }
    let objects = knowledge.objects.len();

    // Second pass: rewrite and write.
    let jobs_in: Vec<(&Source, &Result<String, Error>)> =
        rust.iter().copied().zip(texts.iter()).collect();
    let results: Vec<(Option<FileReport>, Vec<Error>)> = par_map(&jobs_in, jobs, |(s, text)| {
        let r = process(config, out_dir.as_deref(), &knowledge, s, text);
        if let Some(b) = &bar {
            b.inc(1);
        }
        r
    });
    let copies: Vec<Result<(), Error>> = match &out_dir {
        Some(dir) => par_map(&others, jobs, |s| {
            let r = copy_file(&s.path, &dir.join(&s.rel));
            if let Some(b) = &bar {
                b.inc(1);
            }
            r
        }),
        None => Vec::new(),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let mut files = Vec::new();
    for (report, errs) in results {
        files.extend(report);
        errors.extend(errs);
    }
    let mut copied = 0;
    for c in copies {
        match c {
            Ok(()) => copied += 1,
            Err(e) => errors.push(e),
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    errors.sort_by_key(|e| e.to_string());
    let status = if !errors.is_empty() {
        Status::Failed
    } else if config.mode == Mode::Check && files.iter().any(|f| f.changed) {
        Status::WouldChange
    } else {
        Status::Ok
    };
    Report {
        files,
        copied,
        errors,
        objects,
        status,
    }
}

/// A progress bar for a large tree (more than 100 Rust files), only on a terminal.
fn progress_bar(config: &Config, rust: usize, len: usize) -> Option<indicatif::ProgressBar> {
    if !config.progress || config.quiet || rust <= 100 || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("stm-rewrite {bar:40} {pos}/{len} {elapsed}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// Creates the output directory; returns its canonical path.
fn prepare_out_dir(dir: &Path) -> Result<PathBuf, Error> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::OutDir {
            path: dir.to_path_buf(),
            message: "exists and is not a directory".into(),
        });
    }
    fs::create_dir_all(dir)
        .and_then(|()| dir.canonicalize())
        .map_err(|e| Error::OutDir {
            path: dir.to_path_buf(),
            message: format!("cannot create the output directory: {e}"),
        })
}

/// Lists the files under the paths, honouring `.gitignore` (also outside git repositories),
/// skipping `.git` and the output directory, following symbolic links (loops are errors).
fn walk(config: &Config, out_dir: Option<&Path>, errors: &mut Vec<Error>) -> Vec<Source> {
    let several = config.paths.len() > 1;
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for root in &config.paths {
        if fs::metadata(root).is_err() {
            if fs::symlink_metadata(root).is_ok() {
                errors.push(Error::Walk {
                    path: Some(root.clone()),
                    message: "broken symbolic link (or a link loop)".into(),
                });
            } else {
                errors.push(Error::MissingPath(root.clone()));
            }
            continue;
        }
        let is_file = root.is_file();
        // Under `--out-dir`, a single path's contents go to the top of the directory; with
        // several paths, each goes into a directory named after it.
        let prefix = if several || is_file {
            let name = root
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("root"));
            if several && !names.insert(name.clone()) && matches!(config.mode, Mode::OutDir(_)) {
                errors.push(Error::OutDir {
                    path: root.clone(),
                    message: format!(
                        "two paths named `{}` would go to the same place under --out-dir",
                        name.display()
                    ),
                });
                continue;
            }
            if is_file && !several {
                PathBuf::new()
            } else {
                name
            }
        } else {
            PathBuf::new()
        };
        let found = Mutex::new(Vec::new());
        let errs = Mutex::new(Vec::new());
        let skip = out_dir.map(Path::to_path_buf);
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .require_git(false)
            .follow_links(true)
            .filter_entry(move |e| {
                if e.file_name() == ".git" {
                    return false;
                }
                match (&skip, e.file_type()) {
                    (Some(skip), Some(t)) if t.is_dir() && e.depth() > 0 => {
                        e.path().canonicalize().ok().as_deref() != Some(skip.as_path())
                    }
                    _ => true,
                }
            })
            .build_parallel();
        walker.run(|| {
            let found = &found;
            let errs = &errs;
            Box::new(move |entry| {
                match entry {
                    Ok(e) => {
                        if e.file_type().is_some_and(|t| t.is_file()) {
                            if let Ok(mut f) = found.lock() {
                                f.push((e.path().to_path_buf(), e.depth()));
                            }
                        }
                    }
                    Err(err) => {
                        if let Ok(mut v) = errs.lock() {
                            v.push(walk_error(err));
                        }
                    }
                }
                ignore::WalkState::Continue
            })
        });
        errors.extend(errs.into_inner().unwrap_or_default());
        for (path, depth) in found.into_inner().unwrap_or_default() {
            let rel = if is_file {
                prefix.join(path.file_name().unwrap_or_default())
            } else {
                prefix.join(path.strip_prefix(root).unwrap_or(&path))
            };
            let rust = depth == 0 || path.extension().is_some_and(|x| x == "rs");
            out.push(Source { path, rel, rust });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    out
}

fn walk_error(e: ignore::Error) -> Error {
    match e {
        ignore::Error::Loop { ancestor, child } => Error::SymlinkLoop {
            path: child,
            ancestor,
        },
        ignore::Error::WithPath { path, err } => match *err {
            ignore::Error::Loop { ancestor, child } => Error::SymlinkLoop {
                path: child,
                ancestor,
            },
            ignore::Error::Io(io) => Error::Read { path, source: io },
            other => Error::Walk {
                path: Some(path),
                message: other.to_string(),
            },
        },
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error(*err)
        }
        other => Error::Walk {
            path: None,
            message: other.to_string(),
        },
    }
}

fn read_source(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => Err(Error::NotUtf8 {
            path: path.to_path_buf(),
            at: utf8_error_position(e.as_bytes(), &e.utf8_error()),
        }),
    }
}

/// Rewrites one file and writes it as the mode says.
fn process(
    config: &Config,
    out_dir: Option<&Path>,
    knowledge: &Knowledge,
    s: &Source,
    text: &Result<String, Error>,
) -> (Option<FileReport>, Vec<Error>) {
    let mut errors = Vec::new();
    let original = match text {
        Ok(t) => t,
        Err(e) => {
            // Reported once; rebuilt here because `Error` holds an `io::Error`.
            errors.push(clone_error(e));
            return (None, errors);
        }
    };
    let mut report = FileReport {
        path: s.path.clone(),
        changed: false,
        stats: Stats::default(),
        notes: Vec::new(),
        diff: None,
        failed: false,
    };
    let output = match rewrite_source(original, knowledge, config.options) {
        Ok(r) => {
            for d in &r.errors {
                errors.push(Error::Transform {
                    path: s.path.clone(),
                    at: d.at,
                    message: d.message.clone(),
                });
            }
            report.stats = r.stats;
            report.notes = r.notes;
            r.output
        }
        Err(d) => {
            errors.push(Error::Parse {
                path: s.path.clone(),
                at: d.at,
                message: d.message,
            });
            original.clone()
        }
    };
    report.changed = output != *original;
    match &config.mode {
        Mode::Report => {}
        Mode::Check | Mode::Diff => {
            if report.changed {
                report.diff = Some(unified_diff(&s.path, original, &output));
            }
        }
        Mode::OutDir(_) => {
            if let Some(dir) = out_dir {
                if let Err(e) = write_atomic(&dir.join(&s.rel), output.as_bytes(), Some(&s.path)) {
                    errors.push(e);
                }
            }
        }
        Mode::InPlace { backup } => {
            if report.changed {
                let target = fs::canonicalize(&s.path).unwrap_or_else(|_| s.path.clone());
                let mut ok = true;
                if *backup {
                    let mut bk = target.clone().into_os_string();
                    bk.push(".bk");
                    if let Err(e) = write_atomic(Path::new(&bk), original.as_bytes(), Some(&target))
                    {
                        errors.push(e);
                        ok = false;
                    }
                }
                if ok {
                    if let Err(e) = write_atomic(&target, output.as_bytes(), Some(&target)) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    report.failed = !errors.is_empty();
    (Some(report), errors)
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Read { path, source } => Error::Read {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Error::NotUtf8 { path, at } => Error::NotUtf8 {
            path: path.clone(),
            at: *at,
        },
        other => Error::Walk {
            path: None,
            message: other.to_string(),
        },
    }
}

/// A unified diff with `a/` and `b/` headers.
pub fn unified_diff(path: &Path, old: &str, new: &str) -> String {
    let shown = path.display().to_string();
    let name = shown.trim_start_matches('/');
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

fn copy_file(from: &Path, to: &Path) -> Result<(), Error> {
    let bytes = fs::read(from).map_err(|e| Error::Read {
        path: from.to_path_buf(),
        source: e,
    })?;
    write_atomic(to, &bytes, Some(from))
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `bytes` to `path` so that `path` is never half-written: a temporary file in the
/// same directory, flushed, given `like`'s permissions, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], like: Option<&Path>) -> Result<(), Error> {
    let werr = |e: io::Error| Error::Write {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(werr)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (tmp, mut file) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{name}.stm-rewrite-{}-{n}.tmp",
            std::process::id()
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1_000_000 => continue,
            Err(e) => return Err(werr(e)),
        }
    };
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Some(like) = like {
            if let Ok(m) = fs::metadata(like) {
                fs::set_permissions(&tmp, m.permissions())?;
            }
        }
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    Ok(())
}

/// Maps `f` over `items` on `jobs` threads; results in the order of `items`.
fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Ok(mut d) = done.lock() {
                    d.push((i, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}
