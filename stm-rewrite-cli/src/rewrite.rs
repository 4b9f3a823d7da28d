//! Rewriting one source text: find the items to change, expand them with `stm-transform`,
//! and splice the printed expansions into the original text.
//!
//! Only the byte ranges of changed items are replaced (their span in the original text, as
//! `proc-macro2`'s `span-locations` reports it); everything else — comments, blank lines,
//! formatting, untouched items — is kept byte for byte. A rewritten item no longer carries
//! `#[transactional]`, and a function whose body already holds the generated transaction
//! binding (`__stm_tx`) is never rewritten again, so rewriting is idempotent.

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
    /// Rewrite every function of the tree, not only those marked `#[transactional]`.
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

fn is_transactional_attr(a: &syn::Attribute) -> bool {
    a.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "transactional")
}

fn attr_args(a: &syn::Attribute) -> TokenStream {
    match &a.meta {
        syn::Meta::List(l) => l.tokens.clone(),
        _ => TokenStream::new(),
    }
}

/// Whether a token stream holds the generated transaction binding: the function was written
/// by the transformation already.
fn is_rewritten(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "__stm_tx",
        TokenTree::Group(g) => is_rewritten(g.stream()),
        _ => false,
    })
}

/// Why a signature cannot be made transactional by `--all-functions` (checked before
/// expanding, for a short note instead of the transformation's error).
fn ineligible(sig: &syn::Signature, is_method: bool) -> Option<String> {
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
    if !is_method && sig.ident == "main" && sig.inputs.is_empty() {
        return Some(
            "`main` sets up the runtime and starts the threads; it runs outside transactions"
                .into(),
        );
    }
    if let Some(syn::FnArg::Receiver(r)) = sig.inputs.first() {
        if let syn::ReceiverKind::Typed(_, ty) = &r.kind {
            if ty
                .to_token_stream()
                .into_iter()
                .any(|t| matches!(&t, TokenTree::Ident(i) if i == "Gc"))
            {
                return Some(
                    "`self: Gc<Self>` methods are made transactional with their whole impl block"
                        .into(),
                );
            }
        }
    }
    None
}

/// The outcome of expanding one item.
enum Expanded {
    /// The new text.
    Text(String),
    /// The transformation's errors.
    Errors(Vec<Diagnostic>),
}

impl Walker<'_> {
    fn items(&mut self, items: &[Item]) {
        for item in items {
            self.item(item);
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) => {
                if let Some(i) = f.attrs.iter().position(is_transactional_attr) {
                    let mut f2 = f.clone();
                    let a = f2.attrs.remove(i);
                    self.explicit(item.span(), attr_args(&a), f2.into_token_stream());
                } else if self.options.all_functions && !is_rewritten(f.block.to_token_stream()) {
                    match ineligible(&f.sig, false) {
                        Some(reason) => self.note(item.span(), &f.sig.ident, reason),
                        None => self.implicit(item.span(), &f.sig.ident, f.to_token_stream()),
                    }
                }
            }
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
        if let Some(i) = imp.attrs.iter().position(is_transactional_attr) {
            let mut imp2 = imp.clone();
            let a = imp2.attrs.remove(i);
            self.explicit(item.span(), attr_args(&a), imp2.into_token_stream());
            return;
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
            if let Some(i) = m.attrs.iter().position(is_transactional_attr) {
                marked = true;
                let mut m2 = (*m).clone();
                let a = m2.attrs.remove(i);
                self.explicit(m.span(), attr_args(&a), m2.into_token_stream());
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
        let all_eligible = todo.len() == methods.len()
            && methods.iter().all(|m| ineligible(&m.sig, true).is_none());
        let has_handle_methods = methods.iter().any(|m| {
            matches!(m.sig.inputs.first(), Some(syn::FnArg::Receiver(r))
                if matches!(r.kind, syn::ReceiverKind::Typed(..)))
        });
        if all_eligible || (has_handle_methods && todo.len() == methods.len()) {
            // The whole block, as `#[transactional] impl` would (handle methods included).
            let name = format!("impl {}", imp.self_ty.to_token_stream());
            match self.expand(imp.to_token_stream(), TokenStream::new()) {
                Expanded::Text(t) => self.replace(item.span(), t),
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
            match ineligible(&m.sig, true) {
                Some(reason) => self.note(m.span(), &m.sig.ident, reason),
                None => self.implicit(m.span(), &m.sig.ident, m.to_token_stream()),
            }
        }
    }

    /// An item the user marked: errors are errors.
    fn explicit(&mut self, span: Span, args: TokenStream, tokens: TokenStream) {
        match self.expand(tokens, args) {
            Expanded::Text(t) => self.replace(span, t),
            Expanded::Errors(errs) => self.out.errors.extend(errs),
        }
    }

    /// A function `--all-functions` tries: errors become a note and the function stays.
    fn implicit(&mut self, span: Span, name: &syn::Ident, tokens: TokenStream) {
        match self.expand(tokens, TokenStream::new()) {
            Expanded::Text(t) => self.replace(span, t),
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

    fn expand(&mut self, tokens: TokenStream, args: TokenStream) -> Expanded {
        let fallback = tokens
            .clone()
            .into_iter()
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let e = stm_transform::expand_transactional_with(self.knowledge, args, tokens);
        if e.has_errors {
            return Expanded::Errors(compile_errors(e.tokens, fallback));
        }
        match syn::parse2::<syn::File>(e.tokens.clone()) {
            Ok(file) => {
                self.out.stats += e.stats;
                Expanded::Text(prettyplease::unparse(&file))
            }
            Err(err) => Expanded::Errors(vec![Diagnostic {
                at: position(fallback),
                message: format!(
                    "internal error: the expansion does not parse ({err}); please report it"
                ),
            }]),
        }
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
