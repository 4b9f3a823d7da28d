//! Error collection (serde_derive's `Ctxt`): validation records every problem it finds, each
//! on the user's tokens, and the caller turns them into `compile_error!`s at the end.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// One problem found by validation, for a front end that reports it itself (the
/// `stm-rewrite` CLI) rather than through `compile_error!`.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// The user's tokens it is about (a span joining the first and last of them where the
    /// source map allows, otherwise the first); `Span::call_site()` for generated tokens.
    pub span: Span,
    /// The message, as `compile_error!` would print it.
    pub message: String,
}

impl Diagnostic {
    /// The diagnostics held by a `syn` error (one per message it combines).
    pub fn from_syn(err: &syn::Error) -> Vec<Diagnostic> {
        err.clone()
            .into_iter()
            .map(|e| Diagnostic {
                span: e.span(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// Collects errors during validation and expansion.
#[derive(Default, Debug)]
pub struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// A new, empty context.
    pub fn new() -> Ctxt {
        Ctxt::default()
    }

    /// Records an error spanning `tokens`.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, msg: M) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(tokens.into_token_stream(), msg));
    }

    /// Records a `syn` error (a parse error, typically).
    pub fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// Whether anything was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The recorded errors as `compile_error!` invocations (empty if none).
    pub fn into_compile_errors(self) -> TokenStream {
        self.into_parts().0
    }

    /// The recorded errors, both as `compile_error!` invocations and as [`Diagnostic`]s.
    pub fn into_parts(self) -> (TokenStream, Vec<Diagnostic>) {
        let errors = self.errors.into_inner();
        let diagnostics = errors.iter().flat_map(Diagnostic::from_syn).collect();
        let tokens = errors.into_iter().map(|e| e.to_compile_error()).collect();
        (tokens, diagnostics)
    }
}
