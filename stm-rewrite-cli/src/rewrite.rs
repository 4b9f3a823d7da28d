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
//! `--all-functions`, `plan` decides which (if any) an unmarked function gets.

use std::borrow::Cow;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use stm_transform::{Knowledge, Stats};
use syn::spanned::Spanned;
use syn::{ImplItem, Item};

/// What to rewrite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Rewrite every function of the tree, not only those marked `#[transactional]` or
    /// `#[in_transactions]` (the rules are in `plan`).
    pub all_functions: bool,
}

/// A position in a source file, 1-based (as editors and compilers print them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
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

/// A message about a place in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub at: Position,
    /// What (the parser's or the transformation's own words).
    pub message: String,
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
}

/// The result of rewriting one file.
#[derive(Clone, Debug, Default)]
pub struct FileRewrite {
    /// The new text (equal to the input when nothing changed).
    pub output: String,
    /// What the transformation did (functions rewritten, barriers, ...).
    pub stats: Stats,
    /// Functions skipped by `--all-functions`.
    pub notes: Vec<Note>,
    /// Items that could not be rewritten (left unchanged, with their attribute, so that the
    /// macro reports the same problem at build time).
    pub errors: Vec<Diagnostic>,
}

impl FileRewrite {
    /// Whether the output differs from the input.
    pub fn changed(&self, input: &str) -> bool {
        self.output != input
    }
}

/// Rewrites one file's text. `Err` if it does not parse (with the parser's position and
/// message), or if the transformation failed internally; never panics.
pub fn rewrite_source(
    source: &str,
    knowledge: &Knowledge,
    options: RewriteOptions,
) -> Result<FileRewrite, Diagnostic> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        rewrite_source_inner(source, knowledge, options)
    }));
    // The spans of this file are no longer needed: free the thread's source map.
    proc_macro2::extra::invalidate_current_thread_spans();
    match result {
        Ok(r) => r,
        Err(payload) => Err(Diagnostic {
            at: Position { line: 1, column: 1 },
            message: format!(
                "internal error in the transformation (please report it): {}",
                panic_message(&payload)
            ),
        }),
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
    let mut local = Knowledge::default();
    let found = catch_unwind(AssertUnwindSafe(|| {
        let (_, text) = parse_text(source);
        local.learn_from_source(&text)
    }))
    .unwrap_or(0);
    proc_macro2::extra::invalidate_current_thread_spans();
    knowledge.merge(local);
    found
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

struct Edit {
    range: Range<usize>,
    text: String,
}

struct Walker<'a> {
    text: &'a str,
    knowledge: &'a Knowledge,
    options: RewriteOptions,
    edits: Vec<Edit>,
    out: FileRewrite,
}

fn rewrite_source_inner(
    source: &str,
    knowledge: &Knowledge,
    options: RewriteOptions,
) -> Result<FileRewrite, Diagnostic> {
    let (bom, text) = parse_text(source);
    let file = syn::parse_file(&text).map_err(|e| Diagnostic {
        at: position(e.span()),
        message: e.to_string(),
    })?;
    let mut w = Walker {
        text: &text,
        knowledge,
        options,
        edits: Vec::new(),
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
    for e in &edits {
        let (start, end) = (e.range.start + bom, e.range.end + bom);
        if start < at || end > source.len() || !source.is_char_boundary(start) {
            // Overlapping or out of range: would corrupt the file. Should not happen.
            return Err(Diagnostic {
                at: Position { line: 1, column: 1 },
                message: "internal error: overlapping edits (please report it)".into(),
            });
        }
        output.push_str(&source[at..start]);
        output.push_str(&e.text);
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

/// Which transformation an item gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// `#[transactional]`: the function runs as one transaction (its own, or its caller's).
    Transactional,
    /// `#[in_transactions]`: the function runs outside transactions, its loops as series of
    /// transactions cut at break points.
    InTransactions,
}

impl How {
    /// The attribute's last path segment.
    fn name(self) -> &'static str {
        match self {
            How::Transactional => "transactional",
            How::InTransactions => "in_transactions",
        }
    }
}

/// Which of the two attributes `a` is (any path ending in `transactional` or
/// `in_transactions`).
fn marking(a: &syn::Attribute) -> Option<How> {
    let last = a.path().segments.last()?;
    [How::Transactional, How::InTransactions]
        .into_iter()
        .find(|h| last.ident == h.name())
}

/// The attribute that marks an item for rewriting (`#[transactional]` or
/// `#[in_transactions]`): its index among `attrs` and which it is. An item with both is an
/// error (which of the two was meant?), at the second one.
fn marked(attrs: &[syn::Attribute]) -> Result<Option<(usize, How)>, Diagnostic> {
    let mut found = attrs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| marking(a).map(|h| (i, h)));
    let first = found.next();
    if let (Some((_, h)), Some((j, _))) = (first, found.next()) {
        return Err(Diagnostic {
            at: position(attrs[j].span()),
            message: format!(
                "an item marked #[{}] cannot be marked again: #[transactional] runs it as one \
                 transaction, #[in_transactions] runs its loops as series of transactions; \
                 keep one",
                h.name()
            ),
        });
    }
    Ok(first)
}

fn attr_args(a: &syn::Attribute) -> TokenStream {
    match &a.meta {
        syn::Meta::List(l) => l.tokens.clone(),
        _ => TokenStream::new(),
    }
}

/// Whether a token stream holds the generated transaction binding (`__stm_tx`) or the
/// generated prelude's `__stm`: the function was written by the transformation already (an
/// `#[in_transactions]` function whose loops all stayed ordinary has the prelude only).
fn is_rewritten(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "__stm_tx" || i == "__stm",
        TokenTree::Group(g) => is_rewritten(g.stream()),
        _ => false,
    })
}

/// Whether a type mentions `Gc` anywhere (a handle, or something holding one).
fn mentions_gc(ty: &syn::Type) -> bool {
    fn walk(ts: TokenStream) -> bool {
        ts.into_iter().any(|tt| match tt {
            TokenTree::Ident(i) => i == "Gc",
            TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
}

/// Whether a type is `&Tx` (any path ending in `Tx`, any lifetime).
fn is_tx_ref(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Tx"),
            _ => false,
        },
        syn::Type::Paren(p) => is_tx_ref(&p.elem),
        _ => false,
    }
}

/// Whether a function would start its own transaction (or join the running one): it takes no
/// handle and no `&Tx`, and returns no handle. Such a function may run in transactions
/// rather than as one.
fn starts_own_transaction(sig: &syn::Signature) -> bool {
    let takes = sig.inputs.iter().any(|input| match input {
        syn::FnArg::Typed(pt) => mentions_gc(&pt.ty) || is_tx_ref(&pt.ty),
        syn::FnArg::Receiver(r) => match &r.kind {
            syn::ReceiverKind::Typed(_, ty) => mentions_gc(ty),
            _ => false,
        },
    });
    let returns = matches!(&sig.output, syn::ReturnType::Type(_, ty) if mentions_gc(ty));
    !takes && !returns
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

/// Why a signature cannot be rewritten at all by `--all-functions` (checked before
/// expanding, for a short note instead of the transformation's error).
fn unsupported(sig: &syn::Signature) -> Option<String> {
    if sig.constness.is_some() {
        return Some("a `const fn` may run at compile time, where there is no shared heap".into());
    }
    if sig.asyncness.is_some() {
        return Some("an `async fn` cannot be suspended inside a transaction".into());
    }
    if sig.abi.is_some() {
        return Some("an `extern` fn is called by foreign code that cannot roll back".into());
    }
    if sig.variadic.is_some() {
        return Some("a variadic fn cannot be transactional".into());
    }
    if let Some(syn::FnArg::Receiver(r)) = sig.inputs.first() {
        if let syn::ReceiverKind::Typed(_, ty) = &r.kind {
            if mentions_gc(ty) {
                return Some(
                    "`self: Gc<Self>` methods are made transactional with their whole impl block"
                        .into(),
                );
            }
        }
    }
    None
}

/// What `--all-functions` does with a function that carries no attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Plan {
    /// Rewrite it as if it were marked so.
    Rewrite(How),
    /// Leave it alone, with this note.
    Skip(String),
}

/// The note for `main` without a loop.
const MAIN_NOTE: &str =
    "`main` sets up the runtime and starts the threads; it runs outside transactions";

/// The rules of `--all-functions` (PyPy style: all code runs in transactions), for a function
/// or method without `#[transactional]` / `#[in_transactions]`:
///
/// 1. `const`, `async`, `extern` and variadic functions are left alone with a note (none can
///    run in a transaction); so are `self: Gc<Self>` methods on their own (they go with their
///    whole impl block, see `impl_block`).
/// 2. A function that would start its own transaction (it takes no handle and no `&Tx` and
///    returns no handle, [`starts_own_transaction`]) and has a loop outside closures
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
    if let Some(reason) = unsupported(sig) {
        return Plan::Skip(reason);
    }
    let is_main = !is_method && sig.ident == "main" && sig.inputs.is_empty();
    if starts_own_transaction(sig) && has_loop(body) {
        return Plan::Rewrite(How::InTransactions);
    }
    if is_main {
        return Plan::Skip(MAIN_NOTE.into());
    }
    Plan::Rewrite(How::Transactional)
}

/// The outcome of expanding one item.
enum Expanded {
    /// The new items, and what the transformation did.
    Items(syn::File, Stats),
    /// The transformation's errors.
    Errors(Vec<Diagnostic>),
}

impl Walker<'_> {
    fn items(&mut self, items: &[Item]) {
        for item in items {
            self.item(item);
        }
    }

    /// The attribute marking an item, or an error recorded (the item is then left alone).
    fn mark(&mut self, attrs: &[syn::Attribute]) -> Result<Option<(usize, How)>, ()> {
        marked(attrs).map_err(|d| self.out.errors.push(d))
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) => match self.mark(&f.attrs) {
                Err(()) => {}
                Ok(Some((i, how))) => {
                    let mut f2 = f.clone();
                    let a = f2.attrs.remove(i);
                    self.explicit(
                        how,
                        item.span(),
                        Some(&f.block),
                        attr_args(&a),
                        f2.into_token_stream(),
                    );
                }
                Ok(None) => {
                    if self.options.all_functions && !is_rewritten(f.block.to_token_stream()) {
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
                if let Some((_, inner)) = &m.content {
                    self.items(inner);
                }
            }
            Item::Trait(t) if self.options.all_functions => {
                for ti in &t.items {
                    if let syn::TraitItem::Fn(f) = ti {
                        if f.default.is_some() {
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
            Err(()) => return,
            Ok(Some((i, how))) => {
                // `#[in_transactions]` on a block is the transformation's error to report.
                let mut imp2 = imp.clone();
                let a = imp2.attrs.remove(i);
                self.explicit(
                    how,
                    item.span(),
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
        for m in &methods {
            match self.mark(&m.attrs) {
                Err(()) => marked = true,
                Ok(Some((i, how))) => {
                    marked = true;
                    let mut m2 = (*m).clone();
                    let a = m2.attrs.remove(i);
                    self.explicit(
                        how,
                        m.span(),
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
        let todo: Vec<&&syn::ImplItemFn> = methods
            .iter()
            .filter(|m| !is_rewritten(m.block.to_token_stream()))
            .collect();
        if todo.is_empty() {
            return;
        }
        let plans: Vec<Plan> = methods
            .iter()
            .map(|m| plan(&m.sig, &m.block, true))
            .collect();
        let all_transactional = todo.len() == methods.len()
            && plans
                .iter()
                .all(|p| *p == Plan::Rewrite(How::Transactional));
        let has_handle_methods = methods.iter().any(|m| {
            matches!(m.sig.inputs.first(), Some(syn::FnArg::Receiver(r))
                if matches!(r.kind, syn::ReceiverKind::Typed(..)))
        });
        if all_transactional || (has_handle_methods && todo.len() == methods.len()) {
            // The whole block, as `#[transactional] impl` would (handle methods included; a
            // method with a loop then runs as one transaction too).
            let name = format!("impl {}", imp.self_ty.to_token_stream());
            let tokens = imp.to_token_stream();
            match self.expand(How::Transactional, tokens, TokenStream::new()) {
                Expanded::Items(file, stats) => {
                    self.out.stats += stats;
                    self.replace(item.span(), prettyplease::unparse(&file));
                }
                Expanded::Errors(errs) => {
                    // Fall back to method by method, each on its own.
                    if !has_handle_methods {
                        self.methods_one_by_one(&todo);
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
        let outer_tx = imp.generics.lifetimes().any(|l| l.lifetime.ident == "tx");
        if outer_tx {
            for m in todo {
                self.note(
                    m.span(),
                    &m.sig.ident,
                    "the impl block declares `'tx` and has methods that cannot be \
                     transactional: mark the block `#[transactional]` or the methods one by one"
                        .into(),
                );
            }
            return;
        }
        self.methods_one_by_one(&todo);
    }

    fn methods_one_by_one(&mut self, todo: &[&&syn::ImplItemFn]) {
        for m in todo {
            match plan(&m.sig, &m.block, true) {
                Plan::Skip(reason) => self.note(m.span(), &m.sig.ident, reason),
                Plan::Rewrite(how) => self.implicit(
                    how,
                    m.span(),
                    Some(&m.block),
                    &m.sig.ident,
                    m.to_token_stream(),
                ),
            }
        }
    }

    /// An item the user marked: errors are errors.
    fn explicit(
        &mut self,
        how: How,
        span: Span,
        body: Option<&syn::Block>,
        args: TokenStream,
        tokens: TokenStream,
    ) {
        match self.expand(how, tokens, args) {
            Expanded::Items(file, stats) => {
                self.out.stats += stats;
                self.splice(span, body, &file);
            }
            Expanded::Errors(errs) => self.out.errors.extend(errs),
        }
    }

    /// A function `--all-functions` tries (see [`plan`]): errors become a note and the
    /// function stays; so does an `#[in_transactions]` expansion that gave no loop a break
    /// point.
    fn implicit(
        &mut self,
        how: How,
        span: Span,
        body: Option<&syn::Block>,
        name: &syn::Ident,
        tokens: TokenStream,
    ) {
        match self.expand(how, tokens, TokenStream::new()) {
            Expanded::Items(_, stats) if how == How::InTransactions && stats.break_loops == 0 => {
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
        self.out.notes.push(Note {
            at: position(span),
            function: name.to_string(),
            reason,
        });
    }

    fn expand(&mut self, how: How, tokens: TokenStream, args: TokenStream) -> Expanded {
        let fallback = tokens
            .clone()
            .into_iter()
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let e = match how {
            How::Transactional => {
                stm_transform::expand_transactional_with(self.knowledge, args, tokens)
            }
            How::InTransactions => {
                stm_transform::expand_in_transactions_with(self.knowledge, args, tokens)
            }
        };
        if e.has_errors {
            return Expanded::Errors(compile_errors(e.tokens, fallback));
        }
        match syn::parse2::<syn::File>(e.tokens.clone()) {
            Ok(file) => Expanded::Items(file, e.stats),
            Err(err) => Expanded::Errors(vec![Diagnostic {
                at: position(fallback),
                message: format!(
                    "internal error: the expansion does not parse ({err}); please report it"
                ),
            }]),
        }
    }

    /// Replaces a rewritten function: statement by statement when that reproduces the
    /// expansion exactly (so the comments and formatting of unchanged statements, and the
    /// comments between statements, are kept), otherwise the whole item.
    fn splice(&mut self, span: Span, body: Option<&syn::Block>, file: &syn::File) {
        if let Some(body) = body {
            if let Some(text) = self.statement_splice(span, body, file) {
                self.edits.push(Edit {
                    range: span.byte_range(),
                    text,
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
        self.edits.push(Edit { range, text });
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

/// The `compile_error!`s of an expansion, with their positions.
fn compile_errors(tokens: TokenStream, fallback: Span) -> Vec<Diagnostic> {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::new();
    for (i, tt) in tts.iter().enumerate() {
        let TokenTree::Ident(id) = tt else { continue };
        if id != "compile_error" {
            continue;
        }
        let Some(TokenTree::Group(g)) = tts.get(i + 2) else {
            continue;
        };
        let message = syn::parse2::<syn::LitStr>(g.stream())
            .map(|l| l.value())
            .unwrap_or_else(|_| g.stream().to_string());
        let at = if id.span().start().line == 0 {
            position(fallback)
        } else {
            position(id.span())
        };
        out.push(Diagnostic { at, message });
    }
    if out.is_empty() {
        out.push(Diagnostic {
            at: position(fallback),
            message: "the transformation reported an error".into(),
        });
    }
    out
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
        let in_tx = Plan::Rewrite(How::InTransactions);
        let tx = Plan::Rewrite(How::Transactional);
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
