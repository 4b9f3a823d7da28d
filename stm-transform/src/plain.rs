//! `#[derive(Plain)]`: declares a user's small `Copy` struct or enum plain data, so it can be
//! a field of shared objects.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput};

use crate::ctxt::Ctxt;
use crate::types;
use crate::Expansion;

pub(crate) fn expand(input: TokenStream) -> Expansion {
    let cx = Ctxt::new();
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => {
            cx.syn_error(e);
            return done(cx, TokenStream::new());
        }
    };
    let mut rt = quote!(::stm_runtime);
    for a in &input.attrs {
        if a.path().is_ident("stm") {
            if let Err(e) = a.parse_nested_meta(|m| {
                if m.path.is_ident("crate") {
                    let p: syn::Path = m.value()?.parse()?;
                    rt = quote!(#p);
                    Ok(())
                } else {
                    Err(m.error("unknown `stm` argument: the only one is `crate = path`"))
                }
            }) {
                cx.syn_error(e);
            }
        }
    }
    let field_types: Vec<&syn::Type> = match &input.data {
        Data::Struct(s) => s.fields.iter().map(|f| &f.ty).collect(),
        Data::Enum(e) => e
            .variants
            .iter()
            .flat_map(|v| v.fields.iter().map(|f| &f.ty))
            .collect(),
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "derive(Plain) does not support unions: use a struct or an enum",
            );
            return done(cx, TokenStream::new());
        }
    };
    for lt in input.generics.lifetimes() {
        cx.error_spanned_by(
            lt,
            "plain data cannot borrow: it is copied between threads; remove the lifetime",
        );
    }
    for ty in &field_types {
        if types::is_gc(ty) || types::single_type_arg(ty, "Option").is_some_and(types::is_gc) {
            cx.error_spanned_by(
                ty,
                "plain data cannot hold handles: make this type an #[stm::object] (then \
                 `Gc<T>` fields are allowed), or store the handle in the object itself",
            );
        } else if let Some(msg) = types::rejected_field_type(ty) {
            cx.error_spanned_by(ty, msg.replace("a field of a shared object", "plain data"));
        }
    }
    if cx.has_errors() {
        return done(cx, TokenStream::new());
    }
    let ident = &input.ident;
    let (params, preds) = types::generic_parts(&cx, &input.generics, "plain data types");
    if cx.has_errors() {
        return done(cx, TokenStream::new());
    }
    // Each field type is bounded by `Plain` (an error spans the field's type), and the
    // runtime's `impl_plain!` (which writes the `unsafe impl`, through `$crate` paths the user
    // cannot redirect) checks this description against the type itself.
    let describe = |fields: &syn::Fields, next: &mut usize| -> TokenStream {
        let items = fields.iter().enumerate().map(|(i, f)| {
            let member = match &f.ident {
                Some(id) => quote!(#id),
                None => {
                    let idx = syn::Index::from(i);
                    quote!(#idx)
                }
            };
            let bind = quote::format_ident!("__stm_f{}", *next);
            *next += 1;
            let ty = &f.ty;
            quote_spanned!(ty.span()=> #member: #bind: #ty)
        });
        let items: Vec<TokenStream> = items.collect();
        quote!({ #(#items,)* })
    };
    let mut next = 0;
    let body = match &input.data {
        Data::Struct(st) => {
            let fields = describe(&st.fields, &mut next);
            quote!(struct #fields)
        }
        Data::Enum(en) => {
            let variants = en.variants.iter().map(|v| {
                let name = &v.ident;
                let fields = describe(&v.fields, &mut next);
                quote!(#name #fields)
            });
            quote!(enum { #(#variants,)* })
        }
        Data::Union(_) => unreachable!("rejected above"),
    };
    let tokens = quote! {
        #rt::__private::impl_plain! {
            impl [#(#params),*] #ident where [#preds] #body
        }
    };
    done(cx, tokens)
}

fn done(cx: Ctxt, tokens: TokenStream) -> Expansion {
    let has_errors = cx.has_errors();
    let (mut out, diagnostics) = cx.into_parts();
    out.extend(tokens);
    Expansion {
        tokens: out,
        stats: Default::default(),
        has_errors,
        diagnostics,
    }
}
