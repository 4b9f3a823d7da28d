//! The body rewriter: inserts barriers into every field access that may go through a handle.
//!
//! # What the macro knows
//!
//! Nothing about types, except what is written: parameter types, `let` annotations, and
//! what a `let` is initialised with. Each binding in scope is a known **handle** (a `Gc`
//! parameter, `let n = Gc::new(..)`, `let n: Gc<T> = ..`), known **plain** (any other declared
//! type, `self`, a literal, a struct literal), or **unknown**.
//!
//! # What it writes for `base.field`
//!
//! * base a known plain binding: nothing (ordinary Rust, exactly as written).
//! * base a known handle `h`: a call of the runtime's barrier functions on `h`
//!   (`__stm::read(h, __stm::field!(h, field))`, `write`, `update`, `place`).
//! * anything else: a *tag dispatch* that lets the compiler pick:
//!   `match __stm::Recv(&base).__stm_rkind() { __k => __k.read(|__r| &__r.field, __stm::field!(__k, field)) }`
//!   is the barrier path when `base` is a `Gc` and ordinary field access (`&base.field`)
//!   otherwise (see `stm_runtime::__private`).
//!
//! # Why nothing is silently left without a barrier
//!
//! `Gc<T>` has no fields and no `Deref`: the only way to reach an object's memory is the
//! runtime's barrier functions. An access this rewriter leaves alone (known plain base,
//! inside an unknown macro, in a nested item) is therefore either an ordinary struct access
//! or a compile error ("no field `x` on type `Gc<..>`"), never an unbarriered access.
//!
//! # Contexts
//!
//! A field expression is rewritten according to how it is used: as a **value** (a copy),
//! a read **place** (method receiver, `&e`, index or field base: a `ReadOnly` copy that
//! cannot be changed, so `h.arr.sort()` on a copy does not compile), a **mutable place**
//! (`&mut e`, receiver of a known mutating method, base of an index or field that is
//! assigned: a `WriteBack` guard that writes the changed copy back), or the target of an
//! **assignment** (write barrier + store; `+=` and friends read, update, write).
//!
//! # No barrier is ever skipped
//!
//! Every read through a possible handle runs the read barrier (one store). The macro does not
//! try to prove that an earlier barrier covers a later read: without types, `cfg`, macros,
//! short-circuits and mutations through references make such proofs fragile, and a wrong one
//! would silently let a conflict go undetected. The runtime skips a barrier only inside one of
//! its own operations, where it is certain (an update runs the write barrier, which marks the
//! object read, then reads without a second barrier; debug builds check the mark).
//!
//! # No `unsafe` in the output
//!
//! The rewritten code contains no `unsafe` token: the one unsafe step it needs (storing handles
//! into a new object) is written by the runtime's `new_object!` macro, whose `$crate` paths
//! cannot be redirected by user code.
//!
//! # Policy on nested constructs
//!
//! Closures are rewritten (they run in the same transaction: a closure that captures a
//! handle cannot outlive it); `async` blocks and `.await` are errors; nested items are left
//! alone; macro invocations are rewritten when they are the standard formatting,
//! assertion and `vec!` macros (their arguments are expressions), and otherwise left alone.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{BinOp, Block, Expr, ExprField, FieldValue, Ident, Member, Pat, Stmt, Token, Type};

use crate::ctxt::Ctxt;
use crate::effects::{self, Effect};
use crate::infer::{ty_of_type, Ty};
use crate::types;
use crate::{Knowledge, Stats};

/// What the macro knows about a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A handle.
    Handle,
    /// Not a handle (an ordinary value): field accesses stay as written.
    Plain,
    /// Not known: field accesses go through the tag dispatch.
    Unknown,
}

/// How an expression's result is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    /// A value (copied or moved out).
    Value,
    /// A place that is only read (method receiver, `&e`, base of an index or a field).
    Place,
    /// A place that may be changed (`&mut e`, mutating method receiver, assigned projection).
    PlaceMut,
    /// A method call's receiver; `true` if the method is a known mutating one.
    Receiver(bool),
}

impl Ctx {
    /// Whether the place may be changed.
    fn is_mut(self) -> bool {
        matches!(self, Ctx::PlaceMut | Ctx::Receiver(true))
    }
}

/// Methods that take `&mut self` on the standard types; a field used as their receiver is a
/// mutable place. (Any other method gets a read place; if it needs `&mut self` the compiler
/// says so.)
const MUTATING_METHODS: &[&str] = &[
    "push",
    "push_str",
    "push_back",
    "push_front",
    "pop",
    "pop_back",
    "pop_front",
    "insert",
    "remove",
    "clear",
    "truncate",
    "retain",
    "retain_mut",
    "drain",
    "append",
    "extend",
    "extend_from_slice",
    "dedup",
    "sort",
    "sort_by",
    "sort_by_key",
    "sort_unstable",
    "sort_unstable_by",
    "sort_unstable_by_key",
    "reverse",
    "fill",
    "swap",
    "rotate_left",
    "rotate_right",
    "copy_from_slice",
    "clone_from_slice",
    "take",
    "replace",
    "get_or_insert",
    "get_or_insert_with",
    "insert_entry",
    "entry",
    "iter_mut",
    "get_mut",
    "as_mut",
    "first_mut",
    "last_mut",
    "split_at_mut",
    "set",
    "add_assign",
    "sub_assign",
    "mul_assign",
    "div_assign",
];

/// Methods that take `self` or `&self` on the standard types (and the runtime's handles and
/// containers): a field of a known handle used as their receiver is read like a value, with
/// barrier elision, instead of through a write-back guard.
pub(crate) const READ_ONLY_METHODS: &[&str] = &[
    "unwrap",
    "expect",
    "unwrap_or",
    "unwrap_or_default",
    "unwrap_or_else",
    "is_some",
    "is_none",
    "is_some_and",
    "is_none_or",
    "map",
    "map_or",
    "and_then",
    "ok_or",
    "filter",
    "copied",
    "cloned",
    "clone",
    "as_ref",
    "len",
    "is_empty",
    "get",
    "try_get",
    "iter",
    "contains",
    "first",
    "last",
    "to_vec",
    "ptr_eq",
    "tx",
    "abs",
    "min",
    "max",
    "pow",
    "cmp",
    "partial_cmp",
    "eq",
    "ne",
    "to_string",
    "to_owned",
    "count_ones",
    "wrapping_add",
    "wrapping_sub",
    "checked_add",
    "checked_sub",
    "saturating_add",
    "saturating_sub",
];

/// Macros whose arguments are comma-separated expressions (format strings first).
pub(crate) const EXPR_MACROS: &[&str] = &[
    "print",
    "println",
    "eprint",
    "eprintln",
    "format",
    "format_args",
    "write",
    "writeln",
    "panic",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "unreachable",
    "todo",
    "unimplemented",
    "dbg",
    "vec",
    "matches",
];

/// The body rewriter for one transactional function.
pub(crate) struct Rewriter<'a> {
    cx: &'a Ctxt,
    knowledge: &'a Knowledge,
    /// The transaction binding (`__stm_tx`, hygienic).
    tx: Ident,
    scopes: Vec<HashMap<String, Kind>>,
    /// What whole-tree knowledge says about the bindings of each scope (empty for the macro).
    types: Vec<HashMap<String, Ty>>,
    /// Depth of `tx_safe!` nesting.
    safe_depth: usize,
    /// Counters.
    pub stats: Stats,
}

/// A hygienic local name for generated code.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A hygienic local name reported at the user's tokens (so that errors in generated code
/// point at the field access that produced it).
fn local_at(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// What replaces an expression the macro rejected, so that the error is not followed by
/// others about the same expression.
fn rejected() -> Expr {
    syn::parse_quote!(::core::unimplemented!())
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(cx: &'a Ctxt, knowledge: &'a Knowledge, tx: Ident) -> Self {
        Rewriter {
            cx,
            knowledge,
            tx,
            scopes: vec![HashMap::new()],
            types: vec![HashMap::new()],
            safe_depth: 0,
            stats: Stats::default(),
        }
    }

    /// Declares a binding (a parameter) before the body is rewritten.
    pub(crate) fn bind(&mut self, name: &str, kind: Kind) {
        self.scopes
            .last_mut()
            .expect("a scope")
            .insert(name.to_string(), kind);
    }

    /// Declares a binding whose type whole-tree knowledge infers: a handle gets direct
    /// barrier calls, anything else is plain.
    fn bind_typed(&mut self, name: &str, ty: Ty) {
        let kind = match ty {
            Ty::Handle(_) => Kind::Handle,
            _ => Kind::Plain,
        };
        self.bind(name, kind);
        self.stats.inferred += 1;
        if let Some(t) = self.types.last_mut() {
            t.insert(name.to_string(), ty);
        }
    }

    /// Records what knowledge says about a parameter's declared type (its kind is bound
    /// already).
    pub(crate) fn note_param_type(&mut self, name: &str, ty: &Type) {
        if self.knowledge.is_empty() {
            return;
        }
        if let Some(ty) = ty_of_type(ty, false) {
            if let Some(t) = self.types.last_mut() {
                t.insert(name.to_string(), ty);
            }
        }
    }

    /// The inferred type of a binding (of the scope that binds it: a shadowing binding of
    /// unknown type hides an outer typed one).
    fn ty_of(&self, name: &str) -> Option<&Ty> {
        for (i, s) in self.scopes.iter().enumerate().rev() {
            if s.contains_key(name) {
                return self.types.get(i)?.get(name);
            }
        }
        None
    }

    fn push_scope(&mut self) {
        self.scopes.push(HashMap::new());
        self.types.push(HashMap::new());
    }

    fn pop_scope(&mut self) {
        self.scopes.pop();
        self.types.pop();
    }

    /// The type of an expression by whole-tree knowledge (`None` without knowledge).
    fn infer(&self, e: &Expr) -> Option<Ty> {
        if self.knowledge.is_empty() {
            return None;
        }
        match e {
            Expr::Path(p) if p.qself.is_none() => {
                self.ty_of(&p.path.get_ident()?.to_string()).cloned()
            }
            Expr::Paren(p) => self.infer(&p.expr),
            Expr::Group(g) => self.infer(&g.expr),
            Expr::Field(f) => {
                let Member::Named(name) = &f.member else {
                    return None;
                };
                match self.infer(&f.base)? {
                    Ty::Handle(t) => self.knowledge.field_ty(&t, &name.to_string()),
                    _ => None,
                }
            }
            Expr::MethodCall(m) => {
                let method = m.method.to_string();
                match (self.infer(&m.receiver)?, method.as_str()) {
                    (Ty::OptHandle(t), "unwrap" | "expect") => Some(Ty::Handle(t)),
                    (Ty::Root(t), "get") if m.args.len() == 1 => Some(Ty::Handle(t)),
                    _ => None,
                }
            }
            Expr::Call(c) => match &*c.func {
                Expr::Path(p) if is_gc_new(&c.func) => match c.args.first() {
                    Some(Expr::Struct(s)) => s
                        .path
                        .segments
                        .last()
                        .map(|x| Ty::Handle(x.ident.to_string())),
                    _ => None,
                },
                Expr::Path(p) if p.qself.is_none() => self.knowledge.call_ty(&p.path),
                _ => None,
            },
            Expr::Struct(s) if self.is_known_object(&s.path) => s
                .path
                .segments
                .last()
                .map(|x| Ty::Handle(x.ident.to_string())),
            _ => None,
        }
    }

    /// After `pat` was bound against a scrutinee of type `scrutinee`: `Some(n)` on an option
    /// of a handle binds `n` as a handle.
    fn refine_pattern(&mut self, pat: &Pat, scrutinee: Option<Ty>) {
        let Some(Ty::OptHandle(t)) = scrutinee else {
            return;
        };
        if let Pat::Guard(g) = pat {
            return self.refine_pattern(&g.pat, Some(Ty::OptHandle(t)));
        }
        if let Pat::TupleStruct(ts) = pat {
            let is_some =
                ts.qself.is_none() && ts.path.segments.last().is_some_and(|s| s.ident == "Some");
            if let (true, 1, Some(Pat::Ident(pi))) = (is_some, ts.elems.len(), ts.elems.first()) {
                if pi.subpat.is_none() && pi.by_ref.is_none() {
                    self.bind_typed(&pi.ident.to_string(), Ty::Handle(t));
                }
            }
        }
    }

    fn kind_of(&self, name: &str) -> Kind {
        for s in self.scopes.iter().rev() {
            if let Some(k) = s.get(name) {
                return *k;
            }
        }
        Kind::Unknown
    }

    /// Rewrites a function body.
    pub(crate) fn body(&mut self, block: &mut Block) {
        self.stmts(&mut block.stmts);
    }

    fn block(&mut self, block: &mut Block) {
        self.push_scope();
        self.stmts(&mut block.stmts);
        self.pop_scope();
    }

    fn stmts(&mut self, stmts: &mut [Stmt]) {
        for stmt in stmts.iter_mut() {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &mut Stmt) {
        match stmt {
            Stmt::Local(local) => {
                let declared = match &local.pat {
                    Pat::Type(pt) => Some(kind_of_type(&pt.ty)),
                    _ => None,
                };
                let mut init_kind = Kind::Unknown;
                let mut init_ty = None;
                if let Some(init) = &mut local.init {
                    init_kind = self.kind_of_init(&init.expr);
                    init_ty = self.infer(&init.expr);
                    self.expr(&mut init.expr, Ctx::Value);
                    if let Some((_, diverge)) = &mut init.diverge {
                        self.expr(diverge, Ctx::Value);
                    }
                }
                let kind = declared.unwrap_or(init_kind);
                match &local.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                        let name = pi.ident.to_string();
                        match init_ty {
                            // Knowledge fills in what the text does not say.
                            Some(ty) if kind == Kind::Unknown => self.bind_typed(&name, ty),
                            Some(ty) if kind == Kind::Handle => {
                                self.bind(&name, kind);
                                if let Some(t) = self.types.last_mut() {
                                    t.insert(name, ty);
                                }
                            }
                            _ => self.bind(&name, kind),
                        }
                    }
                    Pat::Type(pt) => match &*pt.pat {
                        Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                            self.bind(&pi.ident.to_string(), kind)
                        }
                        other => self.bind_pattern(other),
                    },
                    other => {
                        self.bind_pattern(other);
                        self.refine_pattern(other, init_ty);
                    }
                }
            }
            Stmt::Item(_) => {}
            Stmt::Expr(e, _) => self.expr(e, Ctx::Value),
            Stmt::Macro(m) => {
                let mut e = Expr::Macro(syn::ExprMacro {
                    attrs: m.attrs.clone(),
                    mac: m.mac.clone(),
                });
                if self.macro_expr(&mut e) {
                    *stmt = Stmt::Expr(e, m.semi_token.or_else(|| Some(Token![;](m.span()))));
                }
            }
        }
    }

    /// Binds every identifier of a pattern as unknown (a pattern's bindings have types the
    /// macro cannot see).
    pub(crate) fn bind_pattern(&mut self, pat: &Pat) {
        let mut names = Vec::new();
        pattern_idents(pat, &mut names);
        for n in names {
            let kind = match pat {
                Pat::Type(pt) => kind_of_type(&pt.ty),
                _ => Kind::Unknown,
            };
            self.bind(&n, kind);
        }
    }

    fn kind_of_init(&self, e: &Expr) -> Kind {
        match e {
            Expr::Call(c) if is_gc_new(&c.func) => Kind::Handle,
            Expr::Struct(s) if self.is_known_object(&s.path) => Kind::Handle,
            Expr::Path(p) if p.path.get_ident().is_some() => {
                self.kind_of(&p.path.get_ident().expect("ident").to_string())
            }
            Expr::Lit(_)
            | Expr::Array(_)
            | Expr::Repeat(_)
            | Expr::Tuple(_)
            | Expr::Struct(_)
            | Expr::Range(_)
            | Expr::Reference(_)
            | Expr::Closure(_) => Kind::Plain,
            Expr::Macro(m) => {
                let name = m.mac.path.segments.last().map(|s| s.ident.to_string());
                if matches!(name.as_deref(), Some("vec" | "format")) {
                    Kind::Plain
                } else {
                    Kind::Unknown
                }
            }
            Expr::Paren(p) => self.kind_of_init(&p.expr),
            _ => Kind::Unknown,
        }
    }

    fn is_known_object(&self, path: &syn::Path) -> bool {
        path.segments
            .last()
            .is_some_and(|s| self.knowledge.is_object(&s.ident.to_string()))
    }

    /// Runs `f` in a scope of its own (a branch, a loop body, a closure).
    fn branch(&mut self, f: impl FnOnce(&mut Self)) {
        self.push_scope();
        f(self);
        self.pop_scope();
    }

    fn expr(&mut self, e: &mut Expr, ctx: Ctx) {
        match e {
            Expr::Field(_) => self.field(e, ctx),
            Expr::Assign(a) => {
                self.expr(&mut a.right, Ctx::Value);
                if let Some(new) = self.assign(&mut a.left, None, &mut a.right) {
                    *e = new;
                }
            }
            Expr::Binary(b) if is_assign_op(&b.op) => {
                self.expr(&mut b.right, Ctx::Value);
                let op = b.op;
                if let Some(new) = self.assign(&mut b.left, Some(op), &mut b.right) {
                    *e = new;
                }
            }
            Expr::Binary(b) => {
                self.expr(&mut b.left, Ctx::Value);
                self.expr(&mut b.right, Ctx::Value);
            }
            // `*e`, `-e`, `!e`: the operand is a value (a deref'd reference is not a field).
            Expr::Unary(u) => self.expr(&mut u.expr, Ctx::Value),
            Expr::Reference(r) => {
                let inner = if r.mutability.is_some() {
                    Ctx::PlaceMut
                } else {
                    Ctx::Place
                };
                self.expr(&mut r.expr, inner);
            }
            Expr::RawAddr(r) => {
                if let Expr::Field(f) = &*r.expr {
                    if !self.base_is_plain(&f.base) {
                        self.cx.error_spanned_by(
                            &r.expr,
                            "cannot take a raw pointer to a field that may belong to a shared \
                             object: objects are only reached through barriers. Copy the \
                             field into a local first (or give the binding a type if it is \
                             an ordinary struct)",
                        );
                        return;
                    }
                }
                self.expr(&mut r.expr, Ctx::PlaceMut);
            }
            Expr::Index(i) => {
                let base = if ctx.is_mut() {
                    Ctx::PlaceMut
                } else {
                    Ctx::Place
                };
                self.expr(&mut i.expr, base);
                self.expr(&mut i.index, Ctx::Value);
            }
            Expr::Paren(p) => self.expr(&mut p.expr, ctx),
            Expr::Group(g) => self.expr(&mut g.expr, ctx),
            Expr::Cast(c) => self.expr(&mut c.expr, Ctx::Value),
            Expr::MethodCall(m) => {
                let name = m.method.to_string();
                let effect = effects::of_method_call(m);
                if let Effect::Forbidden(_) = effect {
                    if self.safe_depth == 0 {
                        self.effect(m.method.span(), effect);
                        *e = rejected();
                        return;
                    }
                }
                let recv = if READ_ONLY_METHODS.contains(&name.as_str()) {
                    Ctx::Place
                } else {
                    Ctx::Receiver(MUTATING_METHODS.contains(&name.as_str()))
                };
                self.expr(&mut m.receiver, recv);
                for a in m.args.iter_mut() {
                    self.expr(a, Ctx::Value);
                }
                if self.safe_depth == 0 && effect == Effect::Irreversible {
                    *e = self.inevitable_before(e.clone());
                }
            }
            Expr::Call(c) => {
                if is_gc_new(&c.func) {
                    *e = self.allocation(c).unwrap_or_else(rejected);
                    return;
                }
                let effect = match &*c.func {
                    Expr::Path(p) => effects::of_call(&p.path, &c.args),
                    _ => Effect::None,
                };
                if let Effect::Forbidden(_) = effect {
                    if self.safe_depth == 0 {
                        self.effect(c.func.span(), effect);
                        *e = rejected();
                        return;
                    }
                }
                self.expr(&mut c.func, Ctx::Value);
                for a in c.args.iter_mut() {
                    self.expr(a, Ctx::Value);
                }
                if self.effect(c.func.span(), effect) {
                    *e = self.inevitable_before(e.clone());
                }
            }
            Expr::Struct(s) => {
                if s.qself.is_none() && self.is_known_object(&s.path) {
                    let mut call: syn::ExprCall = syn::parse_quote!(Gc::new(#s));
                    *e = self.allocation(&mut call).unwrap_or_else(rejected);
                    return;
                }
                self.struct_fields(&mut s.fields);
                if let Some(rest) = &mut s.rest {
                    self.expr(rest, Ctx::Value);
                }
            }
            Expr::Tuple(t) => t.elems.iter_mut().for_each(|x| self.expr(x, Ctx::Value)),
            Expr::Array(a) => a.elems.iter_mut().for_each(|x| self.expr(x, Ctx::Value)),
            Expr::Repeat(r) => self.expr(&mut r.expr, Ctx::Value),
            Expr::Range(r) => {
                if let Some(x) = &mut r.start {
                    self.expr(x, Ctx::Value);
                }
                if let Some(x) = &mut r.end {
                    self.expr(x, Ctx::Value);
                }
            }
            Expr::Block(b) => self.block(&mut b.block),
            Expr::Unsafe(u) => self.block(&mut u.block),
            Expr::Const(_) => {}
            Expr::TryBlock(t) => self.block(&mut t.block),
            Expr::If(i) => {
                // The condition's `let` patterns bind names for the `then` branch only.
                self.push_scope();
                self.condition(&mut i.cond);
                self.block(&mut i.then_branch);
                self.pop_scope();
                if let Some((_, els)) = &mut i.else_branch {
                    self.branch(|s| s.expr(els, Ctx::Value));
                }
            }
            Expr::Let(l) => {
                // Outside an `if`/`while` condition (a `let` chain): rewrite the scrutinee,
                // bind the pattern in the current scope.
                let ty = self.infer(&l.expr);
                self.expr(&mut l.expr, Ctx::Place);
                self.bind_pattern(&l.pat);
                self.refine_pattern(&l.pat, ty);
            }
            Expr::While(w) => self.branch(|s| {
                s.condition(&mut w.cond);
                s.block(&mut w.body);
            }),
            Expr::Loop(l) => self.branch(|s| s.block(&mut l.body)),
            Expr::ForLoop(f) => {
                self.expr(&mut f.expr, Ctx::Value);
                self.branch(|s| {
                    s.bind_pattern(&f.pat);
                    s.block(&mut f.body);
                });
            }
            Expr::Match(m) => {
                let ty = self.infer(&m.expr);
                self.expr(&mut m.expr, Ctx::Place);
                for arm in m.arms.iter_mut() {
                    self.branch(|s| {
                        s.bind_pattern(&arm.pat);
                        s.refine_pattern(&arm.pat, ty.clone());
                        if let Pat::Guard(g) = &mut arm.pat {
                            s.expr(&mut g.guard, Ctx::Value);
                        }
                        s.expr(&mut arm.body, Ctx::Value);
                    });
                }
            }
            Expr::Closure(c) => {
                if c.asyncness.is_some() {
                    self.cx.error_spanned_by(
                        c.asyncness,
                        "async closures cannot run inside a transaction: a transaction \
                         cannot be suspended; do the async work outside it",
                    );
                    return;
                }
                self.branch(|s| {
                    for input in c.inputs.iter() {
                        s.bind_pattern(input);
                    }
                    s.expr(&mut c.body, Ctx::Value);
                });
            }
            Expr::Async(a) => {
                self.cx.error_spanned_by(
                    a.async_token,
                    "async blocks cannot run inside a transaction: a transaction cannot be \
                     suspended across `.await`; do the async work outside it",
                );
            }
            Expr::Await(a) => {
                self.cx.error_spanned_by(
                    a.await_token,
                    "`.await` inside a transaction: a transaction cannot be suspended; await \
                     outside the transactional function",
                );
            }
            Expr::Return(r) => {
                if let Some(x) = &mut r.expr {
                    self.expr(x, Ctx::Value);
                }
            }
            Expr::Break(b) => {
                if let Some(x) = &mut b.expr {
                    self.expr(x, Ctx::Value);
                }
            }
            Expr::Yield(y) => {
                if let Some(x) = &mut y.expr {
                    self.expr(x, Ctx::Value);
                }
            }
            Expr::Try(t) => self.expr(&mut t.expr, Ctx::Value),
            Expr::Macro(_) => {
                self.macro_expr(e);
            }
            _ => {}
        }
    }

    /// An `if`/`while` condition, binding `let` patterns for the body.
    fn condition(&mut self, cond: &mut Expr) {
        match cond {
            Expr::Let(l) => {
                let ty = self.infer(&l.expr);
                self.expr(&mut l.expr, Ctx::Place);
                self.bind_pattern(&l.pat);
                self.refine_pattern(&l.pat, ty);
            }
            Expr::Binary(b) if matches!(b.op, BinOp::And(_)) => {
                self.condition(&mut b.left);
                self.condition(&mut b.right);
            }
            other => self.expr(other, Ctx::Value),
        }
    }

    fn struct_fields(&mut self, fields: &mut Punctuated<FieldValue, Token![,]>) {
        for fv in fields.iter_mut() {
            if fv.colon_token.is_none() {
                // Shorthand `Point { x }`: the value is the binding `x`; nothing to rewrite.
                continue;
            }
            self.expr(&mut fv.expr, Ctx::Value);
        }
    }

    /// Whether `base` is a binding known to be an ordinary value.
    fn base_is_plain(&self, base: &Expr) -> bool {
        match base {
            Expr::Path(p) => match p.path.get_ident() {
                Some(id) => self.kind_of(&id.to_string()) == Kind::Plain,
                None => p.path.is_ident("self"),
            },
            Expr::Paren(p) => self.base_is_plain(&p.expr),
            _ => false,
        }
    }

    /// The known handle binding `base` names, if any.
    fn base_handle(&self, base: &Expr) -> Option<Ident> {
        match base {
            Expr::Path(p) if p.qself.is_none() => {
                let id = p.path.get_ident()?;
                (self.kind_of(&id.to_string()) == Kind::Handle).then(|| id.clone())
            }
            Expr::Paren(p) => self.base_handle(&p.expr),
            _ => None,
        }
    }

    fn field(&mut self, e: &mut Expr, ctx: Ctx) {
        let Expr::Field(ExprField { base, member, .. }) = e else {
            unreachable!()
        };
        let name = match member {
            Member::Named(n) => n.clone(),
            Member::Unnamed(_) => {
                // `x.0`: objects have named fields only, so this is a tuple (or a tuple
                // struct); its base is a place of the same kind.
                self.expr(base, ctx);
                return;
            }
        };
        if self.base_is_plain(base) {
            return;
        }
        let span = name.span();
        let stm = Ident::new("__stm", span);
        if let Some(h) = self.base_handle(base) {
            let new: Expr = match ctx {
                Ctx::Receiver(_) => {
                    // A method receiver: a write-back guard, written back only if the method
                    // borrows it mutably (`DerefMut`), so that any `&mut self` method works.
                    self.stats.read_barriers += 1;
                    syn::parse_quote_spanned!(span=> (*#stm::place(#h, #stm::field!(#h, #name))))
                }
                Ctx::PlaceMut => {
                    self.stats.read_barriers += 1;
                    self.stats.write_barriers += 1;
                    syn::parse_quote_spanned!(span=> (*#stm::place(#h, #stm::field!(#h, #name)).__stm_place_mut()))
                }
                Ctx::Value => {
                    self.stats.read_barriers += 1;
                    syn::parse_quote_spanned!(span=> #stm::read(#h, #stm::field!(#h, #name)))
                }
                Ctx::Place => {
                    self.stats.read_barriers += 1;
                    syn::parse_quote_spanned!(span=> (*#stm::ReadOnly(#stm::read(#h, #stm::field!(#h, #name))).__stm_place()))
                }
            };
            *e = new;
            return;
        }
        // Unknown base: tag dispatch.
        let inner = if ctx.is_mut() {
            Ctx::PlaceMut
        } else {
            Ctx::Place
        };
        self.expr(base, inner);
        let k = local_at("__k", span);
        let p = local_at("__p", span);
        let r = local_at("__r", span);
        let new: Expr = if ctx == Ctx::Receiver(true) {
            // The receiver of a known mutating method: the guard itself, so that the method's
            // own receiver decides between `Deref` (no write-back) and `DerefMut`.
            self.stats.read_barriers += 1;
            self.stats.write_barriers += 1;
            syn::parse_quote_spanned!(span=>
                (*match #base.__stm_wkind() {
                    #k => {
                        let #p = #stm::field!(#k, #name);
                        #k.place(|#r| &mut #r.#name, #p)
                    }
                })
            )
        } else if ctx.is_mut() {
            self.stats.read_barriers += 1;
            self.stats.write_barriers += 1;
            syn::parse_quote_spanned!(span=>
                (*match #base.__stm_wkind() {
                    #k => {
                        let #p = #stm::field!(#k, #name);
                        #k.place(|#r| &mut #r.#name, #p)
                    }
                }.__stm_place_mut())
            )
        } else {
            self.stats.read_barriers += 1;
            syn::parse_quote_spanned!(span=>
                (*match #stm::Recv(&#base).__stm_rkind() {
                    #k => #k.read(|#r| &#r.#name, #stm::field!(#k, #name)),
                }.__stm_place())
            )
        };
        *e = new;
    }

    /// Rewrites an assignment (`op` is `None` for `=`). Returns the replacement expression
    /// when the target is a field that may belong to an object; otherwise rewrites the target
    /// as a mutable place in place and returns `None`.
    fn assign(&mut self, left: &mut Expr, op: Option<BinOp>, right: &mut Expr) -> Option<Expr> {
        let (base, name) = match left {
            Expr::Field(ExprField {
                base,
                member: Member::Named(name),
                ..
            }) if !self.base_is_plain(base) => (base, name.clone()),
            _ => {
                self.expr(left, Ctx::PlaceMut);
                return None;
            }
        };
        let span = name.span();
        let stm = Ident::new("__stm", span);
        let v = local_at("__v", span);
        let t = local_at("__t", span);
        let k = local_at("__k", span);
        let p = local_at("__p", span);
        let r = local_at("__r", span);
        let simple = matches!(&*right, Expr::Lit(_) | Expr::Path(_));
        let value: TokenStream = if simple {
            right.to_token_stream()
        } else {
            v.to_token_stream()
        };
        let wrap = |body: TokenStream| -> Expr {
            if simple {
                syn::parse_quote_spanned!(span=> #body)
            } else {
                syn::parse_quote_spanned!(span=> match (#right) { #v => #body })
            }
        };
        let op_tokens = op.map(|o| o.to_token_stream());
        self.stats.write_barriers += 1;
        if op_tokens.is_some() {
            self.stats.read_barriers += 1;
        }
        if let Some(h) = self.base_handle(base) {
            let body = match &op_tokens {
                None => quote_spanned!(span=> #stm::write(#h, #stm::field!(#h, #name), #value)),
                Some(op) => {
                    quote_spanned!(span=> #stm::update(#h, #stm::field!(#h, #name), |#t| *#t #op #value))
                }
            };
            return Some(wrap(body));
        }
        self.expr(base, Ctx::PlaceMut);
        let body = match &op_tokens {
            None => quote_spanned!(span=>
                match #base.__stm_wkind() {
                    #k => {
                        let #p = #stm::field!(#k, #name);
                        #k.assign(|#r| &mut #r.#name, #p, #value)
                    }
                }
            ),
            Some(op) => quote_spanned!(span=>
                match #base.__stm_wkind() {
                    #k => {
                        let #p = #stm::field!(#k, #name);
                        #k.update(|#r| &mut #r.#name, #p, move |#t| *#t #op #value)
                    }
                }
            ),
        };
        Some(wrap(body))
    }

    /// `Gc::new(T { .. })`: allocation of an object, its handle fields stored from handles of
    /// this transaction (by the runtime's `new_object!`, which holds the `unsafe`).
    fn allocation(&mut self, call: &mut syn::ExprCall) -> Option<Expr> {
        let span = call.func.span();
        if call.args.len() != 1 {
            self.cx.error_spanned_by(
                &*call,
                "`Gc::new` takes one struct literal of an #[stm::object] type: \
                 `Gc::new(Node { key: 1, next: None })`",
            );
            return None;
        }
        let Some(Expr::Struct(s)) = call.args.first_mut() else {
            self.cx.error_spanned_by(
                &call.args,
                "`Gc::new` takes a struct literal of an #[stm::object] type, written out \
                 here (`Gc::new(Node { key: 1, next: None })`): object values exist only in \
                 the shared heap",
            );
            return None;
        };
        if let Some(rest) = &s.rest {
            self.cx.error_spanned_by(
                rest,
                "`..base` is not supported when allocating an object: write every field \
                 (object values exist only in the heap, so there is no value to copy from)",
            );
            return None;
        }
        if let Some(q) = &s.qself {
            self.cx.error_spanned_by(
                q.lt_token,
                "write the object type by its name when allocating (`Gc::new(Node { .. })`)",
            );
            return None;
        }
        self.stats.allocations += 1;
        let stm = local("__stm");
        let tx = self.tx.clone();
        let mut fields = Vec::new();
        for fv in s.fields.iter_mut() {
            let member = fv.member.clone();
            let Member::Named(n) = &member else {
                self.cx
                    .error_spanned_by(&member, "objects have named fields only");
                continue;
            };
            if fv.colon_token.is_some() {
                self.expr(&mut fv.expr, Ctx::Value);
            }
            let value = &fv.expr;
            fields.push(quote!(#n: #value));
        }
        let path = &s.path;
        let alloc = quote::quote_spanned!(span=>
            #stm::new_object!(#tx, [#path] { #(#fields,)* })
        );
        // The user's `Gc` path (`Gc`, `stm::Gc`) stays in the output, so that its import is
        // not reported unused once `Gc::new` is gone.
        let gc = match &*call.func {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() >= 2 => {
                let mut gc = p.path.clone();
                gc.segments.pop();
                gc.segments.pop_punct();
                if let Some(last) = gc.segments.last_mut() {
                    last.arguments = syn::PathArguments::None;
                }
                Some(gc)
            }
            _ => None,
        };
        Some(match gc {
            Some(gc) => syn::parse_quote_spanned!(span=> {
                let _: ::core::marker::PhantomData<#gc<'static, ()>>;
                #alloc
            }),
            None => syn::parse_quote!(#alloc),
        })
    }

    /// Records the effect of a call; returns whether the transaction must become inevitable
    /// before it.
    fn effect(&mut self, span: Span, effect: Effect) -> bool {
        if self.safe_depth > 0 {
            return false;
        }
        match effect {
            Effect::None => false,
            Effect::Irreversible => true,
            Effect::Forbidden(msg) => {
                self.cx.syn_error(syn::Error::new(span, msg));
                false
            }
        }
    }

    fn inevitable_before(&mut self, e: Expr) -> Expr {
        self.stats.inevitable_points += 1;
        let stm = local("__stm");
        let tx = &self.tx;
        let span = e.span();
        syn::parse_quote_spanned!(span=> { #stm::inevitable(#tx); #e })
    }

    /// Rewrites a macro invocation in place; returns whether it changed.
    fn macro_expr(&mut self, e: &mut Expr) -> bool {
        let Expr::Macro(m) = e else { return false };
        let path = m.mac.path.clone();
        if effects::is_tx(&path) {
            if !m.mac.tokens.is_empty() {
                self.cx
                    .error_spanned_by(&m.mac.tokens, "`tx!()` takes no arguments");
            }
            let tx = &self.tx;
            *e = syn::parse_quote_spanned!(path.span()=> #tx);
            return true;
        }
        if effects::is_tx_safe(&path) {
            let inner: Option<Expr> = if m.mac.tokens.is_empty() {
                None
            } else {
                match syn::parse2::<Expr>(m.mac.tokens.clone()) {
                    Ok(x) => Some(x),
                    Err(err) => {
                        self.cx.syn_error(err);
                        *e = rejected();
                        return true;
                    }
                }
            };
            let Some(mut inner) = inner else {
                self.cx.error_spanned_by(
                    &m.mac,
                    "`tx_safe!` needs the call it declares safe: `stm::tx_safe!(log.lock())`",
                );
                *e = rejected();
                return true;
            };
            if !has_call(&inner) {
                self.cx.error_spanned_by(
                    &inner,
                    "`tx_safe!` declares calls transaction-safe, but this expression calls \
                     nothing: remove `tx_safe!` (field accesses get barriers anyway)",
                );
                *e = rejected();
                return true;
            }
            self.safe_depth += 1;
            self.expr(&mut inner, Ctx::Value);
            self.safe_depth -= 1;
            *e = syn::parse_quote_spanned!(inner.span()=> (#inner));
            return true;
        }
        let effect = effects::of_macro(&path);
        let inevitable = self.effect(path.span(), effect);
        let name = path.segments.last().map(|s| s.ident.to_string());
        let mut changed = false;
        if let Some(name) = name.filter(|n| EXPR_MACROS.contains(&n.as_str())) {
            if let Some(tokens) = self.macro_args(&name, m.mac.tokens.clone()) {
                m.mac.tokens = tokens;
                changed = true;
            }
        }
        if inevitable {
            *e = self.inevitable_before(e.clone());
            changed = true;
        }
        changed
    }

    /// Rewrites the expression arguments of a standard macro; `None` if they do not parse as
    /// expressions (then the macro is left alone).
    fn macro_args(&mut self, name: &str, tokens: TokenStream) -> Option<TokenStream> {
        use syn::parse::Parser;
        if name == "vec" {
            // `vec![x; n]`
            let semi = |input: syn::parse::ParseStream<'_>| {
                let a: Expr = input.parse()?;
                input.parse::<Token![;]>()?;
                let b: Expr = input.parse()?;
                Ok((a, b))
            };
            if let Ok((mut a, mut b)) = semi.parse2(tokens.clone()) {
                self.expr(&mut a, Ctx::Value);
                self.expr(&mut b, Ctx::Value);
                return Some(quote!(#a; #b));
            }
        }
        if name == "matches" {
            // `matches!(expr, pattern)`: only the scrutinee is an expression.
            let scrutinee = |input: syn::parse::ParseStream<'_>| {
                let e: Expr = input.parse()?;
                let rest: TokenStream = input.parse()?;
                Ok((e, rest))
            };
            let (mut e, rest) = scrutinee.parse2(tokens).ok()?;
            self.expr(&mut e, Ctx::Place);
            return Some(quote!(#e #rest));
        }
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        let mut args = parser.parse2(tokens).ok()?;
        for a in args.iter_mut() {
            match a {
                // `name = value` in format arguments.
                Expr::Assign(assign) if matches!(&*assign.left, Expr::Path(_)) => {
                    self.expr(&mut assign.right, Ctx::Value)
                }
                other => self.expr(other, Ctx::Value),
            }
        }
        Some(args.to_token_stream())
    }
}

pub(crate) fn is_assign_op(op: &BinOp) -> bool {
    matches!(
        op,
        BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_)
            | BinOp::RemAssign(_)
            | BinOp::BitXorAssign(_)
            | BinOp::BitAndAssign(_)
            | BinOp::BitOrAssign(_)
            | BinOp::ShlAssign(_)
            | BinOp::ShrAssign(_)
    )
}

/// `Gc::new` (any prefix: `stm::Gc::new`).
pub(crate) fn is_gc_new(func: &Expr) -> bool {
    let Expr::Path(p) = func else { return false };
    let segs: Vec<_> = p.path.segments.iter().collect();
    segs.len() >= 2 && segs[segs.len() - 1].ident == "new" && segs[segs.len() - 2].ident == "Gc"
}

/// What a declared type says about a binding.
pub(crate) fn kind_of_type(ty: &Type) -> Kind {
    match ty {
        Type::Infer(_) => Kind::Unknown,
        Type::Paren(p) => kind_of_type(&p.elem),
        Type::Group(g) => kind_of_type(&g.elem),
        t if types::is_gc(t) => Kind::Handle,
        Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Self") => Kind::Plain,
        Type::ImplTrait(_) => Kind::Unknown,
        // A reference to a handle: the dispatch copies the handle out.
        Type::Reference(r) if kind_of_type(&r.elem) != Kind::Plain => Kind::Unknown,
        _ => Kind::Plain,
    }
}

fn pattern_idents(pat: &Pat, out: &mut Vec<String>) {
    let mut bindings = Vec::new();
    binding_idents(pat, &mut bindings);
    out.extend(bindings.into_iter().map(|(name, _)| name));
}

/// The bindings of a pattern (of every alternative of an or-pattern), with whether each is
/// `mut`.
pub(crate) fn binding_idents(pat: &Pat, out: &mut Vec<(String, bool)>) {
    match pat {
        Pat::Ident(p) => {
            out.push((p.ident.to_string(), p.mutability.is_some()));
            if let Some((_, sub)) = &p.subpat {
                binding_idents(sub, out);
            }
        }
        Pat::Or(p) => p.cases.iter().for_each(|c| binding_idents(c, out)),
        Pat::Paren(p) => binding_idents(&p.pat, out),
        Pat::Reference(p) => binding_idents(&p.pat, out),
        Pat::Slice(p) => p.elems.iter().for_each(|c| binding_idents(c, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| binding_idents(&f.pat, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|c| binding_idents(c, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|c| binding_idents(c, out)),
        Pat::Type(p) => binding_idents(&p.pat, out),
        Pat::Guard(p) => binding_idents(&p.pat, out),
        _ => {}
    }
}

/// Whether an expression contains a call of any kind (for `tx_safe!`).
fn has_call(e: &Expr) -> bool {
    use syn::visit::Visit;
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_call(&mut self, _: &'ast syn::ExprCall) {
            self.0 = true;
        }
        fn visit_expr_method_call(&mut self, _: &'ast syn::ExprMethodCall) {
            self.0 = true;
        }
        fn visit_expr_macro(&mut self, _: &'ast syn::ExprMacro) {
            self.0 = true;
        }
    }
    let mut f = Finder(false);
    f.visit_expr(e);
    f.0
}
