//! `#[object]`: a struct whose values live in the shared heap.
//!
//! ```text
//! #[stm::object]
//! struct Node { key: i64, next: Option<Gc<Node>> }
//! ```
//! becomes
//! ```text
//! struct Node {
//!     key: i64,
//!     next: Option<::stm_runtime::GcRef<Node>>,       // handles in their stored form
//! }
//! ::stm_runtime::__private::object_impls! {          // Clone, Copy, Deref, Object, ...
//!     impl [] Node [] where [] plain [] object [] fields { key: i64, next: Option<..> }
//! }
//! ```
//!
//! The `unsafe` impls are written by the runtime's `object_impls!` (`$crate` paths only), so
//! their soundness never rests on a path the user chose. Safe code may build `Node` values with
//! a struct literal (`tx.alloc(Node { key: 1, next: None })`): a stored handle (`GcRef`) cannot
//! exist outside the heap, so such a value can only hold `None` where a handle would be;
//! `Gc::new(Node { .. })` in transactional code stores handles of the allocating transaction.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Fields, Item, ItemStruct, Type};

use crate::attr::{self, Args};
use crate::ctxt::Ctxt;
use crate::types;
use crate::Expansion;

/// The validated object: what expansion needs.
struct Object {
    item: ItemStruct,
    /// The type parameters and the bounds as `Type: Path` predicates (`types::generic_parts`).
    params: Vec<syn::Ident>,
    preds: TokenStream,
    /// The handle paths the field types were written with (see `HandleToStored::written`).
    written: Vec<syn::Path>,
    /// Field names and their stored types (handles rewritten), with the user's span.
    fields: Vec<(syn::Ident, Type, Span)>,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> Expansion {
    let cx = Ctxt::new();
    let args = attr::parse_args(&cx, "object", attr);
    let item: Item = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            cx.syn_error(e);
            return finish(cx, item);
        }
    };
    let object = match validate(&cx, &args.runtime, item) {
        Ok(o) => o,
        Err(fallback) => return finish(cx, fallback),
    };
    if cx.has_errors() {
        let fallback = object.item.to_token_stream();
        return finish(cx, fallback);
    }
    Expansion {
        tokens: generate(&args, &object),
        stats: Default::default(),
        has_errors: false,
        diagnostics: Vec::new(),
    }
}

fn finish(cx: Ctxt, fallback: TokenStream) -> Expansion {
    let has_errors = cx.has_errors();
    let (mut tokens, diagnostics) = cx.into_parts();
    tokens.extend(fallback);
    Expansion {
        tokens,
        stats: Default::default(),
        has_errors,
        diagnostics,
    }
}

/// Checks the item; on success returns it with handles rewritten. On a fatal problem returns
/// the tokens to emit instead (the item as given).
fn validate(cx: &Ctxt, rt: &TokenStream, item: Item) -> Result<Object, TokenStream> {
    let mut s = match item {
        Item::Struct(s) => s,
        Item::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "#[stm::object] goes on a struct with named fields; for an enum stored inside \
                 objects, use #[derive(Clone, Copy, stm::Plain)] and make it a field",
            );
            return Err(e.into_token_stream());
        }
        Item::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[stm::object] does not support unions: use a struct with named fields \
                 (or a #[derive(stm::Plain)] enum as a field)",
            );
            return Err(u.into_token_stream());
        }
        other => {
            cx.error_spanned_by(
                &other,
                "#[stm::object] goes on a struct with named fields (the type of a shared \
                 object); for functions that access objects use #[stm::transactional]",
            );
            return Err(other.into_token_stream());
        }
    };
    match &s.fields {
        Fields::Named(_) => {}
        Fields::Unnamed(_) | Fields::Unit => {
            cx.error_spanned_by(
                &s.ident,
                "#[stm::object] needs named fields (`struct Point { x: i64, y: i64 }`): the \
                 transactional code reaches fields by name",
            );
            return Err(s.into_token_stream());
        }
    }
    for lt in s.generics.lifetimes() {
        cx.error_spanned_by(
            lt,
            "a shared object cannot borrow anything: objects outlive every transaction and \
             thread; remove the lifetime parameter",
        );
    }
    for a in &s.attrs {
        if a.path().is_ident("derive") {
            let _ = a.parse_nested_meta(|m| {
                if m.path.is_ident("Clone") || m.path.is_ident("Copy") || m.path.is_ident("Default")
                {
                    cx.error_spanned_by(
                        &m.path,
                        if m.path.is_ident("Default") {
                            "an object is allocated with `Gc::new(T { .. })` inside a \
                             #[transactional] function; it cannot derive `Default`"
                        } else {
                            "#[stm::object] already makes the type `Clone + Copy` (the \
                             runtime copies objects); remove it from the derive"
                        },
                    );
                }
                Ok(())
            });
        }
        // Raw identifiers (`r#packed`) name the same attribute to rustc: compare unraw.
        let named = |p: &syn::Path, name: &str| {
            p.get_ident()
                .is_some_and(|i| syn::ext::IdentExt::unraw(i) == name)
        };
        if named(a.path(), "repr") {
            let _ = a.parse_nested_meta(|m| {
                if named(&m.path, "packed") {
                    cx.error_spanned_by(
                        &m.path,
                        "shared objects cannot be `repr(packed)`: fields are read and written \
                         through aligned pointers",
                    );
                }
                Ok(())
            });
        }
    }
    let mut fields = Vec::new();
    let mut written = Vec::new();
    if let Fields::Named(named) = &mut s.fields {
        for f in named.named.iter_mut() {
            let ident = f.ident.clone().expect("named field");
            if let Some(msg) = types::rejected_field_type(&f.ty) {
                cx.error_spanned_by(&f.ty, msg);
                continue;
            }
            if let Some(msg) = misplaced_handle(&f.ty) {
                cx.error_spanned_by(&f.ty, msg);
                continue;
            }
            let span = f.ty.span();
            let mut rw = HandleToStored {
                cx,
                rt,
                written: &mut written,
            };
            rw.visit_type_mut(&mut f.ty);
            fields.push((ident, f.ty.clone(), span));
        }
    }
    let (params, preds) = types::generic_parts(cx, &s.generics, "shared objects");
    Ok(Object {
        item: s,
        fields,
        params,
        preds,
        written,
    })
}

/// A handle inside an array or tuple (not a whole field, not in an `Option`, not a container
/// argument): explain.
fn misplaced_handle(ty: &Type) -> Option<String> {
    fn inside(ty: &Type) -> bool {
        match ty {
            Type::Array(a) => types::mentions_gc(&a.elem),
            Type::Tuple(t) => t.elems.iter().any(types::mentions_gc),
            Type::Paren(p) => inside(&p.elem),
            _ => types::single_type_arg(ty, "Option").is_some_and(inside),
        }
    }
    inside(ty).then(|| {
        "a handle can be a whole field (`Gc<T>`), an `Option<Gc<T>>`, or an element of a \
         `TVec<Gc<T>>`; arrays and tuples of handles are not supported"
            .to_string()
    })
}

/// Rewrites `Gc<T>` to the stored form `::stm_runtime::GcRef<T>` in a field type.
struct HandleToStored<'a> {
    cx: &'a Ctxt,
    rt: &'a TokenStream,
    /// The handle paths as written (`Gc`, `stm::Gc`), without arguments: the expansion
    /// mentions each once, so that a `use stm::Gc;` needed only by field types is not
    /// reported as unused.
    written: &'a mut Vec<syn::Path>,
}

impl VisitMut for HandleToStored<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        syn::visit_mut::visit_type_mut(self, ty);
        if !types::is_gc(ty) {
            return;
        }
        let seg = types::last_segment(ty).expect("a Gc path");
        let mut target = None;
        match types::generic_args(seg) {
            Some(args) => {
                for a in args {
                    match a {
                        syn::GenericArgument::Lifetime(lt) => self.cx.error_spanned_by(
                            lt,
                            "write the handle type without a lifetime (`Gc<T>`): a stored \
                             handle belongs to no one transaction",
                        ),
                        syn::GenericArgument::Type(t) => target = Some(t.clone()),
                        other => self.cx.error_spanned_by(other, "expected `Gc<T>`"),
                    }
                }
            }
            None => self
                .cx
                .error_spanned_by(&seg.ident, "say what the handle points to: `Gc<T>`"),
        }
        if let Type::Path(tp) = &*ty {
            let mut path = tp.path.clone();
            if let Some(last) = path.segments.last_mut() {
                last.arguments = syn::PathArguments::None;
            }
            let text = path.to_token_stream().to_string();
            if !self
                .written
                .iter()
                .any(|p| p.to_token_stream().to_string() == text)
            {
                self.written.push(path);
            }
        }
        if let Some(t) = target {
            let rt = self.rt;
            let span = ty.span();
            *ty = syn::parse_quote_spanned!(span=> #rt::GcRef<#t>);
        }
    }
}

/// Where a type parameter occurs in the (stored) field types: only as a handle's target
/// (`GcRef<T>`), or elsewhere too.
struct ParamUses<'a> {
    param: &'a syn::Ident,
    depth_in_handle: usize,
    outside: bool,
}

impl<'ast> syn::visit::Visit<'ast> for ParamUses<'_> {
    fn visit_type_path(&mut self, tp: &'ast syn::TypePath) {
        let handle = tp.path.segments.last().is_some_and(|s| s.ident == "GcRef");
        if tp.qself.is_none() && tp.path.is_ident(self.param) && self.depth_in_handle == 0 {
            self.outside = true;
        }
        self.depth_in_handle += usize::from(handle);
        syn::visit::visit_type_path(self, tp);
        self.depth_in_handle -= usize::from(handle);
    }
}

fn generate(args: &Args, o: &Object) -> TokenStream {
    let rt = &args.runtime;
    let item = &o.item;
    // Type parameters must be plain data, like the fields that hold them, except those used
    // only as the target of handles (`Option<Gc<T>>`), which must be object types.
    let mut plain_params = Vec::new();
    let mut object_params = Vec::new();
    for t in item.generics.type_params() {
        let mut uses = ParamUses {
            param: &t.ident,
            depth_in_handle: 0,
            outside: false,
        };
        for (_, ty, _) in &o.fields {
            syn::visit::Visit::visit_type(&mut uses, ty);
        }
        if uses.outside {
            plain_params.push(t.ident.clone());
        } else {
            object_params.push(t.ident.clone());
        }
    }
    let ident = &item.ident;
    let (params, preds) = (&o.params, &o.preds);
    // The same bounds on the struct itself, so that `Slot<String>` is an error wherever it
    // is written (they protect nothing: the impls below carry their own, through `$crate`).
    let mut def = item.clone();
    {
        let wc = def.generics.make_where_clause();
        for t in &plain_params {
            wc.predicates
                .push(syn::parse_quote_spanned!(t.span()=> #t: #rt::Plain));
        }
        for t in &object_params {
            wc.predicates
                .push(syn::parse_quote_spanned!(t.span()=> #t: #rt::Object));
        }
    }

    // Each field is traced (and thereby checked to be a field type, spanned on its type).
    let fields = o
        .fields
        .iter()
        .map(|(f, ty, span)| quote_spanned!(*span=> #f: #ty));
    // Everything `unsafe` (and the impls whose bounds it relies on) is written by the
    // runtime's `object_impls!`, whose `$crate` paths the user cannot redirect.
    let uses = o.written.iter().map(|p| {
        quote!(const _: ::core::marker::PhantomData<#p<'static, ()>> = ::core::marker::PhantomData;)
    });
    quote! {
        #def
        #(#uses)*

        #rt::__private::object_impls! {
            impl [#(#params),*] #ident
            where [#preds] plain [#(#plain_params),*] object [#(#object_params),*]
            fields { #(#fields,)* }
        }
    }
}
