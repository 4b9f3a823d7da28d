//! Local type inference from whole-tree knowledge (`stm-rewrite` only: unless
//! [`Knowledge::infer_types`] is set, as it never is for the proc macro, nothing here applies
//! and the output is unchanged).
//!
//! The CLI has read every `#[object]` struct of the tree (field names and declared types) and
//! every function signature. With that, the type of an unannotated binding often follows from
//! what initialises it: a field of a handle whose object type is known (`let cur = list.head`:
//! `Option<Gc<Node>>`), `.unwrap()`/`.expect(..)` on such an option, a call of a function whose
//! return type is known, `root.get(tx)` on a `Root<T>`, and the `Some(n)` pattern of an
//! `if let`/`while let`/`match` on an option of a handle. A binding known to be a handle gets
//! the direct barrier calls instead of the tag dispatch; one known to be plain data is left
//! as written.
//!
//! Inference can only be wrong if the tree's names are ambiguous (two types or functions of
//! the same name); then the output does not compile (`Gc` has no fields; barrier calls need a
//! `Gc`): it never loses a barrier.

use crate::types;
use crate::Knowledge;

/// What knowledge says about an expression's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `Gc<T>`, of the object type named `T`.
    Handle(String),
    /// `Option<Gc<T>>`.
    OptHandle(String),
    /// `Root<T>` or `&Root<T>`.
    Root(String),
    /// Not a handle: plain data.
    Plain,
}

/// The last path segment's name of a type.
fn name_of(ty: &syn::Type) -> Option<String> {
    types::last_segment(ty).map(|s| s.ident.to_string())
}

/// A declared type, read as precisely as a signature allows. `plain_default`: whether an
/// unrecognised type is plain data (true for object fields, whose types are checked to be
/// `Field`s; false for signatures, where a type parameter may be anything).
pub(crate) fn ty_of_type(ty: &syn::Type, plain_default: bool) -> Option<Ty> {
    match ty {
        syn::Type::Paren(p) => return ty_of_type(&p.elem, plain_default),
        syn::Type::Group(g) => return ty_of_type(&g.elem, plain_default),
        syn::Type::Reference(r) => {
            return match ty_of_type(&r.elem, false) {
                Some(Ty::Root(t)) => Some(Ty::Root(t)),
                _ => None,
            }
        }
        _ => {}
    }
    if let Some(inner) = types::single_type_arg(ty, "Gc") {
        return name_of(inner).map(Ty::Handle);
    }
    if let Some(inner) = types::single_type_arg(ty, "Root") {
        return name_of(inner).map(Ty::Root);
    }
    if let Some(inner) = types::single_type_arg(ty, "Option") {
        return match ty_of_type(inner, plain_default) {
            Some(Ty::Handle(t)) => Some(Ty::OptHandle(t)),
            Some(_) => Some(Ty::Plain),
            None => None,
        };
    }
    let name = name_of(ty)?;
    const PRIMITIVES: &[&str] = &[
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
        "f32", "f64", "bool", "char", "String", "Vec", "TVec", "TQueue", "THashMap",
    ];
    if name == "Self" || name == "Gc" {
        return None;
    }
    if PRIMITIVES.contains(&name.as_str())
        || matches!(ty, syn::Type::Tuple(_) | syn::Type::Array(_))
    {
        return Some(Ty::Plain);
    }
    plain_default.then_some(Ty::Plain)
}

/// A type written as text in [`Knowledge`].
pub(crate) fn ty_of_text(text: &str, plain_default: bool) -> Option<Ty> {
    let ty: syn::Type = syn::parse_str(text).ok()?;
    ty_of_type(&ty, plain_default)
}

impl Knowledge {
    /// Whether there is anything to infer with (never for the proc macro, whose knowledge
    /// is empty).
    pub(crate) fn is_empty(&self) -> bool {
        !self.infer_types || (self.objects.is_empty() && self.functions.is_empty())
    }

    /// The type of field `field` of object type `object`.
    pub(crate) fn field_ty(&self, object: &str, field: &str) -> Option<Ty> {
        let info = self.objects.get(object)?;
        let (_, ty) = info.fields.iter().find(|(n, _)| n == field)?;
        ty_of_text(ty, true)
    }

    /// The return type of the function called through `path` (`f`, `m::f`, `Type::f`).
    pub(crate) fn call_ty(&self, path: &syn::Path) -> Option<Ty> {
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let last = segs.last()?;
        let key = match segs.len() {
            0 => return None,
            1 => last.clone(),
            n => {
                let owner = &segs[n - 2];
                // `Type::f` (an associated function) or `module::f` (a free function).
                if owner.starts_with(|c: char| c.is_ascii_uppercase()) {
                    format!("{owner}::{last}")
                } else {
                    last.clone()
                }
            }
        };
        let ret = self.functions.get(&key)?.returns.as_deref()?;
        ty_of_text(ret, false)
    }
}
