//! `#[transactional]` on functions, methods and `impl` blocks.
//!
//! # Nesting
//!
//! * A function that takes a handle (`Gc<T>`) or a `&Tx` runs in that transaction: a handle
//!   only exists inside its transaction, so the caller is in it. All elided handle lifetimes
//!   of the signature become one lifetime `'tx` (so handles from different parameters can be
//!   stored into each other), and allocations belong to the same transaction.
//! * Any other transactional function body runs in `stm_runtime::atomically`: it joins the
//!   transaction running on the thread, or, called outside any, runs as its own transaction
//!   on `Stm::global()`, retried on conflict. Such a function cannot return a handle (it
//!   would outlive its transaction): that is a compile error saying to return a `Root`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, ImplItem, Item, Pat, ReturnType, Signature, Type};

use crate::attr::{self, Args};
use crate::ctxt::Ctxt;
use crate::rewrite::{kind_of_type, Kind, Rewriter};
use crate::{rules, types};
use crate::{Expansion, Knowledge, Stats};

pub(crate) fn expand(knowledge: &Knowledge, attr: TokenStream, item: TokenStream) -> Expansion {
    let cx = Ctxt::new();
    let args = attr::parse_args(&cx, "transactional", attr);
    let mut stats = Stats::default();
    let parsed: Item = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            cx.syn_error(e);
            return finish(cx, item, stats);
        }
    };
    let out = match parsed {
        Item::Fn(f) if has_handle_receiver(&f.sig) => {
            // Reported by `check_sig`; emitting the method would only add rustc's own errors.
            check_sig(&cx, &f.sig);
            TokenStream::new()
        }
        Item::Fn(mut f) => {
            if check_sig(&cx, &f.sig) {
                let mut t = FnParts {
                    attrs: &mut f.attrs,
                    sig: &mut f.sig,
                    block: &mut f.block,
                };
                transform_fn(&cx, knowledge, &args, &[], &mut t, &mut stats);
                f.into_token_stream()
            } else {
                item
            }
        }
        Item::Impl(mut i) => {
            let outer: Vec<String> = i
                .generics
                .lifetimes()
                .map(|l| l.lifetime.ident.to_string())
                .collect();
            // Methods on handles (`self: Gc<Self>`) move to an extension trait of `Gc<T>`.
            let mut handle_methods = Vec::new();
            i.items.retain(|it| match it {
                ImplItem::Fn(m) if has_handle_receiver(&m.sig) => {
                    handle_methods.push(m.clone());
                    false
                }
                _ => true,
            });
            let extension = if handle_methods.is_empty() {
                TokenStream::new()
            } else if i.trait_.is_some() {
                for m in &handle_methods {
                    cx.error_spanned_by(
                        &m.sig.inputs[0],
                        "methods on handles (`self: Gc<Self>`) are supported in inherent impl \
                         blocks (they become a trait implemented for `Gc<T>`); in a trait impl, \
                         write `this: Gc<Self>`",
                    );
                }
                TokenStream::new()
            } else {
                handle_methods_trait(&cx, knowledge, &args, &i, handle_methods, &mut stats)
            };
            for it in i.items.iter_mut() {
                if let ImplItem::Fn(m) = it {
                    m.attrs.retain(|a| !attr::is_transactional_attr(a.path()));
                    if check_sig(&cx, &m.sig) {
                        let mut t = FnParts {
                            attrs: &mut m.attrs,
                            sig: &mut m.sig,
                            block: &mut m.block,
                        };
                        transform_fn(&cx, knowledge, &args, &outer, &mut t, &mut stats);
                    }
                }
            }
            let mut out = i.into_token_stream();
            out.extend(extension);
            out
        }
        other => {
            unsupported_item(&cx, &other);
            item
        }
    };
    finish(cx, out, stats)
}

/// The expansion: the errors recorded in `cx` as `compile_error!`s, then `item`.
pub(crate) fn finish(cx: Ctxt, item: TokenStream, stats: Stats) -> Expansion {
    let has_errors = cx.has_errors();
    let (mut tokens, diagnostics) = cx.into_parts();
    tokens.extend(item);
    Expansion {
        tokens,
        stats,
        has_errors,
        diagnostics,
    }
}

fn unsupported_item(cx: &Ctxt, item: &Item) {
    let (span, msg): (TokenStream, &str) = match item {
        Item::Struct(s) => (
            s.struct_token.into_token_stream(),
            "#[stm::transactional] goes on functions, methods and impl blocks; to make a \
             struct a shared-object type, use #[stm::object]",
        ),
        Item::Enum(e) => (
            e.enum_token.into_token_stream(),
            "#[stm::transactional] goes on functions, methods and impl blocks; to store an \
             enum in shared objects, use #[derive(Clone, Copy, stm::Plain)]",
        ),
        Item::Union(u) => (
            u.union_token.into_token_stream(),
            "#[stm::transactional] goes on functions, methods and impl blocks, not on unions",
        ),
        Item::Trait(t) => (
            t.trait_token.into_token_stream(),
            "#[stm::transactional] on a trait is not supported: put it on the impl blocks \
             (or on the functions) that implement the trait",
        ),
        Item::Const(c) => (
            c.const_token.to_token_stream(),
            "#[stm::transactional] goes on functions: a `const` is evaluated at compile time, \
             where there is no shared heap",
        ),
        Item::Static(s) => (
            s.static_token.into_token_stream(),
            "#[stm::transactional] goes on functions: a `static` is initialised outside any \
             transaction; keep shared state in objects reached through `Root`s",
        ),
        Item::Mod(m) => (
            m.mod_token.into_token_stream(),
            "#[stm::transactional] on a module is not supported: put it on the functions and \
             impl blocks inside",
        ),
        Item::ForeignMod(f) => (
            f.abi.to_token_stream(),
            "#[stm::transactional] cannot instrument foreign functions: call them from a \
             #[stm::transactional] Rust function (which makes the transaction inevitable \
             first if you wrap the call in a function it recognises, or call \
             `tx.become_inevitable()` yourself)",
        ),
        other => (
            other.into_token_stream(),
            "#[stm::transactional] goes on functions, methods and impl blocks",
        ),
    };
    cx.error_spanned_by(span, msg);
}

/// Rejects signatures that cannot be transactional; returns whether it may be transformed.
pub(crate) fn check_sig(cx: &Ctxt, sig: &Signature) -> bool {
    check_sig_as(cx, sig, "be transactional")
}

/// [`check_sig`] for an attribute whose messages say `a const fn cannot {what}`.
pub(crate) fn check_sig_as(cx: &Ctxt, sig: &Signature, what: &str) -> bool {
    let mut ok = true;
    if let Some(c) = sig.constness {
        cx.error_spanned_by(
            c,
            format!(
                "a `const fn` cannot {what}: it may run at compile time, where there is no \
                 shared heap; remove `const`"
            ),
        );
        ok = false;
    }
    if let Some(a) = sig.asyncness {
        cx.error_spanned_by(
            a,
            format!(
                "an `async fn` cannot {what}: a transaction cannot be suspended across \
             `.await` (other threads would see it half done). Make the transactional part an \
             ordinary fn and call it from the async code"
            ),
        );
        ok = false;
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(
            abi,
            format!(
                "an `extern` fn cannot {what}: foreign callers cannot be rolled back. \
             Keep the extern fn as a thin wrapper that calls a #[stm::transactional] Rust fn"
            ),
        );
        ok = false;
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, format!("a variadic fn cannot {what}"));
        ok = false;
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        if let syn::ReceiverKind::Typed(_, ty) = &r.kind {
            if types::is_gc(ty) {
                cx.error_spanned_by(
                    ty,
                    "`self: Gc<Self>` on its own needs the unstable `arbitrary_self_types`: put \
                     #[stm::transactional] on the whole impl block (its `self: Gc<Self>` \
                     methods become a trait `TypeMethods` implemented for `Gc<Type>`), or \
                     write `this: Gc<Self>` and call `Type::method(handle, ..)`",
                );
                ok = false;
            }
        }
    }
    ok
}

/// Names of `Gc`'s own methods: an extension method with one of them would never be called
/// (inherent methods win).
const GC_METHODS: &[&str] = &[
    "ptr_eq",
    "tx",
    "read_barrier",
    "write_barrier",
    "read_field",
    "read_field_unbarriered",
    "read_field_untracked",
    "write_field",
    "get",
    "set",
    "update",
    "clone",
    "fmt",
];

/// `impl Account { fn deposit(self: Gc<Self>, ..) }` becomes
/// `trait AccountMethods<'tx> { fn deposit(self, ..); }` implemented for `Gc<'tx, Account>`,
/// so that `handle.deposit(..)` works on stable Rust. `Self` in those methods keeps meaning
/// the object type.
fn handle_methods_trait(
    cx: &Ctxt,
    knowledge: &Knowledge,
    args: &Args,
    imp: &syn::ItemImpl,
    methods: Vec<syn::ImplItemFn>,
    stats: &mut Stats,
) -> TokenStream {
    let rt = &args.runtime;
    let self_ty = &*imp.self_ty;
    let Some(seg) = types::last_segment(self_ty) else {
        cx.error_spanned_by(self_ty, "methods on handles need a named object type");
        return TokenStream::new();
    };
    let trait_name = syn::Ident::new(&format!("{}Methods", seg.ident), seg.ident.span());
    let mut generics = imp.generics.clone();
    if !generics.lifetimes().any(|l| l.lifetime.ident == "tx") {
        generics.params.insert(0, syn::parse_quote!('tx));
    }
    let outer: Vec<String> = generics
        .lifetimes()
        .map(|l| l.lifetime.ident.to_string())
        .collect();
    let vis = methods
        .iter()
        .map(|m| m.vis.clone())
        .find(|v| !matches!(v, syn::Visibility::Inherited))
        .unwrap_or(syn::Visibility::Inherited);
    let mut decls = Vec::new();
    let mut impls = Vec::new();
    for mut m in methods {
        let name = m.sig.ident.to_string();
        if GC_METHODS.contains(&name.as_str()) {
            cx.error_spanned_by(
                &m.sig.ident,
                format!("`Gc` has its own method `{name}`, which would win: rename this one"),
            );
            continue;
        }
        m.attrs.retain(|a| !attr::is_transactional_attr(a.path()));
        let mut sub = SelfToType {
            ty: self_ty.clone(),
        };
        sub.visit_signature_mut(&mut m.sig);
        sub.visit_block_mut(&mut m.block);
        let mutability = match m.sig.inputs.first() {
            Some(FnArg::Receiver(r)) => r.mutability,
            _ => None,
        };
        m.sig.inputs[0] = syn::parse_quote!(#mutability self);
        m.vis = syn::Visibility::Inherited;
        let mut probe = m.sig.clone();
        probe.inputs[0] = syn::parse_quote!(self);
        if !check_sig(cx, &probe) {
            continue;
        }
        let mut t = FnParts {
            attrs: &mut m.attrs,
            sig: &mut m.sig,
            block: &mut m.block,
        };
        transform_fn_with(cx, knowledge, args, &outer, &mut t, stats, Some(self_ty));
        let mut docs: Vec<TokenStream> = m
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .map(|a| a.to_token_stream())
            .collect();
        if docs.is_empty() {
            let text = format!("`{}::{name}` on a handle.", seg.ident);
            docs.push(quote!(#[doc = #text]));
        }
        // A declaration has no patterns: plain names, `_` otherwise.
        let mut decl_sig = m.sig.clone();
        for input in decl_sig.inputs.iter_mut() {
            match input {
                FnArg::Receiver(r) => r.mutability = None,
                FnArg::Typed(pt) => match &mut *pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() => {
                        pi.mutability = None;
                        pi.by_ref = None;
                    }
                    other => *other = syn::parse_quote!(_),
                },
            }
        }
        decls.push(quote!(#(#docs)* #decl_sig;));
        impls.push(m);
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let doc = format!(
        "Methods of `Gc<{}>` (from `#[stm::transactional] impl {}`).",
        seg.ident, seg.ident
    );
    let params = &generics.params;
    quote! {
        #[doc = #doc]
        #vis trait #trait_name <#params> #where_c {
            #(#decls)*
        }
        impl #impl_g #trait_name #ty_g for #rt::Gc<'tx, #self_ty> #where_c {
            #(#impls)*
        }
    }
}

/// Replaces `Self` (which in a trait impl for `Gc<T>` would mean the handle) by the object
/// type, in turbofish form so that it also works in expressions.
struct SelfToType {
    ty: Type,
}

impl VisitMut for SelfToType {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        syn::visit_mut::visit_path_mut(self, path);
        if path.leading_colon.is_some() || path.segments.first().is_none_or(|s| s.ident != "Self") {
            return;
        }
        let Type::Path(tp) = &self.ty else { return };
        let mut new = tp.path.clone();
        for seg in new.segments.iter_mut() {
            if let syn::PathArguments::AngleBracketed(a) = &mut seg.arguments {
                a.colon2_token = Some(Default::default());
            }
        }
        let rest: Vec<_> = path.segments.iter().skip(1).cloned().collect();
        if path.segments[0].arguments.is_empty() {
            new.segments.extend(rest);
            *path = new;
        }
    }
}

fn has_handle_receiver(sig: &Signature) -> bool {
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => {
            matches!(&r.kind, syn::ReceiverKind::Typed(_, ty) if types::is_gc(ty))
        }
        _ => false,
    }
}

struct FnParts<'a> {
    attrs: &'a mut Vec<syn::Attribute>,
    sig: &'a mut Signature,
    block: &'a mut syn::Block,
}

/// Gives every elided handle lifetime in a signature the one transaction lifetime.
///
/// Except in the parameters of closure and function-pointer types (`impl FnMut(&Tx, Gc<A>)`,
/// `Box<dyn Fn(&Tx)>`, `fn(&Tx)`): there an elided lifetime is higher-ranked (`for<'a>
/// FnMut(&'a Tx)`), which is what a callee that runs the closure in transactions of its own
/// needs, and `'tx` would pin it to one transaction. Their return type gets `'tx` only where
/// elision has nothing to tie it to (`impl Fn() -> Gc<A>`).
struct HandleLifetimes {
    lifetime: syn::Lifetime,
    changed: bool,
}

/// Whether closure or function-pointer parameters have a lifetime for elision to use in
/// their return type (a reference, a `'_`, a handle without its lifetime written).
fn inputs_give_lifetime<'a>(inputs: impl Iterator<Item = &'a Type>) -> bool {
    fn walk(ts: TokenStream) -> bool {
        ts.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Punct(p) => p.as_char() == '&' || p.as_char() == '\'',
            proc_macro2::TokenTree::Ident(i) => i == "Gc",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            proc_macro2::TokenTree::Literal(_) => false,
        })
    }
    inputs.into_iter().any(|t| walk(t.to_token_stream()))
}

impl VisitMut for HandleLifetimes {
    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        args: &mut syn::ParenthesizedGenericArguments,
    ) {
        if !inputs_give_lifetime(args.inputs.iter().map(|a| &a.ty)) {
            self.visit_return_type_mut(&mut args.output);
        }
    }

    fn visit_type_fn_ptr_mut(&mut self, f: &mut syn::TypeFnPtr) {
        if !inputs_give_lifetime(f.inputs.iter().map(|a| &a.ty)) {
            self.visit_return_type_mut(&mut f.output);
        }
    }

    fn visit_type_mut(&mut self, ty: &mut Type) {
        syn::visit_mut::visit_type_mut(self, ty);
        if let Type::Reference(r) = ty {
            // `&Tx`: the same transaction as the handles.
            if r.lifetime.is_none() && types::is_tx_ref(&Type::Reference(r.clone())) {
                r.lifetime = Some(self.lifetime.clone());
                self.changed = true;
            }
            return;
        }
        let Type::Path(p) = ty else { return };
        if p.qself.is_some() {
            return;
        }
        let Some(seg) = p.path.segments.last_mut() else {
            return;
        };
        if seg.ident != "Gc" {
            return;
        }
        let syn::PathArguments::AngleBracketed(args) = &mut seg.arguments else {
            return;
        };
        let lt = self.lifetime.clone();
        match args.args.first_mut() {
            Some(syn::GenericArgument::Lifetime(l)) => {
                if l.ident == "_" {
                    *l = lt;
                    self.changed = true;
                }
            }
            _ => {
                args.args.insert(0, syn::GenericArgument::Lifetime(lt));
                self.changed = true;
            }
        }
    }
}

fn transform_fn(
    cx: &Ctxt,
    knowledge: &Knowledge,
    args: &Args,
    outer_lifetimes: &[String],
    f: &mut FnParts<'_>,
    stats: &mut Stats,
) {
    transform_fn_with(cx, knowledge, args, outer_lifetimes, f, stats, None);
}

/// [`transform_fn`]; with `self_handle` (the object type), `self` is a handle (a method of
/// the extension trait of `Gc<T>`) and the transaction comes from it.
fn transform_fn_with(
    cx: &Ctxt,
    knowledge: &Knowledge,
    args: &Args,
    outer_lifetimes: &[String],
    f: &mut FnParts<'_>,
    stats: &mut Stats,
    self_handle: Option<&Type>,
) {
    let rt = &args.runtime;
    // 1. One transaction lifetime for every handle of the signature.
    let declared = f
        .sig
        .generics
        .lifetimes()
        .map(|l| l.lifetime.ident.to_string())
        .chain(outer_lifetimes.iter().cloned())
        .any(|l| l == "tx");
    let mut lts = HandleLifetimes {
        lifetime: syn::Lifetime::new("'tx", Span::call_site()),
        changed: false,
    };
    for input in f.sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = input {
            lts.visit_type_mut(&mut pt.ty);
        }
    }
    if let ReturnType::Type(_, ty) = &mut f.sig.output {
        lts.visit_type_mut(ty);
    }
    if lts.changed && !declared {
        f.sig.generics.params.insert(0, syn::parse_quote!('tx));
    }

    // 2. Parameters: what the body may assume about them; where the transaction comes from.
    let tx = syn::Ident::new("__stm_tx", Span::mixed_site());
    let mut rewriter = Rewriter::new(cx, knowledge, tx.clone());
    let mut tx_source: Option<TokenStream> = None;
    let mut handle_source: Option<TokenStream> = None;
    for input in f.sig.inputs.iter() {
        match input {
            FnArg::Receiver(_) if self_handle.is_some() => {
                rewriter.bind("self", Kind::Handle);
                if let Some(ty) = self_handle {
                    rewriter.note_param_type("self", &syn::parse_quote!(Gc<#ty>));
                }
                handle_source = Some(quote!(#rt::Gc::tx(self)));
            }
            FnArg::Receiver(_) => rewriter.bind("self", Kind::Plain),
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.subpat.is_none() => {
                    let id = &pi.ident;
                    let kind = kind_of_type(&pt.ty);
                    let source = rules::source_of(pt);
                    if source == Some(rules::Source::Tx) && tx_source.is_none() {
                        tx_source = Some(quote!(#id));
                    }
                    if source == Some(rules::Source::Handle) && handle_source.is_none() {
                        handle_source = Some(quote!(#rt::Gc::tx(#id)));
                    }
                    rewriter.bind(&id.to_string(), kind);
                    rewriter.note_param_type(&id.to_string(), &pt.ty);
                }
                other => rewriter.bind_pattern(other),
            },
        }
    }
    let source = tx_source.or(handle_source);

    // 3. A function that starts its own transaction cannot return a handle.
    let mut escapes = false;
    if source.is_none() {
        if let ReturnType::Type(_, ty) = &f.sig.output {
            if types::mentions_gc(ty) {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "`{}` takes no handle and no `&Tx`, so called outside a transaction it \
                         runs as its own, and a handle it returns would outlive that \
                         transaction. Return a `Root<T>` (`tx.root(handle)`), or take a \
                         handle or a `tx: &Tx` parameter so that it always runs in its \
                         caller's transaction",
                        f.sig.ident
                    ),
                );
                escapes = true;
            }
        }
    }

    // 4. The body (replaced after an error that would only cause more errors in it).
    if escapes {
        *f.block = syn::parse_quote!({ ::core::unimplemented!() });
        return;
    }
    rewriter.body(f.block);
    *stats += rewriter.stats;
    stats.functions += 1;

    let stmts = &f.block.stmts;
    let stm = syn::Ident::new("__stm", Span::mixed_site());
    let prelude = quote! {
        #[allow(unused_imports)]
        use #rt::__private::{
            self as #stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
        };
    };
    let span = f.block.brace_token.span.join();
    let new_block: syn::Block = match source {
        Some(src) => syn::parse_quote_spanned! {span=> {
            #prelude
            let #tx: &#rt::Tx = #src;
            #(#stmts)*
        }},
        None => {
            let ret = match &f.sig.output {
                ReturnType::Type(_, ty) if annotatable(ty) => quote!(-> #ty),
                _ => quote!(),
            };
            let copies = rerun_copies(cx, f.sig, &stm);
            syn::parse_quote_spanned! {span=> {
                #rt::__private::atomically_fn(|#tx: &#rt::Tx| #ret {
                    #prelude
                    #copies
                    #(#stmts)*
                })
            }}
        }
    };
    *f.block = new_block;
    f.attrs.push(lint_allowances());
}

/// For a function that runs as its own transaction (its body is an `Fn` closure that may run
/// again after an abort): every `mut` by-value parameter is copied afresh for each attempt, so
/// that an attempt starts from the value the function was called with. `mut self` by value
/// cannot be rebound in a closure: an error says what to do.
fn rerun_copies(cx: &Ctxt, sig: &mut Signature, stm: &syn::Ident) -> TokenStream {
    let mut out = TokenStream::new();
    for input in sig.inputs.iter_mut() {
        match input {
            FnArg::Receiver(r)
                if r.mutability.is_some()
                    && !matches!(r.kind, syn::ReceiverKind::Reference(..)) =>
            {
                cx.error_spanned_by(
                    r.mutability,
                    "a transactional method that takes no handle and no `&Tx` runs as its own \
                     transaction, whose body may run again after an abort: it cannot take \
                     `mut self` (the second run would see the first one's changes). Take \
                     `self` and copy what you change into a local",
                );
            }
            FnArg::Receiver(_) => {}
            FnArg::Typed(pt) => {
                let mut names = Vec::new();
                crate::rewrite::binding_idents(&pt.pat, &mut names);
                for (name, is_mut) in names {
                    if is_mut {
                        let id = syn::Ident::new(&name, pt.pat.span());
                        out.extend(quote_spanned!(pt.pat.span()=>
                            #[allow(unused_mut)]
                            let mut #id = #stm::rerun_copy(&#id);
                        ));
                    }
                }
                // The parameter itself is only copied from: its `mut` moves to the copy.
                StripMut.visit_pat_mut(&mut pt.pat);
            }
        }
    }
    out
}

/// Removes `mut` from the bindings of a pattern.
struct StripMut;

impl VisitMut for StripMut {
    fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
        if p.by_ref.is_none() {
            p.mutability = None;
        }
        syn::visit_mut::visit_pat_ident_mut(self, p);
    }
}

/// The lints the generated barrier code may trip (parentheses and borrows it writes, the
/// `'tx` lifetime it adds), allowed on every function the transformation writes.
pub(crate) fn lint_allowances() -> syn::Attribute {
    syn::parse_quote!(#[allow(
        unused_parens,
        unused_braces,
        clippy::needless_lifetimes,
        clippy::deref_addrof,
        clippy::needless_borrow,
        clippy::unnecessary_mut_passed,
        clippy::let_unit_value,
        clippy::unit_arg
    )])
}

/// Whether a return type can be written on the closure (no elided lifetimes, no `impl`).
fn annotatable(ty: &Type) -> bool {
    fn walk(ts: TokenStream) -> bool {
        ts.into_iter().all(|tt| match tt {
            proc_macro2::TokenTree::Punct(p) => p.as_char() != '&' && p.as_char() != '\'',
            proc_macro2::TokenTree::Ident(i) => i != "impl" && i != "Gc",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            proc_macro2::TokenTree::Literal(_) => true,
        })
    }
    walk(ty.to_token_stream()) && !matches!(ty, Type::Infer(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(src: &str) -> String {
        let out = expand(
            &Knowledge::default(),
            TokenStream::new(),
            src.parse().unwrap(),
        );
        assert!(!out.has_errors, "{:?}", out.diagnostics);
        let f: syn::ItemFn = syn::parse2(out.tokens).expect("a function");
        f.sig.to_token_stream().to_string()
    }

    #[test]
    fn closure_and_fn_pointer_parameters_stay_higher_ranked() {
        let sig = signature(
            "fn f(a: Gc<A>, g: impl FnMut(&Tx, Gc<A>) -> u8, h: Box<dyn Fn(&Tx)>, \
             p: fn(&Tx) -> Gc<A>, t: &Tx) {}",
        );
        assert!(sig.contains("impl FnMut (& Tx , Gc < A >) -> u8"), "{sig}");
        assert!(sig.contains("Box < dyn Fn (& Tx) >"), "{sig}");
        assert!(sig.contains("fn (& Tx) -> Gc < A >"), "{sig}");
        // Outside them, handles and `&Tx` share the transaction's lifetime.
        assert!(sig.contains("a : Gc < 'tx , A >"), "{sig}");
        assert!(sig.contains("t : & 'tx Tx"), "{sig}");
        // A return type elision cannot tie to anything gets the transaction's lifetime.
        let sig = signature("fn f(a: Gc<A>, make: impl Fn() -> Gc<A>) {}");
        assert!(sig.contains("impl Fn () -> Gc < 'tx , A >"), "{sig}");
    }

    #[test]
    fn diagnostics_come_with_the_expansion() {
        let out = expand(
            &Knowledge::default(),
            TokenStream::new(),
            "const fn f() {}".parse().unwrap(),
        );
        assert!(out.has_errors);
        assert_eq!(out.diagnostics.len(), 1);
        assert!(out.diagnostics[0]
            .message
            .starts_with("a `const fn` cannot be transactional"));
    }
}
