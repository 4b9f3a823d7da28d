//! Which functions of a tree can reach the shared heap, for `--all-functions`.
//!
//! Making a function transactional only matters for code that can touch the shared heap;
//! for any other, it only adds a transaction (and, for a function that starts its own,
//! forbids what an `Fn + Sync` closure forbids: moving out of a parameter, changing a `&mut`
//! one, a `Cell`). So `--all-functions` rewrites a function only if it
//!
//! * is marked `#[transactional]` / `#[in_transactions]` (or sits in a marked `impl` block),
//! * mentions one of the runtime's heap types ([`stm_transform::rules::HEAP_TYPES`]: `Gc`,
//!   `Root`, `Tx`, ...) or an object type of the tree, or uses `tx!()`,
//! * or calls a function of the tree that does, directly or through other calls.
//!
//! The check is on tokens (so it sees into macro calls too) and by name: a call `f(..)`
//! matches every free function `f` of the tree, `T::f(..)` (and `Self::f(..)` in `impl T`)
//! the associated function `f` of every `T`, `x.f(..)` every method `f`. Two functions of the
//! same name are not told apart: the test errs towards rewriting, never towards leaving
//! alone a function that can reach the heap through the tree's own code.

use std::collections::BTreeSet;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use stm_transform::rules::{self, Marker};
use stm_transform::Knowledge;
use syn::{ImplItem, Item};

/// A call found in a function body.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Call {
    /// `f(..)` or `path::f(..)`.
    Free(String),
    /// `T::f(..)` (with `Self` resolved to the `impl` block's type).
    Assoc(String, String),
    /// `x.f(..)`.
    Method(String),
}

/// What one function mentions and calls.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The function's name as callers write it: `f` for a free function, `T::f` for one of
    /// `impl T`.
    key: Key,
    /// Whether it mentions the heap by itself (a marker, a heap type, `tx!()`), not counting
    /// the tree's object types (known only once every file is read).
    direct: bool,
    /// The capitalised identifiers it mentions (type names: an object type among them makes
    /// it a heap function).
    types: BTreeSet<String>,
    /// Its calls.
    calls: BTreeSet<Call>,
}

/// A function's name: free, or associated with a type (and then a method if it has `self`).
#[derive(Clone, Debug, Default)]
struct Key {
    ty: Option<String>,
    name: String,
    method: bool,
}

/// The heap functions of a tree, by name (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct HeapIndex {
    free: BTreeSet<String>,
    assoc: BTreeSet<(String, String)>,
    methods: BTreeSet<String>,
    /// Object types of the tree.
    objects: BTreeSet<String>,
}

impl HeapIndex {
    /// The index of a tree: `summaries` of all its functions, `knowledge` of its objects. A
    /// fixpoint: a function that calls a heap function is one.
    pub fn build(summaries: &[Summary], knowledge: &Knowledge) -> HeapIndex {
        let mut index = HeapIndex {
            objects: knowledge.objects.keys().cloned().collect(),
            ..HeapIndex::default()
        };
        let mut done = vec![false; summaries.len()];
        loop {
            let mut changed = false;
            for (i, s) in summaries.iter().enumerate() {
                if !done[i] && index.reaches_heap(s) {
                    done[i] = true;
                    changed = true;
                    index.add(&s.key);
                }
            }
            if !changed {
                return index;
            }
        }
    }

    fn add(&mut self, key: &Key) {
        match &key.ty {
            None => {
                self.free.insert(key.name.clone());
            }
            Some(ty) => {
                self.assoc.insert((ty.clone(), key.name.clone()));
                if key.method {
                    self.methods.insert(key.name.clone());
                }
            }
        }
    }

    /// Whether a function can reach the shared heap: it mentions it, or calls a function of
    /// the tree that can.
    pub fn reaches_heap(&self, s: &Summary) -> bool {
        s.direct
            || s.types.iter().any(|t| self.objects.contains(t))
            || s.calls.iter().any(|c| match c {
                Call::Free(n) => self.free.contains(n),
                Call::Assoc(t, n) => self.assoc.contains(&(t.clone(), n.clone())),
                Call::Method(n) => self.methods.contains(n),
            })
    }
}

/// The summaries of every function of a file (free functions, methods and associated
/// functions, at the top level and in inline modules, trait default methods included).
pub fn summarize_file(file: &syn::File) -> Vec<Summary> {
    let mut out = Vec::new();
    summarize_items(&file.items, &mut out);
    out
}

fn summarize_items(items: &[Item], out: &mut Vec<Summary>) {
    for item in items {
        match item {
            Item::Fn(f) => out.push(summarize_fn(
                None,
                &f.attrs,
                &f.sig,
                f.block.to_token_stream(),
                false,
            )),
            Item::Impl(imp) => {
                let ty = type_name(&imp.self_ty);
                let marked = marks_heap(&imp.attrs);
                for it in &imp.items {
                    if let ImplItem::Fn(m) = it {
                        out.push(summarize_fn(
                            ty.clone(),
                            &m.attrs,
                            &m.sig,
                            m.block.to_token_stream(),
                            marked,
                        ));
                    }
                }
            }
            Item::Trait(t) => {
                for it in &t.items {
                    if let syn::TraitItem::Fn(f) = it {
                        let body = f.default.to_token_stream();
                        out.push(summarize_fn(
                            Some(t.ident.to_string()),
                            &f.attrs,
                            &f.sig,
                            body,
                            false,
                        ));
                    }
                }
            }
            Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    summarize_items(inner, out);
                }
            }
            _ => {}
        }
    }
}

/// Whether attributes make an item a heap item (`#[transactional]`, `#[in_transactions]`).
fn marks_heap(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        matches!(
            rules::marker(a),
            Some(Marker::Transactional | Marker::InTransactions)
        )
    })
}

/// The name callers use for an `impl` block's type (its last path segment).
pub fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Group(g) => type_name(&g.elem),
        syn::Type::Paren(p) => type_name(&p.elem),
        _ => None,
    }
}

/// The summary of one function; `ty` is the `impl` block's (or trait's) type, `marked` says
/// that the block is marked.
pub fn summarize_fn(
    ty: Option<String>,
    attrs: &[syn::Attribute],
    sig: &syn::Signature,
    body: TokenStream,
    marked: bool,
) -> Summary {
    let mut s = Summary {
        key: Key {
            ty: ty.clone(),
            name: sig.ident.to_string(),
            method: sig.receiver().is_some(),
        },
        direct: marked || marks_heap(attrs),
        ..Summary::default()
    };
    let mut tokens = sig.to_token_stream();
    tokens.extend(body);
    scan(tokens, ty.as_deref(), &mut s);
    s
}

/// Keywords that a parenthesised group may follow without being a call.
const NOT_CALLS: &[&str] = &[
    "if", "while", "match", "return", "in", "for", "loop", "break", "let", "else", "fn", "as",
    "move", "mut", "ref", "unsafe", "where", "impl", "dyn", "box", "yield", "await", "async",
];

/// Walks the tokens (without recursion: the depth of a file's groups is unbounded here),
/// recording type names, heap mentions and calls.
fn scan(tokens: TokenStream, self_ty: Option<&str>, s: &mut Summary) {
    let mut stack: Vec<Vec<TokenTree>> = vec![tokens.into_iter().collect()];
    while let Some(tts) = stack.pop() {
        for (i, tt) in tts.iter().enumerate() {
            match tt {
                TokenTree::Group(g) => stack.push(g.stream().into_iter().collect()),
                TokenTree::Ident(id) => {
                    let name = id.to_string();
                    if rules::HEAP_TYPES.contains(&name.as_str()) {
                        s.direct = true;
                    }
                    if name.chars().next().is_some_and(char::is_uppercase) {
                        s.types.insert(name.clone());
                    }
                    match tts.get(i + 1) {
                        Some(TokenTree::Punct(p)) if p.as_char() == '!' && name == "tx" => {
                            s.direct = true;
                        }
                        Some(TokenTree::Group(g))
                            if g.delimiter() == proc_macro2::Delimiter::Parenthesis
                                && !NOT_CALLS.contains(&name.as_str()) =>
                        {
                            s.calls.insert(call_at(&tts, i, name, self_ty));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
}

/// The call whose name is `tts[i]`: a method call after `.`, an associated function after
/// `T::`, a free function otherwise.
fn call_at(tts: &[TokenTree], i: usize, name: String, self_ty: Option<&str>) -> Call {
    let punct =
        |j: usize, c: char| matches!(tts.get(j), Some(TokenTree::Punct(p)) if p.as_char() == c);
    if i >= 1 && punct(i - 1, '.') {
        return Call::Method(name);
    }
    if i >= 3 && punct(i - 1, ':') && punct(i - 2, ':') {
        if let (Some(TokenTree::Punct(p)), Some(TokenTree::Ident(t))) =
            (tts.get(i - 2), tts.get(i - 3))
        {
            if p.spacing() == Spacing::Joint {
                let ty = t.to_string();
                let ty = match (ty.as_str(), self_ty) {
                    ("Self", Some(own)) => own.to_string(),
                    _ => ty,
                };
                if ty.chars().next().is_some_and(char::is_uppercase) {
                    return Call::Assoc(ty, name);
                }
            }
        }
    }
    Call::Free(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(src: &str) -> (HeapIndex, Vec<Summary>) {
        let file = syn::parse_file(src).expect("parses");
        let mut k = Knowledge::default();
        k.learn_from_source(src);
        let sums = summarize_file(&file);
        (HeapIndex::build(&sums, &k), sums)
    }

    fn heap_names(src: &str) -> Vec<String> {
        let (idx, sums) = index(src);
        sums.iter()
            .filter(|s| idx.reaches_heap(s))
            .map(|s| match &s.key.ty {
                Some(t) => format!("{t}::{}", s.key.name),
                None => s.key.name.clone(),
            })
            .collect()
    }

    #[test]
    fn pure_functions_are_not_heap_functions_and_callers_of_heap_ones_are() {
        let src = "
            #[stm::object] struct Node { next: Option<Gc<Node>> }
            fn pure(x: u64) -> u64 { x + 1 }
            fn loops(v: &[u64]) -> u64 { let mut s = 0; for x in v { s += pure(*x) } s }
            fn reads(r: &Root<Node>) -> bool { r.get(tx!()).next.is_none() }
            fn calls_reads(r: &std::sync::Arc<u8>) { let _ = reads2(); }
            fn reads2() -> bool { let n = Node { next: None }; true }
            fn macro_user() { let t = stm::tx!(); }
            struct S;
            impl S {
                fn new() -> S { S }
                fn heap(&self) { reads2(); }
                fn via_self() { Self::other(); }
                fn other() { let _ = stm::Stm::global; let _: Option<&stm::Tx> = None; }
                fn via_method(&self) { self.heap(); }
                fn not_heap(&self) { S::new(); }
            }
            #[stm::transactional] fn marked() {}
            fn calls_marked() { marked() }
        ";
        assert_eq!(
            heap_names(src),
            [
                "reads",
                "calls_reads",
                "reads2",
                "macro_user",
                "S::heap",
                "S::via_self",
                "S::other",
                "S::via_method",
                "marked",
                "calls_marked"
            ]
        );
    }

    #[test]
    fn deep_groups_do_not_recurse() {
        let deep = format!("fn f() {{ {}x{} }}", "(".repeat(50_000), ")".repeat(50_000));
        let ts: TokenStream = deep.parse().expect("lexes");
        let mut s = Summary::default();
        scan(ts, None, &mut s);
        assert!(!s.direct);
    }
}
