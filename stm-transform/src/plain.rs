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
    let mut generics = input.generics.clone();
    let params: Vec<syn::Ident> = generics.type_params().map(|t| t.ident.clone()).collect();
    {
        let wc = generics.make_where_clause();
        for t in &params {
            wc.predicates.push(syn::parse_quote!(#t: #rt::Plain));
        }
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let checks = field_types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> #rt::__private::assert_plain::<#ty>();));
    let check_generics = &generics.params;
    let check_where = &generics.where_clause;
    let tokens = quote! {
        // SAFETY (from derive(Plain)): every field is `Plain` (checked below, spanned on the
        // field; a field that is not fails to compile), so the type holds no references,
        // pointers, handles or interior mutability; `Plain`'s supertraits make rustc check
        // `Copy + Send + Sync + 'static`.
        unsafe impl #impl_g #rt::Plain for #ident #ty_g #where_c {}

        const _: () = {
            #[allow(dead_code, clippy::extra_unused_type_parameters)]
            fn __stm_check_plain<#check_generics>() #check_where {
                #(#checks)*
            }
        };
    };
    done(cx, tokens)
}

fn done(cx: Ctxt, tokens: TokenStream) -> Expansion {
    let has_errors = cx.has_errors();
    let mut out = cx.into_compile_errors();
    out.extend(tokens);
    Expansion {
        tokens: out,
        stats: Default::default(),
        has_errors,
    }
}
