//! # stm-transform: compile-time barrier insertion for `stm-runtime`
//!
//! The whole transformation behind `#[stm::object]`, `#[stm::transactional]` and
//! `#[derive(stm::Plain)]`, on `proc_macro2` token streams and `syn` syntax trees, so that
//! the proc-macro crate (`stm-macros`) and the source rewriter (`stm-rewrite`) insert
//! barriers identically: one transformation, two front ends.
//!
//! Each entry point runs three stages, in the style of serde_derive and thiserror:
//!
//! 1. **parse** the attribute arguments and the item (`syn`);
//! 2. **validate**: collect every problem at once in a [`Ctxt`], each on the user's tokens;
//! 3. **expand**: write the output, which cannot fail.
//!
//! On error the output is the `compile_error!`s *and* the item (as close to the input as the
//! errors allow), so the rest of the crate still sees its names.
//!
//! ```
//! use quote::quote;
//! let out = stm_transform::expand_transactional(
//!     quote!(),
//!     quote! {
//!         fn deposit(a: Gc<Account>, amount: i64) {
//!             a.balance += amount;
//!         }
//!     },
//! );
//! let text = out.to_string();
//! assert!(text.contains("update"));
//! ```
//!
//! The macro sees no types. How it still instruments every access to a shared object, and
//! why an access it cannot instrument fails to compile, is described in the `rewrite` module
//! and in `docs/macros.md`.

mod attr;
mod breaks;
mod ctxt;
mod effects;
mod infer;
mod object;
mod plain;
mod rewrite;
pub mod rules;
mod snapshot;
mod transactional;
mod types;

use std::collections::BTreeMap;

use proc_macro2::TokenStream;

pub use ctxt::{Ctxt, Diagnostic};
pub use snapshot::pretty;

/// What the transformation knows from outside the item it expands. The proc macro knows
/// nothing beyond the item; the `stm-rewrite` CLI sees the whole source tree and fills this in.
#[derive(Clone, Debug, Default)]
pub struct Knowledge {
    /// Shared-object types by name (the last path segment), with their fields.
    pub objects: BTreeMap<String, ObjectInfo>,
    /// Functions by name (`name` for free functions, `Type::name` for associated functions
    /// without `self`), with their return types: the rewriter infers the types of bindings
    /// initialised by calls.
    pub functions: BTreeMap<String, FunctionInfo>,
    /// Whether the rewriter infers the types of bindings from this knowledge (see the
    /// `infer` module). Off by default, so that [`expand_file`] shows what the macros
    /// write; `stm-rewrite` turns it on.
    pub infer_types: bool,
}

/// What is known about a function (or all the functions of the tree with that name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The declared return type, as written; `None` if there is none, or if functions of the
    /// same name declare different ones (then nothing is inferred from calls).
    pub returns: Option<String>,
}

/// What is known about one object type.
#[derive(Clone, Debug, Default)]
pub struct ObjectInfo {
    /// Field names and their declared types, as written (e.g. `"Option<Gc<Node>>"`).
    pub fields: Vec<(String, String)>,
}

impl Knowledge {
    /// Records the object types declared by `#[object]` structs in a file's source text, and
    /// the signatures of its functions. Returns how many object types it found. Files that do
    /// not parse contribute nothing.
    pub fn learn_from_source(&mut self, source: &str) -> usize {
        let Ok(file) = syn::parse_file(source) else {
            return 0;
        };
        self.learn_items(&file.items)
    }

    /// Adds what `other` knows (functions of the same name with different return types
    /// become ambiguous).
    pub fn merge(&mut self, other: Knowledge) {
        self.objects.extend(other.objects);
        for (name, info) in other.functions {
            self.learn_function(name, info.returns);
        }
    }

    fn learn_function(&mut self, name: String, returns: Option<String>) {
        use std::collections::btree_map::Entry;
        match self.functions.entry(name) {
            Entry::Vacant(v) => {
                v.insert(FunctionInfo { returns });
            }
            Entry::Occupied(mut o) => {
                if o.get().returns != returns {
                    o.get_mut().returns = None;
                }
            }
        }
    }

    fn learn_signature(&mut self, name: String, sig: &syn::Signature) {
        use quote::ToTokens;
        let returns = match &sig.output {
            syn::ReturnType::Type(_, ty) => Some(ty.to_token_stream().to_string()),
            syn::ReturnType::Default => None,
        };
        self.learn_function(name, returns);
    }

    fn learn_items(&mut self, items: &[syn::Item]) -> usize {
        let mut found = 0;
        for item in items {
            match item {
                syn::Item::Fn(f) => self.learn_signature(f.sig.ident.to_string(), &f.sig),
                syn::Item::Impl(i) if i.trait_.is_none() => {
                    if let Some(seg) = types::last_segment(&i.self_ty) {
                        for it in &i.items {
                            if let syn::ImplItem::Fn(m) = it {
                                if m.sig.receiver().is_none() {
                                    let name = format!("{}::{}", seg.ident, m.sig.ident);
                                    self.learn_signature(name, &m.sig);
                                }
                            }
                        }
                    }
                }
                syn::Item::Struct(s) if s.attrs.iter().any(|a| attr::is_object_attr(a.path())) => {
                    self.objects.insert(s.ident.to_string(), ObjectInfo::of(s));
                    found += 1;
                }
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        found += self.learn_items(inner);
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// Whether `name` (a type's last path segment) is a known object type.
    pub fn is_object(&self, name: &str) -> bool {
        self.objects.contains_key(name)
    }
}

impl ObjectInfo {
    fn of(s: &syn::ItemStruct) -> ObjectInfo {
        use quote::ToTokens;
        let fields = s
            .fields
            .iter()
            .filter_map(|f| {
                let name = f.ident.as_ref()?.to_string();
                Some((name, f.ty.to_token_stream().to_string()))
            })
            .collect();
        ObjectInfo { fields }
    }
}

/// Counters of what an expansion did, for the CLI's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Read barriers written (field reads through a possible handle).
    pub read_barriers: usize,
    /// Write barriers written (assignments, compound assignments, mutable places).
    pub write_barriers: usize,
    /// Points where the transaction is made inevitable before an irreversible call.
    pub inevitable_points: usize,
    /// Allocations of objects (`Gc::new(T { .. })`).
    pub allocations: usize,
    /// Functions made transactional.
    pub functions: usize,
    /// Bindings whose type came from whole-tree knowledge (`stm-rewrite`; always 0 in the
    /// macros): handles that get direct barrier calls, plain values left as written.
    pub inferred: usize,
    /// Loops given break points (`#[in_transactions]` functions): each runs as a series of
    /// transactions.
    pub break_loops: usize,
    /// Loops and blocks marked `#[atomic]` in `#[in_transactions]` functions: each runs as
    /// one transaction.
    pub atomic_blocks: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.read_barriers += o.read_barriers;
        self.write_barriers += o.write_barriers;
        self.inevitable_points += o.inevitable_points;
        self.allocations += o.allocations;
        self.functions += o.functions;
        self.inferred += o.inferred;
        self.break_loops += o.break_loops;
        self.atomic_blocks += o.atomic_blocks;
    }
}

/// The result of one expansion: the tokens and what was done.
#[derive(Clone, Debug)]
pub struct Expansion {
    /// The item(s) to emit (with `compile_error!`s first if validation failed).
    pub tokens: TokenStream,
    /// What the expansion did.
    pub stats: Stats,
    /// Whether validation reported errors (they are in `tokens` as `compile_error!`).
    pub has_errors: bool,
    /// The same errors, structured (empty when `has_errors` is false): a front end that
    /// reports errors itself reads these rather than the `compile_error!` tokens.
    pub diagnostics: Vec<Diagnostic>,
}

/// Expands `#[object]` on a struct: shared-heap layout, `Object` impl, field checks.
pub fn expand_object(attr: TokenStream, item: TokenStream) -> TokenStream {
    object::expand(attr, item).tokens
}

/// Expands `#[derive(Plain)]` on a `Copy` struct or enum.
pub fn expand_plain_derive(input: TokenStream) -> TokenStream {
    plain::expand(input).tokens
}

/// Expands `#[transactional]` on a function, a method or an `impl` block.
pub fn expand_transactional(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_transactional_with(&Knowledge::default(), attr, item).tokens
}

/// [`expand_transactional`] with outside knowledge (known object types), returning counters.
pub fn expand_transactional_with(
    knowledge: &Knowledge,
    attr: TokenStream,
    item: TokenStream,
) -> Expansion {
    transactional::expand(knowledge, attr, item)
}

/// Expands `#[in_transactions]` on a function: its loops run as series of transactions, cut
/// at break points (their back-edges); its other code runs outside transactions.
pub fn expand_in_transactions(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_in_transactions_with(&Knowledge::default(), attr, item).tokens
}

/// [`expand_in_transactions`] with outside knowledge, returning counters.
pub fn expand_in_transactions_with(
    knowledge: &Knowledge,
    attr: TokenStream,
    item: TokenStream,
) -> Expansion {
    breaks::expand(knowledge, attr, item)
}

/// Expands `#[not_transactional]`: the item unchanged (the attribute only tells
/// `stm-rewrite --all-functions` to leave it as written); arguments are an error.
pub fn expand_not_transactional(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    if let Some(tt) = attr.into_iter().next() {
        out.extend(
            syn::Error::new_spanned(
                tt,
                "#[stm::not_transactional] takes no arguments: it only tells stm-rewrite \
                 --all-functions to leave the item as written",
            )
            .to_compile_error(),
        );
    }
    out.extend(item);
    out
}

/// [`expand_object`], returning counters and whether it failed.
pub fn expand_object_with(attr: TokenStream, item: TokenStream) -> Expansion {
    object::expand(attr, item)
}

/// What `stm::tx!()` expands to outside a `#[transactional]` item (inside one, the
/// transformation replaces it with the running transaction): an error saying where it belongs.
pub fn expand_tx_outside(input: TokenStream) -> TokenStream {
    effects::tx_outside(input)
}

/// What `stm::tx_safe!(..)` expands to when it is *not* inside a `#[transactional]` item
/// (inside one, the transformation consumes it): an error saying where it belongs.
pub fn expand_tx_safe_outside(input: TokenStream) -> TokenStream {
    effects::tx_safe_outside(input)
}

/// Expands every `#[object]`, `#[transactional]` and `#[derive(Plain)]` item of a source
/// file (top level and inside inline modules) and pretty-prints the result, as the snapshot
/// files and `stm-rewrite --show` present it. Errors come out as `compile_error!`s in place.
pub fn expand_file(source: &str) -> syn::Result<String> {
    let mut file = syn::parse_file(source)?;
    let mut knowledge = Knowledge::default();
    knowledge.learn_from_source(source);
    expand_items(&knowledge, &mut file.items);
    Ok(prettyplease::unparse(&file))
}

fn expand_items(knowledge: &Knowledge, items: &mut Vec<syn::Item>) {
    use quote::ToTokens;
    let mut out = Vec::with_capacity(items.len());
    for mut item in items.drain(..) {
        if let syn::Item::Mod(m) = &mut item {
            if let Some((_, inner)) = &mut m.content {
                expand_items(knowledge, inner);
            }
            out.push(item);
            continue;
        }
        let attrs = match &mut item {
            syn::Item::Fn(f) => &mut f.attrs,
            syn::Item::Impl(i) => &mut i.attrs,
            syn::Item::Struct(s) => &mut s.attrs,
            syn::Item::Enum(e) => &mut e.attrs,
            _ => {
                out.push(item);
                continue;
            }
        };
        let pos = attrs.iter().position(|a| {
            attr::is_object_attr(a.path())
                || attr::is_transactional_attr(a.path())
                || attr::is_in_transactions_attr(a.path())
        });
        let derives_plain = attrs.iter().any(|a| {
            a.path().is_ident("derive")
                && a.to_token_stream()
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "Plain")
        });
        let expanded = match pos {
            Some(i) => {
                let a = attrs.remove(i);
                let args = match &a.meta {
                    syn::Meta::List(l) => l.tokens.clone(),
                    _ => TokenStream::new(),
                };
                let tokens = item.to_token_stream();
                if attr::is_object_attr(a.path()) {
                    expand_object(args, tokens)
                } else if attr::is_in_transactions_attr(a.path()) {
                    expand_in_transactions_with(knowledge, args, tokens).tokens
                } else {
                    expand_transactional_with(knowledge, args, tokens).tokens
                }
            }
            None if derives_plain => {
                let mut t = item.to_token_stream();
                t.extend(expand_plain_derive(item.to_token_stream()));
                t
            }
            None => item.to_token_stream(),
        };
        match syn::parse2::<syn::File>(expanded) {
            Ok(f) => out.extend(f.items),
            Err(_) => out.push(item),
        }
    }
    *items = out;
}
