//! Syntactic knowledge about types: which field types a shared object may hold (and what to
//! say about those it may not), handle types in signatures.

use syn::{GenericArgument, PathArguments, Type, TypePath};

/// The last segment of a path type, if the type is a path.
pub(crate) fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(TypePath {
            qself: None, path, ..
        }) => path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// The generic arguments of a path segment (`<...>`), if any.
pub(crate) fn generic_args(
    seg: &syn::PathSegment,
) -> Option<&syn::punctuated::Punctuated<GenericArgument, syn::Token![,]>> {
    match &seg.arguments {
        PathArguments::AngleBracketed(a) => Some(&a.args),
        _ => None,
    }
}

/// The single type argument of `Name<T>`, if `ty` is exactly that (lifetimes aside).
pub(crate) fn single_type_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let seg = last_segment(ty)?;
    if seg.ident != name {
        return None;
    }
    let args = generic_args(seg)?;
    let mut types = args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let t = types.next()?;
    if types.next().is_some() {
        return None;
    }
    Some(t)
}

/// Whether `ty` is a handle type `Gc<..>` (syntactically: last path segment `Gc`).
pub(crate) fn is_gc(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Gc")
}

/// Whether `ty` is `&Tx` / `&'a Tx` (the transaction context).
pub(crate) fn is_tx_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => {
            last_segment(&r.elem).is_some_and(|s| s.ident == "Tx")
        }
        _ => false,
    }
}

/// Whether a type mentions `Gc` anywhere.
pub(crate) fn mentions_gc(ty: &Type) -> bool {
    use quote::ToTokens;
    fn walk(ts: proc_macro2::TokenStream) -> bool {
        ts.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => i == "Gc",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
}

/// Why a field type cannot live in a shared object, and what to use instead; `None` when
/// nothing is known against it (the `Field` trait bound then decides).
pub(crate) fn rejected_field_type(ty: &Type) -> Option<String> {
    let shown = show(ty);
    let msg = |what: &str| {
        Some(format!(
            "`{shown}` cannot be a field of a shared object: {what}"
        ))
    };
    match ty {
        Type::Reference(_) => msg(
            "a reference points outside the shared heap and cannot outlive the transaction; \
             store a handle (`Gc<T>`) to an object, or copy the data into the field",
        ),
        Type::Ptr(_) => msg(
            "a raw pointer is not valid in other threads' views of the heap; store a handle \
             (`Gc<T>`) to an object",
        ),
        Type::FnPtr(_) => msg(
            "function pointers are not plain data; store a `#[derive(Plain)]` enum that \
             names the operation",
        ),
        Type::TraitObject(_) | Type::ImplTrait(_) => msg(
            "trait objects have no fixed layout in the shared heap; use a \
             `#[derive(Plain)]` enum or a handle to an object",
        ),
        Type::Slice(_) => msg("a slice has no fixed size; use an array `[T; N]` or a `TVec<T>`"),
        Type::Infer(_) => msg("write the field's type"),
        Type::Never(_) => msg("`!` has no values; remove the field"),
        Type::Array(a) => rejected_field_type(&a.elem),
        Type::Tuple(t) => t.elems.iter().find_map(rejected_field_type),
        Type::Paren(p) => rejected_field_type(&p.elem),
        Type::Group(g) => rejected_field_type(&g.elem),
        Type::Path(_) => {
            let seg = last_segment(ty)?;
            let name = seg.ident.to_string();
            match name.as_str() {
                "String" | "str" | "OsString" | "CString" | "PathBuf" => msg(
                    "it owns memory outside the shared heap; store the text in a \
                     `TString` (the runtime's transactional text), a `TVec<u8>`, or a fixed array",
                ),
                "Vec" | "VecDeque" | "LinkedList" => msg(
                    "it owns memory outside the shared heap; use the runtime's transactional \
                     `TVec<T>` (card-marked: a one-element write copies one card), a fixed \
                     array `[T; N]`, or a linked structure of objects",
                ),
                "Box" => msg(
                    "it owns memory outside the shared heap; allocate the value as its own \
                     object (`#[stm::object]`) and store a `Gc<T>`",
                ),
                "Rc" | "Arc" | "Weak" => msg(
                    "reference counting is not transactional; store a `Gc<T>` handle (objects \
                     are shared and kept alive by the runtime already)",
                ),
                "Cell" | "RefCell" | "UnsafeCell" | "OnceCell" | "OnceLock" | "Mutex"
                | "RwLock" | "Condvar" => msg(
                    "a shared object's fields are transactional already; store the plain \
                     value (e.g. `i64` instead of `Cell<i64>`) and assign it in a \
                     `#[transactional]` function",
                ),
                n if n.starts_with("Atomic") => msg(
                    "a shared object's fields are transactional already; store the plain \
                     integer and update it in a `#[transactional]` function",
                ),
                "HashMap" | "HashSet" | "BTreeMap" | "BTreeSet" | "BinaryHeap" => msg(
                    "it owns memory outside the shared heap; build the structure from \
                     objects (`Option<Gc<Node>>` links) or a `TVec`",
                ),
                "GcRef" => msg(
                    "write the handle as `Gc<T>` (or `Option<Gc<T>>`); the macro stores it \
                     in its compact form",
                ),
                "Root" => msg(
                    "a `Root` keeps an object alive from outside the heap; inside an object, \
                     store a `Gc<T>`",
                ),
                "Tx" | "Stm" => msg("a transaction or runtime cannot be stored in the heap"),
                "PhantomData" => msg("shared objects cannot carry marker types; remove it"),
                "Option" => {
                    let inner = single_type_arg(ty, "Option")?;
                    if is_gc(inner) {
                        None
                    } else {
                        rejected_field_type(inner)
                    }
                }
                "Gc" => None,
                _ => {
                    // Arguments of other generic types (user types, containers): look inside.
                    let args = generic_args(seg)?;
                    args.iter().find_map(|a| match a {
                        GenericArgument::Type(t) if !is_gc(t) => rejected_field_type(t),
                        _ => None,
                    })
                }
            }
        }
        _ => None,
    }
}

/// A type as the user would write it (`&'static str`, not `& 'static str`).
pub(crate) fn show(ty: &Type) -> String {
    let item: syn::File = syn::parse_quote!(type T = #ty;);
    let text = prettyplease::unparse(&item);
    text.trim()
        .trim_start_matches("type T = ")
        .trim_end_matches(';')
        .to_string()
}

/// The generics of an item as the runtime's `macro_rules!` impls take them: the type
/// parameters' names, and every bound as a `Type: Path` predicate (`T: A + B` becomes `T: A,
/// T: B`), so that nothing the user wrote can split an impl header. What cannot be said that
/// way (lifetime and const parameters, `?Sized`, lifetime bounds, `for<'a>`) is an error in
/// `cx`; `what` names the item kind for the messages.
pub(crate) fn generic_parts(
    cx: &crate::Ctxt,
    generics: &syn::Generics,
    what: &str,
) -> (Vec<syn::Ident>, proc_macro2::TokenStream) {
    use quote::quote;
    let mut params = Vec::new();
    let mut preds = Vec::new();
    let mut bounds =
        |ty: syn::Type, list: &syn::punctuated::Punctuated<syn::TypeParamBound, syn::Token![+]>| {
            for b in list {
                match b {
                    syn::TypeParamBound::Trait(t)
                        if t.lifetimes.is_none()
                            && t.maybe.is_none()
                            && t.paren_token.is_none() =>
                    {
                        let path = &t.path;
                        preds.push(quote!(#ty: #path));
                    }
                    other => cx.error_spanned_by(
                        other,
                        format!(
                        "{what} take trait bounds only (`T: Trait`): lifetime bounds, `?Sized` \
                         and `for<'a>` bounds are not supported"
                    ),
                    ),
                }
            }
        };
    for p in &generics.params {
        match p {
            syn::GenericParam::Type(t) => {
                params.push(t.ident.clone());
                let id = &t.ident;
                bounds(syn::parse_quote!(#id), &t.bounds);
            }
            syn::GenericParam::Const(c) => {
                cx.error_spanned_by(c, format!("{what} cannot have const generic parameters"))
            }
            // Lifetimes are reported by the callers, with their own message.
            syn::GenericParam::Lifetime(_) => {}
        }
    }
    if let Some(w) = &generics.where_clause {
        for pred in &w.predicates {
            match pred {
                syn::WherePredicate::Type(pt) if pt.lifetimes.is_none() => {
                    bounds(pt.bounded_ty.clone(), &pt.bounds)
                }
                other => cx.error_spanned_by(
                    other,
                    format!("{what} take `Type: Trait` where-clauses only"),
                ),
            }
        }
    }
    (params, quote!(#(#preds,)*))
}
