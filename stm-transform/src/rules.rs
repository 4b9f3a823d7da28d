//! The front-end rules, once: which attributes mark an item, which signatures can be
//! transactional, where a function's transaction comes from, what generated code looks like.
//! The macros apply them through the expansions; `stm-rewrite` calls them directly to plan a
//! tree (`--all-functions`), so that both front ends decide, and word their messages, alike.

use proc_macro2::{TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::{FnArg, Pat, Signature, Type};

use crate::ctxt::{Ctxt, Diagnostic};
use crate::rewrite::{kind_of_type, Kind};
use crate::{attr, breaks, transactional, types};

/// An attribute that tells the front ends what to do with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// `#[transactional]` (or `#[atomic]` on an item, its synonym): the item runs as one
    /// transaction, its own or its caller's.
    Transactional,
    /// `#[in_transactions]`: the function runs outside transactions, its loops as series of
    /// transactions cut at break points.
    InTransactions,
    /// `#[not_transactional]`: `stm-rewrite --all-functions` leaves the item (a function, an
    /// `impl` block, a trait or an inline module, with everything inside) as written. The
    /// macro does nothing.
    NotTransactional,
}

impl Marker {
    /// The attribute's name (its last path segment).
    pub fn name(self) -> &'static str {
        match self {
            Marker::Transactional => "transactional",
            Marker::InTransactions => "in_transactions",
            Marker::NotTransactional => "not_transactional",
        }
    }
}

/// Which marker an attribute is: any path ending in `transactional`, `atomic`,
/// `in_transactions` or `not_transactional` (`#[stm::transactional]`,
/// `#[stm_runtime::in_transactions]`, ...).
pub fn marker(a: &syn::Attribute) -> Option<Marker> {
    let path = a.path();
    if attr::is_transactional_attr(path) || attr::is_atomic_attr(path) {
        Some(Marker::Transactional)
    } else if attr::is_in_transactions_attr(path) {
        Some(Marker::InTransactions)
    } else if attr::is_not_transactional_attr(path) {
        Some(Marker::NotTransactional)
    } else {
        None
    }
}

/// The attribute that marks an item: its index among `attrs` and which it is. An item with
/// two markers is an error (which was meant?), at the second one.
pub fn marked(attrs: &[syn::Attribute]) -> Result<Option<(usize, Marker)>, Diagnostic> {
    let mut found = attrs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| marker(a).map(|m| (i, m)));
    let first = found.next();
    if let (Some((_, m)), Some((j, second))) = (first, found.next()) {
        let message = if m == Marker::NotTransactional || second == Marker::NotTransactional {
            "an item marked #[not_transactional] (leave it as written) cannot also be marked \
             #[transactional] or #[in_transactions]; keep one"
                .to_string()
        } else {
            format!(
                "an item marked #[{}] cannot be marked again: #[transactional] runs it as one \
                 transaction, #[in_transactions] runs its loops as series of transactions; \
                 keep one",
                m.name()
            )
        };
        return Err(Diagnostic {
            span: attrs[j].span(),
            message,
        });
    }
    Ok(first)
}

/// Whether a type mentions `Gc` anywhere (a handle, or something holding one).
pub fn mentions_gc(ty: &Type) -> bool {
    types::mentions_gc(ty)
}

/// Whether a type is `&Tx` (any path ending in `Tx`, any lifetime).
pub fn is_tx_ref(ty: &Type) -> bool {
    types::is_tx_ref(ty)
}

/// Where a transactional function's transaction comes from, for one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The parameter is the transaction (`tx: &Tx`).
    Tx,
    /// The parameter is a handle, which lives in its transaction.
    Handle,
}

/// What a parameter gives a `#[transactional]` function: its transaction, a handle of it, or
/// nothing (a parameter bound by a pattern gives nothing).
pub(crate) fn source_of(pt: &syn::PatType) -> Option<Source> {
    match &*pt.pat {
        Pat::Ident(pi) if pi.subpat.is_none() => {
            if types::is_tx_ref(&pt.ty) {
                Some(Source::Tx)
            } else if kind_of_type(&pt.ty) == Kind::Handle {
                Some(Source::Handle)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether a `#[transactional]` function with this signature runs in its caller's
/// transaction (it takes a `&Tx` or a handle); otherwise it joins the transaction running on
/// the thread or runs as its own (`atomically_fn`), whose body may run more than once.
pub fn runs_in_callers_transaction(sig: &Signature) -> bool {
    sig.inputs
        .iter()
        .any(|i| matches!(i, FnArg::Typed(pt) if source_of(pt).is_some()))
}

/// Whether a function with this signature may be `#[in_transactions]`: it takes no handle
/// and no `&Tx` and returns no handle (its transactions end at its break points).
pub fn can_run_in_transactions(sig: &Signature) -> bool {
    breaks::check_no_handles(&Ctxt::new(), sig)
}

/// Why a signature cannot get `marker` at all (`const`, `async`, `extern`, variadic,
/// `self: Gc<Self>` on its own), in the expansion's words; empty if it can.
pub fn signature_problems(sig: &Signature, marker: Marker) -> Vec<Diagnostic> {
    let cx = Ctxt::new();
    let what = match marker {
        Marker::InTransactions => "run in transactions",
        _ => "be transactional",
    };
    transactional::check_sig_as(&cx, sig, what);
    cx.into_parts().1
}

/// The names the generated code binds in every function it writes: the running transaction
/// and the runtime's private module.
pub const GENERATED_NAMES: &[&str] = &["__stm_tx", "__stm"];

/// Whether tokens hold generated code (one of [`GENERATED_NAMES`]): a function written by the
/// transformation already (an `#[in_transactions]` function whose loops all stayed ordinary
/// has the prelude's `__stm` only).
pub fn is_generated(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => GENERATED_NAMES.iter().any(|n| i == n),
        TokenTree::Group(g) => is_generated(g.stream()),
        _ => false,
    })
}

/// The runtime's types through which code reaches the shared heap: handles, roots, the
/// transaction, the transactional containers. A function that mentions none of them (nor an
/// object type, nor `tx!()`, nor calls one that does) cannot touch the heap.
pub const HEAP_TYPES: &[&str] = &[
    "Gc",
    "GcRef",
    "Root",
    "Tx",
    "TVec",
    "GcVec",
    "TString",
    "GcString",
    "TQueue",
    "GcQueue",
    "THashMap",
    "GcHashMap",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(src: &str) -> Signature {
        syn::parse_str::<syn::ItemFn>(src).expect("a fn").sig
    }

    #[test]
    fn markers_and_conflicts() {
        let f: syn::ItemFn = syn::parse_str("#[doc = \"x\"] #[stm::atomic] fn f() {}").unwrap();
        assert_eq!(marked(&f.attrs).unwrap(), Some((1, Marker::Transactional)));
        let f: syn::ItemFn =
            syn::parse_str("#[stm::not_transactional] #[in_transactions] fn f() {}").unwrap();
        let err = marked(&f.attrs).unwrap_err();
        assert!(
            err.message.contains("#[not_transactional]"),
            "{}",
            err.message
        );
        let f: syn::ItemFn = syn::parse_str("#[inline] fn f() {}").unwrap();
        assert_eq!(marked(&f.attrs).unwrap(), None);
    }

    #[test]
    fn where_the_transaction_comes_from() {
        assert!(runs_in_callers_transaction(&sig("fn f(a: Gc<A>) {}")));
        assert!(runs_in_callers_transaction(&sig(
            "fn f(x: u8, tx: &stm::Tx) {}"
        )));
        assert!(!runs_in_callers_transaction(&sig("fn f(r: &Root<A>) {}")));
        assert!(!runs_in_callers_transaction(&sig(
            "fn f((a, b): (Gc<A>, u8)) {}"
        )));
        assert!(can_run_in_transactions(&sig("fn f(r: &Root<A>) -> u8 {}")));
        assert!(!can_run_in_transactions(&sig("fn f(a: Option<Gc<A>>) {}")));
        assert!(!can_run_in_transactions(&sig("fn f() -> Vec<Gc<A>> {}")));
        assert!(!can_run_in_transactions(&sig("fn f(t: &Tx) {}")));
    }

    #[test]
    fn signature_problems_are_the_expansions_words() {
        let p = signature_problems(&sig("async fn f() {}"), Marker::InTransactions);
        assert_eq!(p.len(), 1);
        assert!(p[0]
            .message
            .starts_with("an `async fn` cannot run in transactions"));
        assert!(signature_problems(&sig("fn f() {}"), Marker::Transactional).is_empty());
    }

    #[test]
    fn generated_code_is_recognised() {
        assert!(is_generated(quote::quote!({
            let __stm_tx = 1;
        })));
        assert!(!is_generated(quote::quote!({
            let stm_tx = 1;
        })));
    }
}
