//! Rewriting a whole tree: walk (parallel, `.gitignore`-aware), learn (first pass: every
//! `#[object]` and function of the tree), rewrite and write (second pass, parallel, one
//! atomic write per file), verify (build the rewritten package and put back the functions
//! the compiler rejects, `--all-functions` only), then report in a deterministic order.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use stm_transform::Stats;

use crate::error::{utf8_error_position, Error, Excerpt, Status};
use crate::rewrite::{
    learn_file, rewrite_file, Diagnostic, DiagnosticKind, FileRewrite, Keep, Learned, Note,
    Position, RewriteOptions, Rewritten, Tree,
};
use crate::verify::{self, Check, CompilerError, Runtime};

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
    /// Print a note for every function left alone, those that cannot reach the heap too.
    pub verbose: bool,
    /// Build the rewritten package (`--out-dir`, `--in-place`, with `--all-functions`) and
    /// leave alone the functions the compiler rejects.
    pub verify: bool,
    /// `--in-place` even on files with uncommitted changes.
    pub allow_dirty: bool,
    /// `--in-place`: add the `stm-runtime` dependency to the package's `Cargo.toml`.
    pub add_dependency: bool,
    /// The `stm-runtime` the rewritten code depends on.
    pub runtime: Runtime,
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
            verbose: false,
            verify: true,
            allow_dirty: false,
            add_dependency: false,
            runtime: Runtime::default_for_this_build(),
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

/// What the verification did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// The packages built (their manifests).
    pub packages: Vec<PathBuf>,
    /// How many builds it ran.
    pub builds: usize,
    /// Whether the final rewrite builds.
    pub builds_ok: bool,
    /// Functions put back as they were because the build failed with them rewritten.
    pub left_alone: usize,
    /// The targets checked: fewer than all when some do not build without the rewrite
    /// either (benchmarks that need a nightly compiler).
    pub targets: verify::Targets,
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
    /// What the verification did, if it ran.
    pub verification: Option<Verification>,
    /// What the user should know besides: the `stm-runtime` dependency, verification that
    /// did not run.
    pub messages: Vec<String>,
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

    fn failed(errors: Vec<Error>) -> Report {
        Report {
            files: Vec::new(),
            copied: 0,
            errors,
            objects: 0,
            status: Status::Failed,
            verification: None,
            messages: Vec::new(),
        }
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
    /// Not a regular file (standard input, a pipe, a device named on the command line).
    special: bool,
    /// The same file reached again through symbolic links: where else it goes under
    /// `--out-dir` (it is rewritten once).
    aliases: Vec<PathBuf>,
}

/// One Rust file through the run.
struct Job<'a> {
    source: &'a Source,
    text: &'a Result<String, Error>,
    /// Functions to leave alone (the verification's findings).
    keep: Keep,
    done: Done,
}

/// A file rewritten.
#[derive(Default)]
struct Done {
    output: String,
    rewrite: FileRewrite,
    errors: Vec<Error>,
    /// Where the output was written (canonical), for the compiler's paths.
    written: Option<PathBuf>,
}

/// Runs the whole rewrite: walks, rewrites, writes (by the mode), verifies. Never panics on
/// any input.
pub fn run(config: &Config) -> Report {
    let mut errors = Vec::new();
    let out_dir = match &config.mode {
        Mode::OutDir(d) => match prepare_out_dir(d) {
            Ok(c) => Some(c),
            Err(e) => return Report::failed(vec![e]),
        },
        _ => None,
    };
    if matches!(config.mode, Mode::InPlace { .. }) && !config.allow_dirty {
        let dirty = dirty_paths(&config.paths);
        if !dirty.is_empty() {
            return Report::failed(dirty);
        }
    }
    let sources = walk(config, out_dir.as_deref(), &mut errors);
    let rust: Vec<&Source> = sources.iter().filter(|s| s.rust).collect();
    let others: Vec<&Source> = sources.iter().filter(|s| !s.rust).collect();
    let jobs = if config.jobs == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.jobs
    };
    let bar = progress_bar(config, rust.len(), rust.len() * 2 + others.len());

    // First pass: read every Rust file and learn the objects and functions of the tree.
    let read: Vec<(Result<String, Error>, Learned)> = par_map(&rust, jobs, |s| {
        let r = read_source(&s.path);
        let learned = match &r {
            Ok(text) => learn_file(text),
            Err(_) => Learned::default(),
        };
        if let Some(b) = &bar {
            b.inc(1);
        }
        (r, learned)
    });
    let mut texts = Vec::with_capacity(read.len());
    let mut learned = Vec::with_capacity(read.len());
    for (r, l) in read {
        texts.push(r);
        learned.push(l);
    }
    let tree = Tree::from_files(learned, true);
    let objects = tree.knowledge.objects.len();

    // Second pass: rewrite and write.
    let mut work: Vec<Job<'_>> = rust
        .iter()
        .zip(texts.iter())
        .map(|(s, text)| Job {
            source: s,
            text,
            keep: Keep::new(),
            done: Done::default(),
        })
        .collect();
    let all: Vec<usize> = (0..work.len()).collect();
    redo(
        config,
        out_dir.as_deref(),
        &tree,
        &mut work,
        &all,
        jobs,
        bar.as_ref(),
    );
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

    // The dependency, and the verification.
    let mut messages = Vec::new();
    let mut verification = None;
    let rewritten_any = work.iter().any(|j| j.done.rewrite.stats.functions > 0);
    let packages = packages(config, out_dir.as_deref());
    let implicit_any = work
        .iter()
        .any(|j| j.done.rewrite.rewritten.iter().any(|r| r.implicit));
    let writes = matches!(config.mode, Mode::OutDir(_) | Mode::InPlace { .. });
    let verifies = implicit_any && config.verify && writes && !packages.is_empty();
    let mut guards = Vec::new();
    if rewritten_any {
        dependency(
            config,
            &packages,
            implicit_any,
            verifies,
            &mut messages,
            &mut errors,
            &mut guards,
        );
    }
    if implicit_any {
        if !config.verify {
            messages.push(
                "not verified by a build (--no-verify): some rewritten functions may not compile"
                    .into(),
            );
        } else if !writes {
            messages.push(
                "not verified by a build (only --out-dir and --in-place build the rewritten \
                 package): functions the compiler would reject are included"
                    .into(),
            );
        } else if packages.is_empty() {
            messages.push(
                "not verified by a build: the rewritten files are not in a Cargo package \
                 (give the package's directory)"
                    .into(),
            );
        } else {
            let v = verify_rounds(
                config,
                out_dir.as_deref(),
                &tree,
                &mut work,
                jobs,
                &packages,
            );
            match v {
                Ok(v) => {
                    messages.push(verification_message(&v));
                    verification = Some(v);
                }
                Err(failed) => {
                    let (v, e) = *failed;
                    verification = Some(v);
                    errors.push(e);
                }
            }
        }
    }
    drop(guards);

    let mut files = Vec::new();
    for j in work {
        let Ok(original) = j.text else {
            if let Err(e) = j.text {
                errors.push(clone_error(e));
            }
            continue;
        };
        let changed = j.done.output != *original;
        let diff = match config.mode {
            Mode::Check | Mode::Diff if changed => {
                Some(unified_diff(&j.source.path, original, &j.done.output))
            }
            _ => None,
        };
        let failed = !j.done.errors.is_empty();
        errors.extend(j.done.errors);
        files.push(FileReport {
            path: j.source.path.clone(),
            changed,
            stats: j.done.rewrite.stats,
            notes: j.done.rewrite.notes,
            diff,
            failed,
        });
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
        verification,
        messages,
    }
}

/// The result of rewriting standard input.
#[derive(Debug)]
pub struct StdinRun {
    /// The report (one file, named `<stdin>`).
    pub report: Report,
    /// What goes to standard output: the rewritten text (the input itself if it could not be
    /// rewritten), or with `--check`/`--diff`, the diff.
    pub output: String,
}

/// Rewrites one text read from standard input (`stm-rewrite -`), as rustfmt does: the result
/// goes to standard output; `--check` and `--diff` print the diff instead. The text is its
/// own tree.
pub fn run_stdin(config: &Config, text: &str) -> StdinRun {
    let name = PathBuf::from("<stdin>");
    let tree = Tree::from_files(vec![learn_file(text)], true);
    let source = Source {
        path: name.clone(),
        rel: name.clone(),
        rust: true,
        special: true,
        aliases: Vec::new(),
    };
    let done = compute(&tree, config.options, &source, text, &Keep::new());
    let changed = done.output != text;
    let diff = changed.then(|| unified_diff(&name, text, &done.output));
    let output = match config.mode {
        Mode::Check | Mode::Diff => diff.clone().unwrap_or_default(),
        _ => done.output.clone(),
    };
    let mut errors = done.errors;
    let mut messages = Vec::new();
    if done.rewrite.rewritten.iter().any(|r| r.implicit) {
        messages.push(format!(
            "the rewritten code calls the `stm-runtime` crate: its package needs `{}` in \
             [dependencies] (`{}`)",
            config.runtime.dependency_line(),
            config.runtime.cargo_add()
        ));
    }
    if done.rewrite.rewritten.iter().any(|r| r.implicit) {
        messages.push(
            "not verified by a build (standard input is not a package): functions the \
             compiler would reject are included"
                .into(),
        );
    }
    errors.sort_by_key(|e| e.to_string());
    let status = if !errors.is_empty() {
        Status::Failed
    } else if config.mode == Mode::Check && changed {
        Status::WouldChange
    } else {
        Status::Ok
    };
    let failed = !errors.is_empty();
    StdinRun {
        report: Report {
            files: vec![FileReport {
                path: name,
                changed,
                stats: done.rewrite.stats,
                notes: done.rewrite.notes,
                diff: None,
                failed,
            }],
            copied: 0,
            errors,
            objects: tree.knowledge.objects.len(),
            status,
            verification: None,
            messages,
        },
        output,
    }
}

/// Rewrites (with their `keep`) and writes the files `which` of `work`, in parallel.
fn redo(
    config: &Config,
    out_dir: Option<&Path>,
    tree: &Tree,
    work: &mut [Job<'_>],
    which: &[usize],
    jobs: usize,
    bar: Option<&indicatif::ProgressBar>,
) {
    let todo: Vec<(usize, &Source, &Result<String, Error>, Keep)> = which
        .iter()
        .map(|&i| (i, work[i].source, work[i].text, work[i].keep.clone()))
        .collect();
    let results: Vec<(usize, Done)> = par_map(&todo, jobs, |(i, s, text, keep)| {
        let (i, s, text) = (*i, *s, *text);
        let done = match text {
            Ok(original) => {
                let mut done = compute(tree, config.options, s, original, keep);
                let (written, errs) = emit(config, out_dir, s, original, &done.output);
                done.written = written;
                done.errors.extend(errs);
                done
            }
            Err(_) => Done::default(),
        };
        if let Some(b) = bar {
            b.inc(1);
        }
        (i, done)
    });
    for (i, done) in results {
        work[i].done = done;
    }
}

/// Rewrites one file's text.
fn compute(tree: &Tree, options: RewriteOptions, s: &Source, original: &str, keep: &Keep) -> Done {
    let mut done = Done::default();
    match rewrite_file(original, tree, options, keep) {
        Ok(r) => {
            for d in &r.errors {
                done.errors.push(Error::Transform {
                    path: s.path.clone(),
                    at: d.at,
                    message: d.message.clone(),
                    excerpt: Excerpt::of(original, d.at, d.end),
                });
            }
            done.output = r.output.clone();
            done.rewrite = r;
        }
        Err(d) => {
            done.errors.push(file_error(&s.path, original, d));
            done.output = original.to_string();
        }
    }
    done
}

/// The error for a file that could not be rewritten at all.
fn file_error(path: &Path, original: &str, d: Diagnostic) -> Error {
    match d.kind {
        DiagnosticKind::Internal => Error::Internal {
            path: path.to_path_buf(),
            message: d.message,
        },
        DiagnosticKind::TooDeep => Error::TooDeep {
            path: path.to_path_buf(),
            at: d.at,
            excerpt: Excerpt::of(original, d.at, d.end),
            message: d.message,
        },
        _ => Error::Parse {
            path: path.to_path_buf(),
            at: d.at,
            excerpt: Excerpt::of(original, d.at, d.end),
            message: d.message,
        },
    }
}

/// Writes a rewritten file as the mode says; returns where it went (canonical) and the
/// errors.
fn emit(
    config: &Config,
    out_dir: Option<&Path>,
    s: &Source,
    original: &str,
    output: &str,
) -> (Option<PathBuf>, Vec<Error>) {
    let mut errors = Vec::new();
    let changed = output != original;
    let mut written = None;
    match &config.mode {
        Mode::Report | Mode::Check | Mode::Diff => {}
        Mode::OutDir(_) => {
            if let Some(dir) = out_dir {
                let like = (!s.special).then_some(s.path.as_path());
                for rel in std::iter::once(&s.rel).chain(&s.aliases) {
                    let target = dir.join(rel);
                    match write_atomic(&target, output.as_bytes(), like) {
                        Ok(()) => {
                            if written.is_none() {
                                written = Some(target.canonicalize().unwrap_or(target));
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        Mode::InPlace { backup } => {
            let target = fs::canonicalize(&s.path).unwrap_or_else(|_| s.path.clone());
            if s.special {
                if changed {
                    errors.push(Error::NotRegular {
                        path: s.path.clone(),
                    });
                }
            } else if changed || fs::read(&target).ok().as_deref() != Some(output.as_bytes()) {
                let mut ok = true;
                if *backup && changed {
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
            written = Some(target);
        }
    }
    (written, errors)
}

/// The Cargo packages the output is in: under `--out-dir`, the mirror of each path given
/// that is a package's directory; in place, the package of each path given.
fn packages(config: &Config, out_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    match (&config.mode, out_dir) {
        (Mode::OutDir(_), Some(dir)) => {
            let several = config.paths.len() > 1;
            for p in &config.paths {
                if !p.join("Cargo.toml").is_file() {
                    continue;
                }
                let mirror = if several {
                    match p
                        .canonicalize()
                        .ok()
                        .and_then(|c| c.file_name().map(PathBuf::from))
                    {
                        Some(name) => dir.join(name),
                        None => continue,
                    }
                } else {
                    dir.to_path_buf()
                };
                if mirror.join("Cargo.toml").is_file() {
                    out.insert(mirror);
                }
            }
        }
        _ => {
            for p in &config.paths {
                if let Some(pkg) = verify::package_of(p) {
                    out.insert(pkg);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Sees that each package can build the rewritten code (`implicit`: `--all-functions`
/// rewrote functions nobody marked, so the package may not use the runtime yet): under `--out-dir` the copy's
/// manifest gets the `stm-runtime` dependency; in place, with `--add-dependency` the user's
/// does, and otherwise the user is told how to add it (the verification adds it for its
/// builds only, in `guards`, put back when they are dropped).
#[allow(clippy::too_many_arguments)]
fn dependency(
    config: &Config,
    packages: &[PathBuf],
    implicit: bool,
    verifies: bool,
    messages: &mut Vec<String>,
    errors: &mut Vec<Error>,
    guards: &mut Vec<verify::TemporaryEdit>,
) {
    let line = config.runtime.dependency_line();
    let how = format!(
        "`{line}` in its [dependencies] (`{}` in its directory)",
        config.runtime.cargo_add()
    );
    if packages.is_empty() {
        // Code marked by hand uses the macros, so its package depends on the runtime already.
        if !implicit {
            return;
        }
        messages.push(format!(
            "the rewritten code calls the `stm-runtime` crate: its package needs {how}"
        ));
        return;
    }
    for pkg in packages {
        let manifest = pkg.join("Cargo.toml");
        if verify::depends_on_runtime(&manifest) {
            continue;
        }
        let write = match &config.mode {
            Mode::OutDir(_) => true,
            Mode::InPlace { .. } => config.add_dependency,
            _ => false,
        };
        if write {
            let done = fs::read_to_string(&manifest)
                .map(|m| verify::with_dependency(&m, &line))
                .and_then(|m| fs::write(&manifest, m));
            match done {
                Ok(()) => messages.push(format!(
                    "added `{line}` to {}: the rewritten code calls it",
                    manifest.display()
                )),
                Err(e) => errors.push(Error::Write {
                    path: manifest,
                    source: e,
                }),
            }
            continue;
        }
        messages.push(format!(
            "the rewritten code calls the `stm-runtime` crate: {} needs {how}, or run again \
             with --add-dependency",
            manifest.display()
        ));
        if verifies && matches!(config.mode, Mode::InPlace { .. }) {
            let lock = verify::workspace_root(&manifest)
                .unwrap_or_else(|_| pkg.clone())
                .join("Cargo.lock");
            match verify::TemporaryEdit::add_dependency(&manifest, &lock, &line) {
                Ok(g) => guards.push(g),
                Err(e) => errors.push(Error::Write {
                    path: manifest,
                    source: e,
                }),
            }
        }
    }
}

fn verification_message(v: &Verification) -> String {
    let builds = match v.builds {
        1 => "1 build".to_string(),
        n => format!("{n} builds"),
    };
    match v.left_alone {
        0 => format!(
            "verified: the rewritten package builds (`{}`, {builds})",
            v.targets.command()
        ),
        n => format!(
            "verified: the rewritten package builds (`{}`, {builds}); \
             {n} functions the compiler rejected rewritten were put back as they were",
            v.targets.command()
        ),
    }
}

/// The most builds one verification runs before it gives up.
const MAX_BUILDS: usize = 60;

/// The rewritten items `--all-functions` chose, as (file, position).
fn implicit_items(work: &[Job<'_>]) -> Vec<(usize, Position)> {
    let mut out = Vec::new();
    for (i, j) in work.iter().enumerate() {
        for r in &j.done.rewrite.rewritten {
            if r.implicit {
                out.push((i, r.at));
            }
        }
    }
    out
}

/// Builds the packages; while the compiler rejects rewritten functions, puts them back as
/// they were and builds again. An error it cannot place in one (a rewritten signature that
/// breaks a caller) is found by bisection over the rewritten functions. `Err` if the
/// package cannot be verified (cargo fails otherwise, or it does not build without the
/// rewrite either).
fn verify_rounds(
    config: &Config,
    out_dir: Option<&Path>,
    tree: &Tree,
    work: &mut [Job<'_>],
    jobs: usize,
    packages: &[PathBuf],
) -> Result<Verification, Box<(Verification, Error)>> {
    let mut v = Verification {
        packages: packages.iter().map(|p| p.join("Cargo.toml")).collect(),
        ..Verification::default()
    };
    let mut roots = Vec::new();
    for m in &v.packages {
        match verify::workspace_root(m) {
            Ok(r) => roots.push((m.clone(), r)),
            Err(message) => {
                let e = Error::Verify {
                    manifest: m.clone(),
                    message: format!(
                        "{message}\n(pass --no-verify to write the rewrite unverified)"
                    ),
                };
                return Err(Box::new((v, e)));
            }
        }
    }
    let build = |v: &mut Verification| -> Result<Vec<CompilerError>, Error> {
        let mut all = Vec::new();
        for (m, root) in &roots {
            v.builds += 1;
            match verify::check(m, root, v.targets) {
                Check::Builds => {}
                Check::Errors(e) => all.extend(e),
                Check::Failed(message) => {
                    return Err(Error::Verify {
                        manifest: m.clone(),
                        message: format!(
                            "`cargo check` failed: {message}\n(pass --no-verify to write the \
                             rewrite unverified)"
                        ),
                    })
                }
            }
        }
        Ok(all)
    };
    let mut reasons = 0;
    loop {
        let errs = match build(&mut v) {
            Ok(e) => e,
            Err(e) => return Err(Box::new((v, e))),
        };
        if errs.is_empty() {
            v.builds_ok = true;
            // The functions noted as put back (a kept block can hold several keeps).
            v.left_alone = work
                .iter()
                .flat_map(|j| &j.done.rewrite.notes)
                .filter(|n| n.reason.starts_with("`cargo check` fails"))
                .count();
            return Ok(v);
        }
        if v.builds >= MAX_BUILDS {
            break;
        }
        // Each error into the rewritten function it falls in.
        let mut changed = BTreeSet::new();
        for e in &errs {
            if let Some((i, at)) = locate(work, e) {
                let reason = format!("`cargo check` fails with it rewritten: {}", e.headline);
                if work[i].keep.insert(at, reason).is_none() {
                    reasons += 1;
                    changed.insert(i);
                }
            }
        }
        if changed.is_empty() {
            // Errors outside the rewritten functions: which one causes them?
            let found = bisect(config, out_dir, tree, work, jobs, &build, &mut v, &errs[0]);
            let all: Vec<usize> = (0..work.len()).collect();
            match found {
                Ok(Some((i, at, e))) => {
                    let reason = format!(
                        "`cargo check` fails elsewhere with it rewritten: {}",
                        e.headline
                    );
                    work[i].keep.insert(at, reason);
                    reasons += 1;
                    redo(config, out_dir, tree, work, &all, jobs, None);
                    continue;
                }
                Ok(None) => {
                    redo(config, out_dir, tree, work, &all, jobs, None);
                    // Some targets do not build on this compiler at all (benchmarks
                    // written for nightly): check fewer.
                    if let Some(smaller) = v.targets.smaller() {
                        v.targets = smaller;
                        continue;
                    }
                    let first = errs.first().map(|e| e.headline.clone()).unwrap_or_default();
                    let e = Error::Verify {
                        manifest: v.packages[0].clone(),
                        message: format!(
                            "the package does not build without the rewrite either ({first}); \
                             it is written unverified"
                        ),
                    };
                    return Err(Box::new((v, e)));
                }
                Err(e) => {
                    redo(config, out_dir, tree, work, &all, jobs, None);
                    return Err(Box::new((v, e)));
                }
            }
        }
        let which: Vec<usize> = changed.into_iter().collect();
        redo(config, out_dir, tree, work, &which, jobs, None);
    }
    // Gave up: nothing --all-functions chose is kept.
    for (i, at) in implicit_items(work) {
        work[i].keep.insert(
            at,
            format!("the verification gave up after {MAX_BUILDS} builds"),
        );
        reasons += 1;
    }
    let all: Vec<usize> = (0..work.len()).collect();
    redo(config, out_dir, tree, work, &all, jobs, None);
    v.left_alone = reasons;
    let e = Error::Verify {
        manifest: v.packages[0].clone(),
        message: format!(
            "still failing after {MAX_BUILDS} builds: every function --all-functions chose is \
             left as it was"
        ),
    };
    Err(Box::new((v, e)))
}

/// The rewritten function (chosen by `--all-functions`) an error falls in: the first of its
/// places that is inside one.
fn locate(work: &[Job<'_>], e: &CompilerError) -> Option<(usize, Position)> {
    let by_path: HashMap<&Path, usize> = work
        .iter()
        .enumerate()
        .filter_map(|(i, j)| j.done.written.as_deref().map(|p| (p, i)))
        .collect();
    for place in &e.places {
        let Some(&i) = by_path.get(place.file.as_path()) else {
            continue;
        };
        let hit = work[i]
            .done
            .rewrite
            .rewritten
            .iter()
            .filter(|r: &&Rewritten| r.implicit && r.lines.contains(&place.line))
            .min_by_key(|r| r.lines.len());
        if let Some(r) = hit {
            return Some((i, r.at));
        }
    }
    None
}

/// The rewritten function that makes the build fail when the errors are outside every
/// rewritten function: the shortest prefix of them (in path order) with which the build
/// fails ends with it. `Ok(None)` if the build fails without any of them. `work`'s keeps are
/// as they were when it returns (its files are not rewritten back).
#[allow(clippy::too_many_arguments)]
fn bisect(
    config: &Config,
    out_dir: Option<&Path>,
    tree: &Tree,
    work: &mut [Job<'_>],
    jobs: usize,
    build: &dyn Fn(&mut Verification) -> Result<Vec<CompilerError>, Error>,
    v: &mut Verification,
    full: &CompilerError,
) -> Result<Option<(usize, Position, CompilerError)>, Error> {
    let items = implicit_items(work);
    let all: Vec<usize> = (0..work.len()).collect();
    let saved: Vec<Keep> = work.iter().map(|j| j.keep.clone()).collect();
    let restore = |work: &mut [Job<'_>]| {
        for (j, s) in work.iter_mut().zip(&saved) {
            j.keep = s.clone();
        }
    };
    // Only the first `k` rewritten functions.
    let set_prefix = |work: &mut [Job<'_>], k: usize| {
        restore(work);
        for &(i, at) in &items[k..] {
            work[i].keep.insert(at, String::new());
        }
        redo(config, out_dir, tree, work, &all, jobs, None);
    };
    let result = (|| {
        set_prefix(work, 0);
        if !build(v)?.is_empty() {
            return Ok(None);
        }
        let (mut lo, mut hi) = (0, items.len());
        let mut failing = full.clone();
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            set_prefix(work, mid);
            match build(v)?.into_iter().next() {
                None => lo = mid,
                Some(e) => {
                    hi = mid;
                    failing = e;
                }
            }
        }
        Ok(items
            .get(hi.wrapping_sub(1))
            .map(|&(i, at)| (i, at, failing)))
    })();
    restore(work);
    result
}

/// `git status` of each path: the files with uncommitted changes, as errors. A path outside
/// a git repository (or without git) has none.
fn dirty_paths(paths: &[PathBuf]) -> Vec<Error> {
    let mut out = Vec::new();
    for p in paths {
        let dir = if p.is_dir() {
            p.clone()
        } else {
            match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        let Ok(o) = std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(["status", "--porcelain", "--untracked-files=all", "--"])
            .arg(p.canonicalize().unwrap_or_else(|_| p.clone()))
            .output()
        else {
            continue;
        };
        if !o.status.success() {
            continue;
        }
        let files: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.get(3..).map(str::to_string))
            .collect();
        if !files.is_empty() {
            out.push(Error::Dirty {
                path: p.clone(),
                files,
            });
        }
    }
    out
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
/// skipping `.git` and the output directory, following symbolic links (loops are errors). A
/// Rust file reached twice (through a link) is listed once, with its other places as
/// aliases; a path on the command line that is neither a file nor a directory (a pipe,
/// `/dev/stdin`) is read as a Rust file.
fn walk(config: &Config, out_dir: Option<&Path>, errors: &mut Vec<Error>) -> Vec<Source> {
    let several = config.paths.len() > 1;
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for root in &config.paths {
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(_) => {
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
        };
        let is_dir = meta.is_dir();
        let is_file = !is_dir;
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
        if !meta.is_file() && !is_dir {
            let name = root.file_name().map(PathBuf::from).unwrap_or_default();
            out.push(Source {
                path: root.clone(),
                rel: prefix.join(name),
                rust: true,
                special: true,
                aliases: Vec::new(),
            });
            continue;
        }
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
            out.push(Source {
                path,
                rel,
                rust,
                special: false,
                aliases: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    // One file reached through several paths (symbolic links) is rewritten once.
    let mut first: HashMap<PathBuf, usize> = HashMap::new();
    let mut kept: Vec<Source> = Vec::with_capacity(out.len());
    for s in out {
        let canonical = (!s.special && s.rust)
            .then(|| fs::canonicalize(&s.path).ok())
            .flatten();
        match canonical.as_ref().and_then(|c| first.get(c)) {
            Some(&i) => kept[i].aliases.push(s.rel),
            None => {
                if let Some(c) = canonical {
                    first.insert(c, kept.len());
                }
                kept.push(s);
            }
        }
    }
    kept
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
    // Myers' algorithm is quadratic when most lines change (a file of thousands of rewritten
    // functions): past the deadline it settles for a longer, still correct, diff.
    similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Patience)
        .timeout(std::time::Duration::from_secs(2))
        .diff_lines(old, new)
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
