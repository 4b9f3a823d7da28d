//! Attribute arguments: `#[object]`, `#[object(crate = path)]`, `#[transactional(crate = path)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream, Parser};
use syn::Token;

use crate::ctxt::Ctxt;

/// Parsed attribute arguments.
pub(crate) struct Args {
    /// The runtime crate's path (`::stm_runtime` unless `crate = path` says otherwise).
    pub runtime: TokenStream,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            runtime: quote!(::stm_runtime),
        }
    }
}

/// The one argument: `crate = path`.
struct CrateArg {
    path: syn::Path,
}

impl Parse for CrateArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        input.parse::<Token![crate]>()?;
        input.parse::<Token![=]>()?;
        let path: syn::Path = input.parse()?;
        Ok(CrateArg { path })
    }
}

/// Parses the arguments of `attr_name`, recording problems in `cx`.
pub(crate) fn parse_args(cx: &Ctxt, attr_name: &str, attr: TokenStream) -> Args {
    let mut args = Args::default();
    if attr.is_empty() {
        return args;
    }
    let parser = |input: ParseStream<'_>| {
        let mut out: Option<syn::Path> = None;
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                let arg: CrateArg = input.parse()?;
                out = Some(arg.path);
            } else {
                let tt: proc_macro2::TokenTree = input.parse()?;
                return Err(syn::Error::new_spanned(
                    tt,
                    format!(
                        "unknown argument to #[{attr_name}]: the only argument is \
                         `crate = path::to::stm_runtime`"
                    ),
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(out)
    };
    match parser.parse2(attr) {
        Ok(Some(path)) => args.runtime = quote!(#path),
        Ok(None) => {}
        Err(e) => cx.syn_error(e),
    }
    args
}

/// Whether an attribute path names the object attribute (`object`, `stm::object`, ...).
pub(crate) fn is_object_attr(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "object")
}

/// Whether an attribute path names the transactional attribute.
pub(crate) fn is_transactional_attr(path: &syn::Path) -> bool {
    path.segments
        .last()
        .is_some_and(|s| s.ident == "transactional")
}

/// Whether an attribute path names the in-transactions attribute.
pub(crate) fn is_in_transactions_attr(path: &syn::Path) -> bool {
    path.segments
        .last()
        .is_some_and(|s| s.ident == "in_transactions")
}

/// Whether an attribute path names `atomic` (`#[stm::atomic]` on a loop or block inside an
/// in-transactions function).
pub(crate) fn is_atomic_attr(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "atomic")
}

/// Whether an attribute path names `not_transactional` (`#[stm::not_transactional]`: leave
/// the item as written under `stm-rewrite --all-functions`).
pub(crate) fn is_not_transactional_attr(path: &syn::Path) -> bool {
    path.segments
        .last()
        .is_some_and(|s| s.ident == "not_transactional")
}
