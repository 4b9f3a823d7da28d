//! `#[derive(Plain)]`: declares a user's small `Copy` struct or enum plain data, so it can be
//! a field of shared objects.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
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
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    let inner = |ts: TokenStream| -> TokenStream {
        let t: Vec<proc_macro2::TokenTree> = ts.into_iter().collect();
        if t.len() < 2 {
            TokenStream::new()
        } else {
            t[1..t.len() - 1].iter().cloned().collect()
        }
    };
    let impl_g = inner(impl_g.to_token_stream());
    let ty_g = inner(ty_g.to_token_stream());
    let preds = where_c.map(|w| {
        let p = w.predicates.iter();
        quote!(#(#p,)*)
    });
    // Each field type is bounded by `Plain` (an error spans the field's type), and so is each
    // type parameter; the `unsafe impl` is written by the runtime's `impl_plain!`, whose
    // `$crate` paths the user cannot redirect.
    let params = input.generics.type_params().map(|t| {
        let id = &t.ident;
        quote!(#id)
    });
    let fields = field_types.iter().map(|ty| quote_spanned!(ty.span()=> #ty));
    let tokens = quote! {
        #rt::__private::impl_plain! {
            impl [#impl_g] #ident [#ty_g] where [#preds] fields [#(#params,)* #(#fields,)*]
        }
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
