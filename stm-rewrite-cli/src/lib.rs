//! # stm-rewrite: PyPy's STM translator for a Rust source tree
//!
//! PyPy inserted its barriers at translation time, over the whole program, with type
//! information. This crate is that translator for Rust: it takes a crate (or any tree of `.rs`
//! files) and writes a version with barriers and transaction boundaries, using the same
//! transformation library as the macros (`stm-transform`), with whole-tree knowledge the
//! macros lack (every `#[object]` type of the tree).
//!
//! * [`rewrite_source`]: one file's text in, the rewritten text out (byte-range splices: only
//!   the rewritten items change; comments and formatting elsewhere stay byte for byte).
//! * [`run`]: a whole tree (parallel, `.gitignore`-aware), writing by a [`Mode`], returning a
//!   [`Report`] whose [`Status`] is the exit code; [`report::print`] prints it.
//!
//! ```
//! use stm_rewrite::{rewrite_source, RewriteOptions};
//! let src = "// a comment\n#[stm::transactional]\nfn get(a: Gc<Account>) -> i64 {\n    a.balance\n}\n";
//! let out = rewrite_source(src, &Default::default(), RewriteOptions::default()).unwrap();
//! assert!(out.output.starts_with("// a comment\n"));
//! assert!(out.output.contains("__stm::read(a"));
//! assert_eq!(out.stats.functions, 1);
//! ```
//!
//! The command is documented in `docs/rewrite.md`.

pub mod error;
pub mod heap;
pub mod report;
pub mod rewrite;
pub mod tree;
pub mod verify;

pub use error::{Error, Excerpt, Status};
pub use report::print;
pub use rewrite::{
    check_nesting, learn_file, learn_source, rewrite_file, rewrite_source, Diagnostic,
    DiagnosticKind, FileRewrite, Keep, Learned, Note, NoteKind, Position, RewriteOptions,
    Rewritten, Tree, MAX_NESTING,
};
pub use stm_transform::{Knowledge, Stats};
pub use tree::{run, run_stdin, Config, FileReport, Format, Mode, Report, StdinRun, Verification};
pub use verify::Runtime;
