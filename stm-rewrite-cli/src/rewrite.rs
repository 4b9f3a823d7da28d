//! Rewriting one source text: find the items to change, expand them with `stm-transform`,
//! and splice the printed expansions into the original text.
//!
//! Only the byte ranges of changed items are replaced (their span in the original text, as
//! `proc-macro2`'s `span-locations` reports it); everything else — comments, blank lines,
//! formatting, untouched items — is kept byte for byte. Inside a rewritten function, the
//! statements the transformation left unchanged (and the text between statements) are kept
//! too; only the header, the prelude and the changed statements are printed. A rewritten item
//! no longer carries `#[transactional]` or `#[in_transactions]`, and a function whose body
//! already holds generated code (`__stm_tx`, `__stm`) is never rewritten again, so rewriting
//! is idempotent.
//!
//! Items marked `#[transactional]` go through `stm_transform::expand_transactional_with`,
//! items marked `#[in_transactions]` through `expand_in_transactions_with`; with
//! `--all-functions`, `plan` decides which (if any) an unmarked function gets. Which
//! attributes mark an item, which signatures can be rewritten and where a function's
//! transaction comes from are `stm_transform::rules`, the macros' own rules.
//!
//! Parsing and rewriting run on a thread of their own with a large stack, after a check that
//! the input's nesting is within [`MAX_NESTING`]: syn and the transformation recurse on the
//! syntax tree, and no input may overflow the stack.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use stm_transform::rules::{self, Marker};
use stm_transform::{Knowledge, Stats};
use syn::spanned::Spanned;
use syn::{ImplItem, Item};

use crate::heap::{self, HeapIndex, Summary};

/// What to rewrite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Rewrite every function of the tree that can reach the shared heap, not only those
    /// marked `#[transactional]` or `#[in_transactions]` (the rules are in `plan`).
    pub all_functions: bool,
    /// With `all_functions`: also the functions that cannot reach the shared heap (they
    /// gain nothing; for testing the rewriter on ordinary crates).
    pub include_pure: bool,
}

/// A position in a source file, 1-based (as editors and compilers print them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The file does not parse.
    #[default]
    Parse,
    /// The file nests deeper than [`MAX_NESTING`].
    TooDeep,
    /// The transformation rejected an item.
    Transform,
    /// A bug of the tool (a panic, an expansion that does not parse).
    Internal,
}

/// A message about a place in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it starts.
    pub at: Position,
    /// Where it ends (equal to `at` when only the start is known).
    pub end: Position,
    /// What (the parser's or the transformation's own words).
    pub message: String,
    /// What kind of problem.
    pub kind: DiagnosticKind,
}

impl Diagnostic {
    fn new(kind: DiagnosticKind, at: Position, message: String) -> Diagnostic {
        Diagnostic {
            at,
            end: at,
            message,
            kind,
        }
    }
}

/// Why a function was left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// It cannot reach the shared heap (`--all-functions` rewrites only functions that can).
    Pure,
    /// It cannot run in a transaction, or the transformation rejected it.
    Skipped,
    /// The build fails with it rewritten (found by the verification).
    Build,
}

/// A function `--all-functions` left alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where the function starts.
    pub at: Position,
    /// The function's name.
    pub function: String,
    /// Why it was not made transactional.
    pub reason: String,
    /// What kind of reason.
    pub kind: NoteKind,
}

/// An item written anew in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// Where the item starts in the input (the key of [`Keep`]).
    pub at: Position,
    /// Its name (`impl Type` for a whole block).
    pub function: String,
    /// Whether `--all-functions` chose it (a build failure then takes it back) rather than
    /// the user's attribute.
    pub implicit: bool,
    /// Its lines in the output, 1-based, end exclusive.
    pub lines: Range<usize>,
}

/// The result of rewriting one file.
#[derive(Clone, Debug, Default)]
pub struct FileRewrite {
    /// The new text (equal to the input when nothing changed).
    pub output: String,
    /// What the transformation did (functions rewritten, barriers, ...).
    pub stats: Stats,
    /// Functions `--all-functions` left alone.
    pub notes: Vec<Note>,
    /// Items that could not be rewritten (left unchanged, with their attribute, so that the
    /// macro reports the same problem at build time).
    pub errors: Vec<Diagnostic>,
    /// The items written anew, in output order.
    pub rewritten: Vec<Rewritten>,
}

impl FileRewrite {
    /// Whether the output differs from the input.
    pub fn changed(&self, input: &str) -> bool {
        self.output != input
    }
}

/// Items `--all-functions` must leave alone although it would rewrite them, by their
/// position in the input ([`Rewritten::at`]), with the reason for the note (the verification
/// fills it with the compiler's errors).
pub type Keep = BTreeMap<Position, String>;

/// What the rewriter knows about the whole tree: its object types and function signatures
/// (for the transformation), and which of its functions can reach the shared heap.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// Object types and signatures.
    pub knowledge: Knowledge,
    /// The heap functions of the tree.
    pub heap: HeapIndex,
}

impl Tree {
    /// The tree made of what was learned from each of its files.
    pub fn from_files(files: Vec<Learned>, infer_types: bool) -> Tree {
        let mut knowledge = Knowledge {
            infer_types,
            ..Knowledge::default()
        };
        let mut summaries = Vec::new();
        for f in files {
            knowledge.merge(f.knowledge);
            summaries.extend(f.summaries);
        }
        let heap = HeapIndex::build(&summaries, &knowledge);
        Tree { knowledge, heap }
    }
}

/// What the first pass learns from one file.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    /// Its object types and signatures.
    pub knowledge: Knowledge,
    /// What each of its functions mentions and calls.
    pub summaries: Vec<Summary>,
    /// How many object types it declares.
    pub objects: usize,
}

/// The deepest nesting a file may have: brackets, and the operators and calls of one
/// expression, counted by [`check_nesting`]. Deeper input is an error, not a rewrite: the
/// parser and the transformation recurse on it.
pub const MAX_NESTING: usize = 3_000;

/// The stack of the thread that parses and rewrites a file: enough for [`MAX_NESTING`].
const STACK_SIZE: usize = 512 << 20;

/// Runs `f` on a thread with a [`STACK_SIZE`] stack (inline if no thread can be started),
/// catching panics.
fn on_big_stack<R: Send>(f: impl FnOnce() -> R + Send) -> std::thread::Result<R> {
    let mut slot = Some(f);
    let spawned = std::thread::scope(|s| {
        let slot = &mut slot;
        let h = std::thread::Builder::new()
            .name("stm-rewrite-file".into())
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, move || {
                let f = slot.take().expect("taken once");
                let r = catch_unwind(AssertUnwindSafe(f));
                // The spans of this file are no longer needed: free the thread's source map.
                proc_macro2::extra::invalidate_current_thread_spans();
                r
            });
        h.ok().map(|h| h.join().unwrap_or_else(Err))
    });
    match (spawned, slot) {
        (Some(r), _) => r,
        (None, Some(f)) => {
            let r = catch_unwind(AssertUnwindSafe(f));
            proc_macro2::extra::invalidate_current_thread_spans();
            r
        }
        (None, None) => Err(Box::new("the worker thread did not run")),
    }
}

/// Rewrites one file's text, with what the file itself says about the tree. `Err` if it
/// does not parse (with the parser's position and message), nests too deeply, or if the
/// transformation failed internally; never panics.
pub fn rewrite_source(
    source: &str,
    knowledge: &Knowledge,
    options: RewriteOptions,
) -> Result<FileRewrite, Diagnostic> {
    let learned = learn_file(source);
    let mut k = knowledge.clone();
    k.merge(learned.knowledge);
    let heap = HeapIndex::build(&learned.summaries, &k);
    let tree = Tree {
        knowledge: knowledge.clone(),
        heap,
    };
    rewrite_file(source, &tree, options, &Keep::new())
}

/// Rewrites one file's text with whole-tree knowledge, leaving the items of `keep` alone.
/// `Err` as [`rewrite_source`]; never panics.
pub fn rewrite_file(
    source: &str,
    tree: &Tree,
    options: RewriteOptions,
    keep: &Keep,
) -> Result<FileRewrite, Diagnostic> {
    match on_big_stack(|| rewrite_source_inner(source, tree, options, keep)) {
        Ok(r) => r,
        Err(payload) => Err(Diagnostic::new(
            DiagnosticKind::Internal,
            Position { line: 1, column: 1 },
            format!(
                "internal error in the transformation (please report it): {}",
                panic_message(&*payload)
            ),
        )),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Learns the object types and function signatures of one file into `knowledge`; never
/// panics. Returns how many object types the file declares.
pub fn learn_source(knowledge: &mut Knowledge, source: &str) -> usize {
    let learned = learn_file(source);
    knowledge.merge(learned.knowledge);
    learned.objects
}

/// What one file tells about the tree (nothing if it does not parse); never panics.
pub fn learn_file(source: &str) -> Learned {
    on_big_stack(|| {
        let (_, text) = parse_text(source);
        if check_nesting(&text).is_err() {
            return Learned::default();
        }
        let Ok(file) = syn::parse_file(&text) else {
            return Learned::default();
        };
        let mut knowledge = Knowledge::default();
        let objects = knowledge.learn_from_source(&text);
        Learned {
            knowledge,
            summaries: heap::summarize_file(&file),
            objects,
        }
    })
    .unwrap_or_default()
}

/// Checks that a text nests at most [`MAX_NESTING`] deep, without recursion. The measure
/// bounds the depth of the syntax tree the parser would build: along the way into nested
/// brackets, each token since the last `;` or `,` (or since the end of a `{ }` block that
/// ends a statement) counts one, so `((x))`, `- - x`, `a.b().c()` and `a + b + c` all count
/// by their length. Text that does not lex is left to the parser.
pub fn check_nesting(text: &str) -> Result<(), Diagnostic> {
    let Ok(ts) = text.parse::<TokenStream>() else {
        return Ok(());
    };
    struct Frame {
        tokens: std::vec::IntoIter<TokenTree>,
        base: usize,
        count: usize,
        after_block: bool,
    }
    let mut stack = vec![Frame {
        tokens: ts.into_iter().collect::<Vec<_>>().into_iter(),
        base: 0,
        count: 0,
        after_block: false,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(tt) = frame.tokens.next() else {
            stack.pop();
            continue;
        };
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ';' || p.as_char() == ',' => {
                frame.count = 0;
                frame.after_block = false;
                continue;
            }
            TokenTree::Ident(i) if frame.after_block && i != "else" && i != "as" => frame.count = 0,
            TokenTree::Punct(p) if frame.after_block && p.as_char() == '#' => frame.count = 0,
            _ => {}
        }
        frame.count += 1;
        let depth = frame.base + frame.count;
        if depth > MAX_NESTING {
            let at = position(tt.span());
            return Err(Diagnostic::new(
                DiagnosticKind::TooDeep,
                at,
                format!(
                    "nested too deeply to rewrite (more than {MAX_NESTING} levels of \
                     brackets, operators and calls in one expression); file left as it is"
                ),
            ));
        }
        frame.after_block = matches!(&tt, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace);
        if let TokenTree::Group(g) = tt {
            stack.push(Frame {
                tokens: g.stream().into_iter().collect::<Vec<_>>().into_iter(),
                base: depth,
                count: 0,
                after_block: false,
            });
        }
    }
    Ok(())
}

/// The text handed to the parser: without a byte-order mark (its length is returned) and
/// with a shebang line blanked (same length, so byte offsets stay those of the file).
fn parse_text(source: &str) -> (usize, Cow<'_, str>) {
    let (bom, text) = match source.strip_prefix('\u{feff}') {
        Some(rest) => (source.len() - rest.len(), rest),
        None => (0, source),
    };
    if text.starts_with("#!") && !text.trim_start_matches("#!").trim_start().starts_with('[') {
        let end = text.find('\n').unwrap_or(text.len());
        let mut blanked = " ".repeat(end);
        blanked.push_str(&text[end..]);
        return (bom, Cow::Owned(blanked));
    }
    (bom, Cow::Borrowed(text))
}

/// What an edit rewrote, for [`Rewritten`].
struct Record {
    at: Position,
    function: String,
    implicit: bool,
}

struct Edit {
    range: Range<usize>,
    text: String,
    record: Option<Record>,
}

struct Walker<'a> {
    text: &'a str,
    tree: &'a Tree,
    options: RewriteOptions,
    keep: &'a Keep,
    edits: Vec<Edit>,
    /// The record of the next edit.
    record: Option<Record>,
    out: FileRewrite,
}

fn rewrite_source_inner(
    source: &str,
    tree: &Tree,
    options: RewriteOptions,
    keep: &Keep,
) -> Result<FileRewrite, Diagnostic> {
    let (bom, text) = parse_text(source);
    check_nesting(&text)?;
    let file = syn::parse_file(&text).map_err(|e| {
        let mut message = e.to_string();
        if message == "cannot parse string into token stream" {
            // The lexer's words.
            message = "unbalanced brackets, or a string, character or comment that is not \
                       closed (the tokens end here)"
                .into();
        }
        let mut d = Diagnostic::new(DiagnosticKind::Parse, position(e.span()), message);
        d.end = end_position(e.span());
        d
    })?;
    let mut w = Walker {
        text: &text,
        tree,
        options,
        keep,
        edits: Vec::new(),
        record: None,
        out: FileRewrite::default(),
    };
    w.items(&file.items);
    let Walker {
        mut edits, mut out, ..
    } = w;
    edits.sort_by_key(|e| e.range.start);
    // A file with Windows line endings gets them in the rewritten items too.
    if source.contains("\r\n") {
        for e in edits.iter_mut() {
            e.text = e.text.replace("\r\n", "\n").replace('\n', "\r\n");
        }
    }
    let mut output = String::with_capacity(source.len() + source.len() / 2);
    let mut at = 0;
    let mut line = 1;
    for e in edits {
        let (start, end) = (e.range.start + bom, e.range.end + bom);
        if start < at || end > source.len() || !source.is_char_boundary(start) {
            // Overlapping or out of range: would corrupt the file. Should not happen.
            return Err(Diagnostic::new(
                DiagnosticKind::Internal,
                Position { line: 1, column: 1 },
                "internal error: overlapping edits (please report it)".into(),
            ));
        }
        let kept = &source[at..start];
        line += kept.matches('\n').count();
        output.push_str(kept);
        let first = line;
        line += e.text.matches('\n').count();
        output.push_str(&e.text);
        if let Some(r) = e.record {
            out.rewritten.push(Rewritten {
                at: r.at,
                function: r.function,
                implicit: r.implicit,
                lines: first..line + 1,
            });
        }
        at = end;
    }
    output.push_str(&source[at..]);
    out.output = output;
    Ok(out)
}

/// 1-based position of a span's start.
fn position(span: Span) -> Position {
    let lc = span.start();
    Position {
        line: lc.line.max(1),
        column: lc.column + 1,
    }
}

/// 1-based position of a span's end.
fn end_position(span: Span) -> Position {
    let lc = span.end();
    Position {
        line: lc.line.max(1),
        column: lc.column + 1,
    }
}

/// A diagnostic of the transformation, at its span, or at `fallback` (the item) for
/// generated tokens, which have no position.
fn from_transform(d: &stm_transform::Diagnostic, fallback: Span) -> Diagnostic {
    let span = if d.span.start().line == 0 {
        fallback
    } else {
        d.span
    };
    let mut out = Diagnostic::new(DiagnosticKind::Transform, position(span), d.message.clone());
    out.end = end_position(span);
    if out.end < out.at {
        out.end = out.at;
    }
    out
}

fn attr_args(a: &syn::Attribute) -> TokenStream {
    match &a.meta {
        syn::Meta::List(l) => l.tokens.clone(),
        _ => TokenStream::new(),
    }
}

/// Whether a body has a loop (`loop`, `while`, `for`) of its own: outside closures, `async`
/// and `const` blocks and nested items, which run at another time.
fn has_loop(block: &syn::Block) -> bool {
    use syn::visit::Visit;
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr(&mut self, e: &'ast syn::Expr) {
            match e {
                syn::Expr::Loop(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_) => self.0 = true,
                syn::Expr::Closure(_) | syn::Expr::Async(_) | syn::Expr::Const(_) => {}
                _ if !self.0 => syn::visit::visit_expr(self, e),
                _ => {}
            }
        }
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    let mut f = Finder(false);
    f.visit_block(block);
    f.0
}

/// What `--all-functions` does with a function that carries no attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Plan {
    /// Rewrite it as if it were marked so.
    Rewrite(Marker),
    /// Leave it alone, with this note.
    Skip(String),
}

/// The note for `main` without a loop.
const MAIN_NOTE: &str =
    "`main` sets up the runtime and starts the threads; it runs outside transactions";

/// The note for a function that cannot reach the shared heap.
pub const PURE_NOTE: &str = "it cannot reach the shared heap (it mentions no handle, `Root`, \
                             `Tx` or object type, uses no `tx!()` and calls no function that \
                             does), so a transaction would gain nothing";

/// The rules of `--all-functions` (PyPy style: all code that can touch the shared heap runs
/// in transactions), for a function or method without a marker, that can reach the heap
/// (see `heap`):
///
/// 1. A signature the transformation rejects (`const`, `async`, `extern`, variadic, `self:
///    Gc<Self>` on its own, which goes with its whole impl block, see `impl_block`) is left
///    alone with the transformation's reason ([`rules::signature_problems`]).
/// 2. A function that may run in transactions (it takes no handle and no `&Tx` and returns no
///    handle, [`rules::can_run_in_transactions`]) and has a loop outside closures
///    ([`has_loop`]) becomes **`#[in_transactions]`**: its loops run as series of
///    transactions with a break point at each back-edge, its other code outside transactions.
///    PyPy put break points in long-running code rather than run it as one transaction.
///    This includes `main`: its code outside loops (setting up the runtime, spawning threads)
///    runs outside transactions, where it may.
/// 3. `main` without a loop is left alone with a note ([`MAIN_NOTE`]).
/// 4. Every other function becomes **`#[transactional]`**: one taking a handle or a `&Tx`
///    runs in its caller's transaction, any other joins the running one or starts its own.
///
/// After expanding (`Walker::implicit`): a function the transformation rejects is left alone
/// with the reason as its note; so is an `#[in_transactions]` one whose loops all stay
/// ordinary loops (they block, spawn threads or run transaction queues), which would only
/// gain the prelude.
fn plan(sig: &syn::Signature, body: &syn::Block, is_method: bool) -> Plan {
    if let Some(d) = rules::signature_problems(sig, Marker::Transactional)
        .into_iter()
        .next()
    {
        return Plan::Skip(d.message);
    }
    let is_main = !is_method && sig.ident == "main" && sig.inputs.is_empty();
    if rules::can_run_in_transactions(sig) && has_loop(body) {
        return Plan::Rewrite(Marker::InTransactions);
    }
    if is_main {
        return Plan::Skip(MAIN_NOTE.into());
    }
    Plan::Rewrite(Marker::Transactional)
}

/// The outcome of expanding one item.
enum Expanded {
    /// The new items, and what the transformation did.
    Items(syn::File, Stats),
    /// The transformation's errors.
    Errors(Vec<Diagnostic>),
}

/// Whether attributes hold `#[not_transactional]`.
fn opted_out(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| rules::marker(a) == Some(Marker::NotTransactional))
}

/// A method with its summary, for `--all-functions` on an `impl` block.
struct Method<'a> {
    f: &'a syn::ImplItemFn,
    heap: bool,
}

impl Walker<'_> {
    fn items(&mut self, items: &[Item]) {
        for item in items {
            self.item(item);
        }
    }

    /// The attribute marking an item, or an error recorded (the item is then left alone).
    fn mark(&mut self, attrs: &[syn::Attribute]) -> Result<Option<(usize, Marker)>, ()> {
        rules::marked(attrs).map_err(|d| {
            let span = attrs.first().map_or_else(Span::call_site, |a| a.span());
            let d = from_transform(&d, span);
            self.out.errors.push(d)
        })
    }

    /// Whether `--all-functions` may rewrite a function (it can reach the shared heap, or
    /// `--include-pure`); otherwise a note is recorded.
    fn reaches_heap(
        &mut self,
        ty: Option<String>,
        f: (&[syn::Attribute], &syn::Signature, &syn::Block),
        span: Span,
    ) -> bool {
        let summary = heap::summarize_fn(ty, f.0, f.1, f.2.to_token_stream(), false);
        if self.options.include_pure || self.tree.heap.reaches_heap(&summary) {
            return true;
        }
        self.note_kind(span, &f.1.ident, PURE_NOTE.into(), NoteKind::Pure);
        false
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) => match self.mark(&f.attrs) {
                Err(()) | Ok(Some((_, Marker::NotTransactional))) => {}
                Ok(Some((i, how))) => {
                    let mut f2 = f.clone();
                    let a = f2.attrs.remove(i);
                    self.explicit(
                        how,
                        item.span(),
                        &f.sig.ident,
                        Some(&f.block),
                        attr_args(&a),
                        f2.into_token_stream(),
                    );
                }
                Ok(None) => {
                    if self.options.all_functions
                        && !rules::is_generated(f.block.to_token_stream())
                        && self.reaches_heap(None, (&f.attrs, &f.sig, &f.block), item.span())
                    {
                        match plan(&f.sig, &f.block, false) {
                            Plan::Skip(reason) => self.note(item.span(), &f.sig.ident, reason),
                            Plan::Rewrite(how) => self.implicit(
                                how,
                                item.span(),
                                Some(&f.block),
                                &f.sig.ident,
                                f.to_token_stream(),
                            ),
                        }
                    }
                }
            },
            Item::Impl(imp) => self.impl_block(item, imp),
            Item::Mod(m) => {
                if opted_out(&m.attrs) {
                    return;
                }
                if let Some((_, inner)) = &m.content {
                    self.items(inner);
                }
            }
            Item::Trait(t) if self.options.all_functions && !opted_out(&t.attrs) => {
                for ti in &t.items {
                    if let syn::TraitItem::Fn(f) = ti {
                        let Some(body) = &f.default else { continue };
                        if opted_out(&f.attrs)
                            || !self.reaches_heap(
                                Some(t.ident.to_string()),
                                (&f.attrs, &f.sig, body),
                                ti.span(),
                            )
                        {
                            continue;
                        }
                        {
                            self.note(
                                ti.span(),
                                &f.sig.ident,
                                "default methods of traits are left alone; the impl blocks \
                                 that override them are rewritten"
                                    .into(),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn impl_block(&mut self, item: &Item, imp: &syn::ItemImpl) {
        match self.mark(&imp.attrs) {
            Err(()) | Ok(Some((_, Marker::NotTransactional))) => return,
            Ok(Some((i, how))) => {
                // `#[in_transactions]` on a block is the transformation's error to report.
                let mut imp2 = imp.clone();
                let a = imp2.attrs.remove(i);
                let name = format!("impl {}", imp.self_ty.to_token_stream());
                self.explicit(
                    how,
                    item.span(),
                    &name,
                    None,
                    attr_args(&a),
                    imp2.into_token_stream(),
                );
                return;
            }
            Ok(None) => {}
        }
        let methods: Vec<&syn::ImplItemFn> = imp
            .items
            .iter()
            .filter_map(|it| match it {
                ImplItem::Fn(m) => Some(m),
                _ => None,
            })
            .collect();
        // Methods marked one by one.
        let mut marked = false;
        let mut opted_out_methods = false;
        for m in &methods {
            match self.mark(&m.attrs) {
                Err(()) => marked = true,
                Ok(Some((_, Marker::NotTransactional))) => opted_out_methods = true,
                Ok(Some((i, how))) => {
                    marked = true;
                    let mut m2 = (*m).clone();
                    let a = m2.attrs.remove(i);
                    self.explicit(
                        how,
                        m.span(),
                        &m.sig.ident,
                        Some(&m.block),
                        attr_args(&a),
                        m2.into_token_stream(),
                    );
                }
                Ok(None) => {}
            }
        }
        if !self.options.all_functions || marked {
            return;
        }
        let ty = heap::type_name(&imp.self_ty);
        let has_handle_methods = methods.iter().any(|m| {
            matches!(m.sig.inputs.first(), Some(syn::FnArg::Receiver(r))
                if matches!(r.kind, syn::ReceiverKind::Typed(..)))
        });
        let todo: Vec<Method<'_>> = methods
            .iter()
            .filter(|m| !rules::is_generated(m.block.to_token_stream()) && !opted_out(&m.attrs))
            .map(|m| {
                let summary = heap::summarize_fn(
                    ty.clone(),
                    &m.attrs,
                    &m.sig,
                    m.block.to_token_stream(),
                    false,
                );
                Method {
                    f: m,
                    heap: self.options.include_pure
                        || has_handle_methods
                        || self.tree.heap.reaches_heap(&summary),
                }
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let name = format!("impl {}", imp.self_ty.to_token_stream());
        let whole = todo.len() == methods.len()
            && todo.iter().all(|m| {
                m.heap && plan(&m.f.sig, &m.f.block, true) == Plan::Rewrite(Marker::Transactional)
            });
        let at = position(item.span());
        if let Some(reason) = self.keep.get(&at).cloned() {
            // The whole block did not build: method by method, or not at all.
            if has_handle_methods {
                self.note_kind(item.span(), &name, reason, NoteKind::Build);
            } else {
                self.methods_one_by_one(ty, &todo);
            }
            return;
        }
        if whole || (has_handle_methods && todo.len() == methods.len()) {
            // The whole block, as `#[transactional] impl` would (handle methods included; a
            // method with a loop then runs as one transaction too).
            let tokens = imp.to_token_stream();
            match self.expand(Marker::Transactional, tokens, TokenStream::new()) {
                Expanded::Items(file, stats) => {
                    self.out.stats += stats;
                    self.record = Some(Record {
                        at,
                        function: name,
                        implicit: true,
                    });
                    self.replace(item.span(), prettyplease::unparse(&file));
                }
                Expanded::Errors(errs) => {
                    // Fall back to method by method, each on its own.
                    if !has_handle_methods {
                        self.methods_one_by_one(ty, &todo);
                    } else {
                        let reason = errs
                            .first()
                            .map(|d| format!("{}: {}", d.at, d.message))
                            .unwrap_or_default();
                        self.note(item.span(), &name, reason);
                    }
                }
            }
            return;
        }
        if has_handle_methods {
            let why = if opted_out_methods {
                "the block has `self: Gc<Self>` methods, which are rewritten with their whole \
                 block, and a #[not_transactional] method"
            } else {
                "the block has `self: Gc<Self>` methods, which are rewritten with their whole \
                 block, and methods that cannot be transactional"
            };
            self.note(item.span(), &name, why.into());
            return;
        }
        let outer_tx = imp.generics.lifetimes().any(|l| l.lifetime.ident == "tx");
        if outer_tx {
            for m in todo.iter().filter(|m| m.heap) {
                self.note(
                    m.f.span(),
                    &m.f.sig.ident,
                    "the impl block declares `'tx` and has methods that cannot be \
                     transactional: mark the block `#[transactional]` or the methods one by one"
                        .into(),
                );
            }
            return;
        }
        self.methods_one_by_one(ty, &todo);
    }

    fn methods_one_by_one(&mut self, ty: Option<String>, todo: &[Method<'_>]) {
        for m in todo {
            let f = m.f;
            if !m.heap {
                let summary = heap::summarize_fn(
                    ty.clone(),
                    &f.attrs,
                    &f.sig,
                    f.block.to_token_stream(),
                    false,
                );
                if !self.tree.heap.reaches_heap(&summary) {
                    self.note_kind(f.span(), &f.sig.ident, PURE_NOTE.into(), NoteKind::Pure);
                    continue;
                }
            }
            match plan(&f.sig, &f.block, true) {
                Plan::Skip(reason) => self.note(f.span(), &f.sig.ident, reason),
                Plan::Rewrite(how) => self.implicit(
                    how,
                    f.span(),
                    Some(&f.block),
                    &f.sig.ident,
                    f.to_token_stream(),
                ),
            }
        }
    }

    /// An item the user marked: errors are errors.
    fn explicit(
        &mut self,
        how: Marker,
        span: Span,
        name: &dyn std::fmt::Display,
        body: Option<&syn::Block>,
        args: TokenStream,
        tokens: TokenStream,
    ) {
        match self.expand(how, tokens, args) {
            Expanded::Items(file, stats) => {
                self.out.stats += stats;
                self.record = Some(Record {
                    at: position(span),
                    function: name.to_string(),
                    implicit: false,
                });
                self.splice(span, body, &file);
            }
            Expanded::Errors(errs) => self.out.errors.extend(errs),
        }
    }

    /// A function `--all-functions` tries (see [`plan`]): errors become a note and the
    /// function stays; so does an `#[in_transactions]` expansion that gave no loop a break
    /// point, and a function of `keep`.
    fn implicit(
        &mut self,
        how: Marker,
        span: Span,
        body: Option<&syn::Block>,
        name: &syn::Ident,
        tokens: TokenStream,
    ) {
        let at = position(span);
        if let Some(reason) = self.keep.get(&at) {
            self.note_kind(span, name, reason.clone(), NoteKind::Build);
            return;
        }
        match self.expand(how, tokens, TokenStream::new()) {
            Expanded::Items(_, stats)
                if how == Marker::InTransactions && stats.break_loops == 0 =>
            {
                self.note(
                    span,
                    name,
                    "its loops block, spawn threads or run transaction queues, so none can run \
                     in a transaction: it runs outside transactions as written"
                        .into(),
                );
            }
            Expanded::Items(file, stats) => {
                self.out.stats += stats;
                self.record = Some(Record {
                    at,
                    function: name.to_string(),
                    implicit: true,
                });
                self.splice(span, body, &file);
            }
            Expanded::Errors(errs) => {
                let reason = errs
                    .first()
                    .map(|d| format!("{}: {}", d.at, d.message))
                    .unwrap_or_else(|| "the transformation rejected it".into());
                self.note(span, name, reason);
            }
        }
    }

    fn note(&mut self, span: Span, name: &dyn std::fmt::Display, reason: String) {
        self.note_kind(span, name, reason, NoteKind::Skipped);
    }

    fn note_kind(
        &mut self,
        span: Span,
        name: &dyn std::fmt::Display,
        reason: String,
        kind: NoteKind,
    ) {
        self.out.notes.push(Note {
            at: position(span),
            function: name.to_string(),
            reason,
            kind,
        });
    }

    fn expand(&mut self, how: Marker, tokens: TokenStream, args: TokenStream) -> Expanded {
        let fallback = tokens
            .clone()
            .into_iter()
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let knowledge = &self.tree.knowledge;
        let e = match how {
            Marker::InTransactions => {
                stm_transform::expand_in_transactions_with(knowledge, args, tokens)
            }
            _ => stm_transform::expand_transactional_with(knowledge, args, tokens),
        };
        if e.has_errors {
            let mut errs: Vec<Diagnostic> = e
                .diagnostics
                .iter()
                .map(|d| from_transform(d, fallback))
                .collect();
            if errs.is_empty() {
                errs.push(Diagnostic::new(
                    DiagnosticKind::Transform,
                    position(fallback),
                    "the transformation reported an error".into(),
                ));
            }
            return Expanded::Errors(errs);
        }
        match syn::parse2::<syn::File>(e.tokens.clone()) {
            Ok(file) => Expanded::Items(file, e.stats),
            Err(err) => Expanded::Errors(vec![Diagnostic::new(
                DiagnosticKind::Internal,
                position(fallback),
                format!("internal error: the expansion does not parse ({err}); please report it"),
            )]),
        }
    }

    /// Replaces a rewritten function: statement by statement when that reproduces the
    /// expansion exactly (so the comments and formatting of unchanged statements, and the
    /// comments between statements, are kept), otherwise the whole item.
    fn splice(&mut self, span: Span, body: Option<&syn::Block>, file: &syn::File) {
        if let Some(body) = body {
            if let Some(text) = self.statement_splice(span, body, file) {
                let record = self.record.take();
                self.edits.push(Edit {
                    range: span.byte_range(),
                    text,
                    record,
                });
                return;
            }
        }
        self.replace(span, prettyplease::unparse(file));
    }

    /// The rewritten function as the original text of its unchanged statements (and of the
    /// gaps between statements) plus the printed new header, prelude and changed statements;
    /// `None` if the result would not be token for token the expansion.
    fn statement_splice(&self, span: Span, orig: &syn::Block, file: &syn::File) -> Option<String> {
        let [Item::Fn(out)] = file.items.as_slice() else {
            return None;
        };
        let open = orig.brace_token.span.open().byte_range().start;
        let close = orig.brace_token.span.close().byte_range().start;
        let inner = self.text.get(open + 1..close)?;
        if !inner.starts_with('\n') && !inner.starts_with("\r\n") {
            return None;
        }
        let item_indent = indentation(self.text, span.byte_range().start);
        let stmt_indent = match orig.stmts.first() {
            Some(st) => indentation(self.text, st.span().byte_range().start),
            None => format!("{item_indent}    "),
        };
        // The body with changed statements reprinted.
        let n = orig.stmts.len();
        let (prelude, new_stmts, closure) = split_body(out, n)?;
        let mut body = String::new();
        self.splice_inner(open, close, &orig.stmts, new_stmts, &mut body)?;
        // The header: attributes and signature, printed.
        let mut head_fn = out.clone();
        head_fn.block.stmts.clear();
        let head = unparse_item(Item::Fn(head_fn));
        let head = head.trim_end().strip_suffix("{}")?;
        let head = indent_lines(head, &item_indent);
        let prelude = indent_lines(
            &print_stmts_at(prelude, depth_of(&stmt_indent))?,
            &stmt_indent,
        );
        let text = match closure {
            None => format!("{head}{{\n{stmt_indent}{prelude}{body}}}"),
            Some(call_head) => {
                if has_multiline_literal(&body) {
                    return None;
                }
                let deeper = format!("{stmt_indent}    ");
                let prelude = indent_lines(
                    &print_stmts_at(split_body(out, n)?.0, depth_of(&deeper))?,
                    &deeper,
                );
                let body = add_indent(body.trim_end(), "    ");
                format!(
                    "{head}{{\n{stmt_indent}{call_head}{{\n{deeper}{prelude}{body}\n{stmt_indent}}})\n{item_indent}}}"
                )
            }
        };
        // The safety net: exactly the expansion, or the whole item is printed.
        // (Compared as printed: the printer adds optional trailing commas.)
        let check: syn::ItemFn = syn::parse_str(&text).ok()?;
        (unparse_item(Item::Fn(check)) == unparse_item(Item::Fn(out.clone()))).then_some(text)
    }

    /// Writes the text between the braces at `open` and `close`: the original text, with the
    /// statements that changed replaced.
    fn splice_inner(
        &self,
        open: usize,
        close: usize,
        old: &[syn::Stmt],
        new: &[syn::Stmt],
        out: &mut String,
    ) -> Option<()> {
        if old.len() != new.len() {
            return None;
        }
        let mut at = open + 1;
        for (o, n) in old.iter().zip(new) {
            if same_tokens(o, n) {
                continue;
            }
            let r = o.span().byte_range();
            out.push_str(self.text.get(at..r.start)?);
            self.splice_stmt(o, n, out)?;
            at = r.end;
        }
        out.push_str(self.text.get(at..close)?);
        Some(())
    }

    /// Writes a changed statement: a loop, block or `if` whose header did not change keeps
    /// its text and gets its body spliced; anything else is printed.
    fn splice_stmt(&self, o: &syn::Stmt, n: &syn::Stmt, out: &mut String) -> Option<()> {
        let r = o.span().byte_range();
        if let Some((ob, nb)) = same_header_blocks(o, n) {
            let open = ob.brace_token.span.open().byte_range().start;
            let close = ob.brace_token.span.close().byte_range().start;
            let mut inner = String::new();
            if open >= r.start
                && close < r.end
                && self
                    .splice_inner(open, close, &ob.stmts, &nb.stmts, &mut inner)
                    .is_some()
            {
                out.push_str(self.text.get(r.start..=open)?);
                out.push_str(&inner);
                out.push_str(self.text.get(close..r.end)?);
                return Some(());
            }
        }
        let ind = indentation(self.text, r.start);
        let printed = print_stmts_at(std::slice::from_ref(n), depth_of(&ind))?;
        out.push_str(&indent_lines(&printed, &ind));
        Some(())
    }

    /// Replaces the text of `span` with `printed`, indented like the original item.
    fn replace(&mut self, span: Span, printed: String) {
        let range = span.byte_range();
        let line_start = self.text[..range.start].rfind('\n').map_or(0, |i| i + 1);
        let indent = &self.text[line_start..range.start];
        let indent = if indent.chars().all(|c| c == ' ' || c == '\t') {
            indent
        } else {
            ""
        };
        let body = printed.trim_end_matches('\n');
        let text = if indent.is_empty() || has_multiline_literal(body) {
            body.to_string()
        } else {
            let mut s = String::with_capacity(body.len() + 64);
            for (i, line) in body.lines().enumerate() {
                if i > 0 {
                    s.push('\n');
                    if !line.is_empty() {
                        s.push_str(indent);
                    }
                }
                s.push_str(line);
            }
            s
        };
        let record = self.record.take();
        self.edits.push(Edit {
            range,
            text,
            record,
        });
    }
}

/// Whether printed code holds a literal spanning lines (re-indenting would change it).
fn has_multiline_literal(code: &str) -> bool {
    let Ok(ts) = code.parse::<TokenStream>() else {
        return true;
    };
    fn walk(ts: TokenStream) -> bool {
        ts.into_iter().any(|tt| match tt {
            TokenTree::Literal(l) => l.to_string().contains('\n'),
            TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(ts)
}

/// The whitespace before `at` on its line (empty if there is something else).
fn indentation(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..at];
    if prefix.chars().all(|c| c == ' ' || c == '\t') {
        prefix.to_string()
    } else {
        String::new()
    }
}

/// Indents every line but the first by `indent` (empty lines stay empty).
fn indent_lines(text: &str, indent: &str) -> String {
    let mut s = String::with_capacity(text.len() + 64);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            s.push('\n');
            if !line.is_empty() {
                s.push_str(indent);
            }
        }
        s.push_str(line);
    }
    s
}

/// Indents every line after the first newline by `indent` more (the text starts with one).
fn add_indent(text: &str, indent: &str) -> String {
    let mut s = String::with_capacity(text.len() + 256);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            s.push('\n');
            if !line.trim().is_empty() {
                s.push_str(indent);
            }
        }
        s.push_str(line);
    }
    s
}

/// Prints statements as they would stand in a block, without the block's indentation.
fn print_stmts(stmts: &[syn::Stmt]) -> Option<String> {
    print_stmts_at(stmts, 1)
}

/// Prints statements as they would stand `depth` blocks deep (so that lines are wrapped at
/// the printer's width there), without that indentation.
fn print_stmts_at(stmts: &[syn::Stmt], depth: usize) -> Option<String> {
    let depth = depth.clamp(1, 16);
    let mut inner = quote::quote!(#(#stmts)*);
    for _ in 1..depth {
        inner = quote::quote!({ #inner });
    }
    let f: syn::ItemFn = syn::parse2(quote::quote!(fn __stm_print() { #inner })).ok()?;
    let printed = unparse_item(Item::Fn(f));
    let lines: Vec<&str> = printed.trim_end().lines().collect();
    if lines.len() < 2 * depth {
        return None;
    }
    let prefix = " ".repeat(4 * depth);
    let body: Vec<&str> = lines[depth..lines.len() - depth]
        .iter()
        .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l))
        .collect();
    Some(body.join("\n").trim_end().to_string())
}

/// How many blocks deep an indentation is (4 columns a level, a tab counting 4).
fn depth_of(indent: &str) -> usize {
    let width: usize = indent.chars().map(|c| if c == '\t' { 4 } else { 1 }).sum();
    (width / 4).max(1)
}

/// The generated prelude and the rewritten statements of a rewritten function body (`n`
/// statements), and for a body run in `atomically`, the text that opens the closure.
/// The prelude is the `use` of the runtime's private module, followed by the binding of the
/// transaction (`__stm_tx`) in a function that runs in its caller's transaction, alone in an
/// `#[in_transactions]` function.
fn split_body(out: &syn::ItemFn, n: usize) -> Option<(&[syn::Stmt], &[syn::Stmt], Option<String>)> {
    let stmts = &out.block.stmts;
    if stmts.len() == n + 2 {
        return Some((&stmts[..2], &stmts[2..], None));
    }
    if stmts.len() == n + 1 && matches!(stmts.first(), Some(syn::Stmt::Item(Item::Use(_)))) {
        return Some((&stmts[..1], &stmts[1..], None));
    }
    let [syn::Stmt::Expr(syn::Expr::Call(call), None)] = stmts.as_slice() else {
        return None;
    };
    let Some(syn::Expr::Closure(c)) = call.args.first() else {
        return None;
    };
    let syn::Expr::Block(b) = &*c.body else {
        return None;
    };
    if call.args.len() != 1 || b.block.stmts.len() != n + 1 {
        return None;
    }
    // `path(|inputs| -> R {`, printed from an empty closure.
    let mut empty = call.clone();
    if let Some(syn::Expr::Closure(c)) = empty.args.first_mut() {
        if let syn::Expr::Block(b) = &mut *c.body {
            b.block.stmts.clear();
        }
    }
    let stmt = syn::Stmt::Expr(syn::Expr::Call(empty), None);
    let printed = print_stmts(std::slice::from_ref(&stmt))?;
    let head = printed.strip_suffix("{})")?;
    if head.contains('\n') {
        return None;
    }
    Some((
        &b.block.stmts[..1],
        &b.block.stmts[1..],
        Some(head.to_string()),
    ))
}

/// Prints one item.
fn unparse_item(item: Item) -> String {
    let mut file: syn::File = syn::parse_quote!();
    file.items.push(item);
    prettyplease::unparse(&file)
}

fn same_tokens<T: ToTokens>(a: &T, b: &T) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

/// For two versions of a statement that differ only inside one block (a loop body, a block,
/// the `then` branch of an `if`): the two blocks.
fn same_header_blocks<'a>(
    o: &'a syn::Stmt,
    n: &'a syn::Stmt,
) -> Option<(&'a syn::Block, &'a syn::Block)> {
    use syn::Expr;
    let (syn::Stmt::Expr(a, sa), syn::Stmt::Expr(b, sb)) = (o, n) else {
        return None;
    };
    if sa.is_some() != sb.is_some() {
        return None;
    }
    match (a, b) {
        (Expr::While(x), Expr::While(y))
            if same_tokens(&x.cond, &y.cond)
                && same_tokens(&x.label, &y.label)
                && x.attrs.len() == y.attrs.len() =>
        {
            Some((&x.body, &y.body))
        }
        (Expr::Loop(x), Expr::Loop(y))
            if same_tokens(&x.label, &y.label) && x.attrs.len() == y.attrs.len() =>
        {
            Some((&x.body, &y.body))
        }
        (Expr::ForLoop(x), Expr::ForLoop(y))
            if same_tokens(&x.pat, &y.pat)
                && same_tokens(&x.expr, &y.expr)
                && same_tokens(&x.label, &y.label)
                && x.attrs.len() == y.attrs.len() =>
        {
            Some((&x.body, &y.body))
        }
        (Expr::Block(x), Expr::Block(y))
            if same_tokens(&x.label, &y.label) && x.attrs.len() == y.attrs.len() =>
        {
            Some((&x.block, &y.block))
        }
        (Expr::Unsafe(x), Expr::Unsafe(y)) if x.attrs.len() == y.attrs.len() => {
            Some((&x.block, &y.block))
        }
        (Expr::If(x), Expr::If(y))
            if same_tokens(&x.cond, &y.cond)
                && x.attrs.len() == y.attrs.len()
                && x.else_branch
                    .as_ref()
                    .map(|e| e.1.to_token_stream().to_string())
                    == y.else_branch
                        .as_ref()
                        .map(|e| e.1.to_token_stream().to_string()) =>
        {
            Some((&x.then_branch, &y.then_branch))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(src: &str) -> FileRewrite {
        rewrite_source(src, &Knowledge::default(), RewriteOptions::default()).expect("parses")
    }

    #[test]
    fn bom_and_shebang_are_kept_and_offsets_stay_right() {
        let src =
            "\u{feff}#!/usr/bin/env x\n// é\n#[transactional]\nfn f(a: Gc<A>) -> u8 { a.ü }\n";
        let out = rewrite(src).output;
        assert!(
            out.starts_with("\u{feff}#!/usr/bin/env x\n// é\n#[allow("),
            "{out}"
        );
        assert!(out.contains("__stm::read(a, __stm::field!(a, ü))"), "{out}");
        let (bom, text) = parse_text("#![allow(x)]\nfn f() {}");
        assert_eq!((bom, text.as_ref()), (0, "#![allow(x)]\nfn f() {}"));
    }

    #[test]
    fn nested_items_keep_their_indentation_unless_a_literal_spans_lines() {
        let out = rewrite(
            "mod m {\n    #[transactional]\n    fn f(a: Gc<A>) {\n        a.x = 1;\n    }\n}\n",
        )
        .output;
        assert!(
            out.contains("\n    fn f<'tx>(a: Gc<'tx, A>) {\n        #[allow(unused_imports)]"),
            "{out}"
        );
        let out = rewrite("mod m {\n    #[transactional]\n    fn f(a: Gc<A>) {\n        a.s = \"x\ny\";\n    }\n}\n").output;
        assert!(out.contains("\"x\ny\""), "the literal is unchanged: {out}");
        assert!(has_multiline_literal("fn f() { let s = \"a\nb\"; }"));
        assert!(!has_multiline_literal("fn f() { let s = \"a\\nb\"; }"));
    }

    #[test]
    fn comments_and_formatting_of_unchanged_statements_are_kept() {
        let src = "#[transactional]\nfn f(a: Gc<A>) -> i64 {\n    // one\n    let x   =   1;  // two\n    \
                   a.x = x;\n    while x > 0 {\n        // three\n        a.y += 1;\n    }\n    a.x\n}\n";
        let out = rewrite(src).output;
        for kept in [
            "    // one\n    let x   =   1;  // two\n",
            "    while x > 0 {\n        // three\n",
        ] {
            assert!(out.contains(kept), "{kept:?} in {out}");
        }
        assert!(
            out.contains("__stm::write(a, __stm::field!(a, x), x);"),
            "{out}"
        );
        let no_handle = "#[transactional]\nfn g(n: i64) -> i64 {\n    // in g\n    n  *  2\n}\n";
        let out = rewrite(no_handle).output;
        assert!(
            out.contains("-> i64 {\n        #[allow(unused_imports)]"),
            "{out}"
        );
        assert!(
            out.contains("\n        // in g\n        n  *  2\n    })\n}\n"),
            "{out}"
        );
        assert_eq!(rewrite(&out).output, out, "idempotent");
    }

    #[test]
    fn windows_line_endings_stay() {
        let out =
            rewrite("// x\r\n#[transactional]\r\nfn f(a: Gc<A>) {\r\n    a.x = 1;\r\n}\r\n").output;
        assert!(out.starts_with("// x\r\n#[allow("), "{out:?}");
        assert_eq!(
            out.matches('\n').count(),
            out.matches("\r\n").count(),
            "{out:?}"
        );
    }

    #[test]
    fn transformation_errors_carry_their_position() {
        let r = rewrite("\n\n#[transactional]\nasync fn f() {}\n");
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].at, Position { line: 4, column: 1 });
        assert!(r.errors[0].message.contains("async fn"), "{:?}", r.errors);
        assert_eq!(
            r.output, "\n\n#[transactional]\nasync fn f() {}\n",
            "left as it was"
        );
    }

    #[test]
    fn the_all_functions_rules() {
        let plan_of = |src: &str| {
            let f: syn::ItemFn = syn::parse_str(src).expect("a fn");
            plan(&f.sig, &f.block, false)
        };
        let in_tx = Plan::Rewrite(Marker::InTransactions);
        let tx = Plan::Rewrite(Marker::Transactional);
        assert_eq!(plan_of("fn f(n: u64) { for _ in 0..n {} }"), in_tx);
        assert_eq!(plan_of("fn f(r: &Root<A>) -> u8 { loop {} }"), in_tx);
        assert_eq!(plan_of("fn main() { while x {} }"), in_tx);
        assert_eq!(plan_of("fn main() {}"), Plan::Skip(MAIN_NOTE.into()));
        assert_eq!(plan_of("fn f(a: Gc<A>) { loop {} }"), tx);
        assert_eq!(plan_of("fn f(a: Option<Gc<A>>) { loop {} }"), tx);
        assert_eq!(plan_of("fn f(t: &stm::Tx) { loop {} }"), tx);
        assert_eq!(plan_of("fn f() -> Gc<A> { loop {} }"), tx);
        assert_eq!(plan_of("fn f() { let c = || loop {}; }"), tx);
        assert_eq!(plan_of("fn f() { fn g() { loop {} } }"), tx);
        assert_eq!(plan_of("fn f() {}"), tx);
        assert!(matches!(plan_of("const fn f() { loop {} }"), Plan::Skip(_)));
    }

    #[test]
    fn parse_errors_carry_the_parser_position() {
        let e = rewrite_source(
            "fn a() {}\nfn b( {\n",
            &Knowledge::default(),
            RewriteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.at.line, 2, "{e:?}");
    }
}
