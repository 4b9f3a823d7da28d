//! Building the rewritten package, as `cargo fix` does: `cargo check --message-format=json
//! --all-targets` on it, each error read with its file and line, so that the functions a
//! build rejects can be put back as they were (`tree::verify` runs the rounds).
//!
//! Also the package's manifest: whether it depends on `stm-runtime`, and adding the
//! dependency.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where the rewritten code's `stm-runtime` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// A local checkout of the crate.
    Path(PathBuf),
    /// A version requirement (from a registry).
    Version(String),
}

impl Runtime {
    /// The `stm-runtime` next to this tool's sources if it is there (a build from the
    /// repository), otherwise version `0.1` from the registry.
    pub fn default_for_this_build() -> Runtime {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stm-runtime");
        match here.join("Cargo.toml").is_file() {
            true => Runtime::Path(here.canonicalize().unwrap_or(here)),
            false => Runtime::Version(env!("CARGO_PKG_VERSION").to_string()),
        }
    }

    /// `DIR` or `VERSION`, as `--runtime` takes it: an existing directory is a path.
    pub fn parse(spec: &str) -> Runtime {
        let p = Path::new(spec);
        if p.join("Cargo.toml").is_file() {
            Runtime::Path(p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        } else {
            Runtime::Version(spec.to_string())
        }
    }

    /// The line for `[dependencies]`.
    pub fn dependency_line(&self) -> String {
        match self {
            Runtime::Path(p) => format!("stm-runtime = {{ path = {:?} }}", p.display().to_string()),
            Runtime::Version(v) => format!("stm-runtime = {v:?}"),
        }
    }

    /// The `cargo add` command that adds it.
    pub fn cargo_add(&self) -> String {
        match self {
            Runtime::Path(p) => format!("cargo add stm-runtime --path {}", p.display()),
            Runtime::Version(v) => format!("cargo add stm-runtime@{v}"),
        }
    }
}

/// Whether a manifest names `stm-runtime` (as a dependency, renamed or not).
pub fn depends_on_runtime(manifest: &Path) -> bool {
    fs::read_to_string(manifest)
        .is_ok_and(|m| m.contains("stm-runtime") || m.contains("stm_runtime"))
}

/// The manifest with `line` added to its `[dependencies]` table (created at the end if it
/// has none).
pub fn with_dependency(manifest: &str, line: &str) -> String {
    let nl = if manifest.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(manifest.len() + line.len() + 16);
    let mut added = false;
    for l in manifest.split_inclusive('\n') {
        out.push_str(l);
        if !added && l.trim() == "[dependencies]" {
            if !l.ends_with('\n') {
                out.push_str(nl);
            }
            out.push_str(line);
            out.push_str(nl);
            added = true;
        }
    }
    if !added {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(nl);
        }
        out.push_str(nl);
        out.push_str("[dependencies]");
        out.push_str(nl);
        out.push_str(line);
        out.push_str(nl);
    }
    out
}

/// The nearest directory at or above `path` with a `Cargo.toml`: the package it belongs to.
pub fn package_of(path: &Path) -> Option<PathBuf> {
    let start = path.canonicalize().ok()?;
    let mut dir = if start.is_dir() {
        start
    } else {
        start.parent()?.to_path_buf()
    };
    loop {
        if dir.join("Cargo.toml").is_file() {
            return Some(dir);
        }
        dir = dir.parent()?.to_path_buf();
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace root of a package (the directory the compiler's paths are relative to).
pub fn workspace_root(manifest: &Path) -> Result<PathBuf, String> {
    let out = cargo()
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(last_lines(&String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Path::new(text.trim())
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "cargo locate-project gave no path".into())
}

/// A place a compiler error points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file, absolute.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

/// One error of the compiler.
#[derive(Clone, Debug)]
pub struct CompilerError {
    /// `error[E0507]: cannot move out of ...` (the first line of the message).
    pub headline: String,
    /// Every place it points at: primary spans first, then the others, then its notes',
    /// each followed by the macro call sites it was expanded from.
    pub places: Vec<Place>,
}

/// The outcome of one build.
#[derive(Clone, Debug)]
pub enum Check {
    /// It builds.
    Builds,
    /// The compiler's errors.
    Errors(Vec<CompilerError>),
    /// Cargo failed before the compiler said anything (a manifest it cannot read, a
    /// dependency it cannot fetch): its own words.
    Failed(String),
}

/// Which of a package's targets a build checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Targets {
    /// `--all-targets`.
    #[default]
    All,
    /// Everything but the benchmarks (which often need a nightly compiler:
    /// `#![feature(test)]`).
    NoBenches,
    /// The library and the binaries only.
    LibAndBins,
}

impl Targets {
    /// Cargo's flags for them.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Targets::All => &["--all-targets"],
            Targets::NoBenches => &["--lib", "--bins", "--tests", "--examples"],
            Targets::LibAndBins => &["--lib", "--bins"],
        }
    }

    /// The next smaller set, tried when a package does not build with these even without
    /// the rewrite.
    pub fn smaller(self) -> Option<Targets> {
        match self {
            Targets::All => Some(Targets::NoBenches),
            Targets::NoBenches => Some(Targets::LibAndBins),
            Targets::LibAndBins => None,
        }
    }

    /// The command, for messages.
    pub fn command(self) -> String {
        format!("cargo check {}", self.flags().join(" "))
    }
}

/// Runs `cargo check --message-format=json --keep-going` on a package's `targets`.
pub fn check(manifest: &Path, root: &Path, targets: Targets) -> Check {
    let out = match cargo()
        .args(["check", "--message-format=json", "--keep-going", "--quiet"])
        .args(targets.flags())
        .arg("--manifest-path")
        .arg(manifest)
        .output()
    {
        Ok(o) => o,
        Err(e) => return Check::Failed(format!("cannot run cargo: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors = parse_messages(&stdout, root);
    if out.status.success() {
        return Check::Builds;
    }
    if errors.is_empty() {
        return Check::Failed(last_lines(&String::from_utf8_lossy(&out.stderr)));
    }
    Check::Errors(errors)
}

/// The errors in cargo's JSON messages; paths are resolved against `root`.
pub fn parse_messages(stdout: &str, root: &Path) -> Vec<CompilerError> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-message" {
            continue;
        }
        let m = &v["message"];
        let level = m["level"].as_str().unwrap_or_default();
        if !level.starts_with("error") {
            continue;
        }
        let message = m["message"].as_str().unwrap_or_default();
        if message.starts_with("aborting due to") {
            continue;
        }
        let headline = match m["code"]["code"].as_str() {
            Some(code) => format!("error[{code}]: {message}"),
            None => format!("error: {message}"),
        };
        let headline = headline.lines().next().unwrap_or_default().to_string();
        let mut places = Vec::new();
        let spans = m["spans"].as_array().cloned().unwrap_or_default();
        let (primary, other): (Vec<&Value>, Vec<&Value>) =
            spans.iter().partition(|s| s["is_primary"] == true);
        for s in primary.into_iter().chain(other) {
            span_places(s, root, &mut places);
        }
        for c in m["children"].as_array().into_iter().flatten() {
            for s in c["spans"].as_array().into_iter().flatten() {
                span_places(s, root, &mut places);
            }
        }
        out.push(CompilerError { headline, places });
    }
    out
}

/// A span's place and those of the macro calls it comes from.
fn span_places(span: &Value, root: &Path, out: &mut Vec<Place>) {
    let mut s = span;
    for _ in 0..64 {
        if let (Some(file), Some(line), Some(col)) = (
            s["file_name"].as_str(),
            s["line_start"].as_u64(),
            s["column_start"].as_u64(),
        ) {
            let p = Path::new(file);
            let file = if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            };
            out.push(Place {
                file: file.canonicalize().unwrap_or(file),
                line: line as usize,
                column: col as usize,
            });
        }
        match s.get("expansion").and_then(|e| e.get("span")) {
            Some(next) if !next.is_null() => s = next,
            _ => break,
        }
    }
}

/// The last lines of a tool's output, for a message.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(6);
    let shown = lines[start..].join("\n");
    if shown.is_empty() {
        "cargo failed and said nothing".into()
    } else {
        shown
    }
}

/// A manifest (and lock file) changed for the build and put back as they were when dropped:
/// `--in-place` without `--add-dependency` builds with `stm-runtime` added, then restores the
/// user's files.
pub struct TemporaryEdit {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl TemporaryEdit {
    /// Adds `line` to the manifest's `[dependencies]` until dropped; the lock file at `lock`
    /// (which the build may change) is put back too.
    pub fn add_dependency(manifest: &Path, lock: &Path, line: &str) -> std::io::Result<Self> {
        let original = fs::read(manifest)?;
        let saved_lock = fs::read(lock).ok();
        let edited = with_dependency(&String::from_utf8_lossy(&original), line);
        let guard = TemporaryEdit {
            files: vec![
                (manifest.to_path_buf(), Some(original)),
                (lock.to_path_buf(), saved_lock),
            ],
        };
        fs::write(manifest, edited)?;
        Ok(guard)
    }
}

impl Drop for TemporaryEdit {
    fn drop(&mut self) {
        for (path, bytes) in &self.files {
            let _ = match bytes {
                Some(b) => fs::write(path, b),
                None => fs::remove_file(path),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dependency_goes_into_the_dependencies_table() {
        let line = "stm-runtime = { path = \"/x\" }";
        assert_eq!(
            with_dependency("[package]\nname = \"a\"\n\n[dependencies]\nfoo = \"1\"\n", line),
            "[package]\nname = \"a\"\n\n[dependencies]\nstm-runtime = { path = \"/x\" }\nfoo = \"1\"\n"
        );
        assert_eq!(
            with_dependency("[package]\nname = \"a\"", line),
            "[package]\nname = \"a\"\n\n[dependencies]\nstm-runtime = { path = \"/x\" }\n"
        );
        assert_eq!(
            with_dependency(
                "[package]\r\n[dependencies.foo]\r\nversion = \"1\"\r\n",
                line
            ),
            "[package]\r\n[dependencies.foo]\r\nversion = \"1\"\r\n\r\n[dependencies]\r\n\
             stm-runtime = { path = \"/x\" }\r\n"
        );
    }

    #[test]
    fn compiler_messages_give_their_places_and_macro_call_sites() {
        let root = Path::new("/nowhere");
        let msg = r#"{"reason":"compiler-message","message":{"level":"error","message":"cannot move out of `x`","code":{"code":"E0507"},"spans":[{"file_name":"src/lib.rs","line_start":7,"column_start":5,"is_primary":true,"expansion":{"span":{"file_name":"src/main.rs","line_start":2,"column_start":1,"is_primary":false,"expansion":null}}}],"children":[{"spans":[{"file_name":"/abs/other.rs","line_start":9,"column_start":3,"is_primary":true}]}]}}
{"reason":"compiler-message","message":{"level":"warning","message":"unused","code":null,"spans":[],"children":[]}}
{"reason":"compiler-message","message":{"level":"error","message":"aborting due to 1 previous error","code":null,"spans":[],"children":[]}}
{"reason":"build-finished","success":false}"#;
        let errs = parse_messages(msg, root);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].headline, "error[E0507]: cannot move out of `x`");
        let places: Vec<(String, usize)> = errs[0]
            .places
            .iter()
            .map(|p| (p.file.display().to_string(), p.line))
            .collect();
        assert_eq!(
            places,
            [
                ("/nowhere/src/lib.rs".to_string(), 7),
                ("/nowhere/src/main.rs".to_string(), 2),
                ("/abs/other.rs".to_string(), 9)
            ]
        );
    }
}
