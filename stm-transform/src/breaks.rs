//! `#[in_transactions]`: a function that runs *in* transactions, cut at break points, rather
//! than *as* one transaction (PyPy-STM's model for long-running code).
//!
//! # What the code means
//!
//! * The function's straight-line code runs outside any transaction (when the caller is
//!   outside one): it may set things up, spawn threads, block and do I/O. It reaches the shared
//!   heap through `#[transactional]` functions or `stm::atomically`, each one transaction.
//! * Each **loop** of that code runs in transactions: one iteration is atomic, and its
//!   back-edge is a **break point**, where the runtime commits the running transaction and
//!   starts the next once the thread's budget of iterations is spent (or at once after an
//!   iteration that did I/O, which made the transaction inevitable). Inside a loop the body is
//!   transactional code: barriers, `tx!()`, I/O made inevitable, blocking calls rejected.
//! * A loop (or block) marked `#[stm::atomic]` is one transaction: no break inside.
//! * A loop that blocks or spawns threads (by the names the macro knows, as for
//!   `#[transactional]`) cannot be in a transaction: it stays an ordinary loop, and the loops
//!   inside it are considered the same way. So do closures: their loops get break points too.
//! * Called inside a transaction (an atomic block, a `#[transactional]` caller), the loops run
//!   in that transaction and never break: atomicity nests.
//!
//! # Soundness across break points
//!
//! A loop becomes a call of `__private::loop_in_transactions(state, step)`: `step` is the
//! iteration as a closure `|tx, state| -> (state, ControlFlow<Exit>)`. The state is the
//! loop's **carried locals** (every `mut` binding in scope that the loop mentions, plus a
//! `for` loop's iterator): it is a type chosen outside the transactions, so it cannot hold a
//! `Gc` handle (handles belong to one transaction); and it must be `Clone`, because after an
//! abort the runtime restarts the loop at its last break point with the state copied there.
//! The loop's `break`, `continue`, `return` and `?` become exits of the step.

use std::collections::{BTreeMap, HashSet};

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Block, Expr, FnArg, Item, Pat, ReturnType, Stmt};

use crate::attr::{self, Args};
use crate::ctxt::Ctxt;
use crate::effects::{self, Effect};
use crate::rewrite::{
    binding_idents, is_assign_op, kind_of_type, Kind, Rewriter, EXPR_MACROS, READ_ONLY_METHODS,
};
use crate::transactional::{check_sig_as, finish, lint_allowances};
use crate::types;
use crate::{Expansion, Knowledge, Stats};

pub(crate) fn expand(knowledge: &Knowledge, attr: TokenStream, item: TokenStream) -> Expansion {
    let cx = Ctxt::new();
    let args = attr::parse_args(&cx, "in_transactions", attr);
    let mut stats = Stats::default();
    let mut f: syn::ItemFn = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(f)) => f,
        Ok(other) => {
            cx.error_spanned_by(
                other_head(&other),
                "#[stm::in_transactions] goes on functions (free functions and methods): it \
                 makes their loops run as series of transactions",
            );
            return finish(cx, item, stats);
        }
        Err(e) => {
            cx.syn_error(e);
            return finish(cx, item, stats);
        }
    };
    if !check_sig_as(&cx, &f.sig, "run in transactions") {
        return finish(cx, item, stats);
    }
    if !check_no_handles(&cx, &f.sig) {
        // Reported; the body would only add rustc's errors about the handles.
        *f.block = syn::parse_quote!({ ::core::unimplemented!() });
        return finish(cx, f.into_token_stream(), stats);
    }
    transform(&cx, knowledge, &args, &mut f.sig, &mut f.block, &mut stats);
    f.attrs.push(lint_allowances());
    let out = f.into_token_stream();
    finish(cx, out, stats)
}

fn other_head(item: &Item) -> TokenStream {
    match item {
        Item::Struct(s) => s.struct_token.into_token_stream(),
        Item::Enum(e) => e.enum_token.into_token_stream(),
        Item::Impl(i) => i.impl_token.into_token_stream(),
        Item::Mod(m) => m.mod_token.into_token_stream(),
        Item::Trait(t) => t.trait_token.into_token_stream(),
        other => other.to_token_stream(),
    }
}

/// A function whose transactions end at its break points cannot take or return handles.
pub(crate) fn check_no_handles(cx: &Ctxt, sig: &syn::Signature) -> bool {
    let mut ok = true;
    for input in &sig.inputs {
        if let FnArg::Typed(pt) = input {
            if types::mentions_gc(&pt.ty) || types::is_tx_ref(&pt.ty) {
                cx.error_spanned_by(
                    &pt.ty,
                    "a function that runs in transactions cannot take a handle or a `&Tx`: \
                     its transactions end at its break points, and a handle lives in one \
                     transaction. Pass a `Root<T>` (`tx.root(handle)`), or make the function \
                     #[stm::transactional] to run it inside its caller's transaction",
                );
                ok = false;
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if types::mentions_gc(ty) {
            cx.error_spanned_by(
                ty,
                "a function that runs in transactions cannot return a handle: it would \
                 outlive its transaction. Return a `Root<T>` (`tx.root(handle)`)",
            );
            ok = false;
        }
    }
    ok
}

/// Turns the loops of a function body into series of transactions. Shared with
/// `stm-rewrite --all-functions`, which applies it to functions that start their own
/// transactions and have loops.
pub(crate) fn transform(
    cx: &Ctxt,
    knowledge: &Knowledge,
    args: &Args,
    sig: &mut syn::Signature,
    block: &mut Block,
    stats: &mut Stats,
) {
    let rt = &args.runtime;
    let mut walker = Walker {
        cx,
        knowledge,
        args,
        scopes: vec![Vec::new()],
        local_macros: HashSet::new(),
        params: Vec::new(),
        stats: Stats::default(),
    };
    for input in sig.inputs.iter() {
        match input {
            FnArg::Receiver(r) => {
                // `&mut self` and `mut self` are state outside the heap that a loop cannot
                // carry (a closure cannot bind `self`).
                let outside = r.mutability.is_some()
                    || matches!(r.kind, syn::ReceiverKind::Reference(_, _, Some(_)));
                walker.declare_binding("self", false, outside);
                walker.params.push(("self".into(), Kind::Plain));
            }
            FnArg::Typed(pt) => {
                let mut names = Vec::new();
                binding_idents(&pt.pat, &mut names);
                let mut_ref = is_mut_ref(&pt.ty);
                for (name, is_mut) in names {
                    walker.declare_binding(&name, is_mut, mut_ref);
                    walker.params.push((name, kind_of_type(&pt.ty)));
                }
            }
        }
    }
    walker.block_stmts(&mut block.stmts);
    *stats += walker.stats;
    stats.functions += 1;
    let stm = syn::Ident::new("__stm", Span::mixed_site());
    let stmts = &block.stmts;
    let span = block.brace_token.span.join();
    *block = syn::parse_quote_spanned! {span=> {
        #[allow(unused_imports)]
        use #rt::__private::{
            self as #stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
        };
        #(#stmts)*
    }};
}

/// Walks the code that runs outside transactions, looking for loops.
struct Walker<'a> {
    cx: &'a Ctxt,
    knowledge: &'a Knowledge,
    args: &'a Args,
    /// Bindings in scope, innermost last.
    scopes: Vec<Vec<Binding>>,
    /// `macro_rules!` macros defined in the function: their bodies may change locals
    /// unseen.
    local_macros: HashSet<String>,
    /// The function's parameters and their kinds (for the barrier rewriter).
    params: Vec<(String, Kind)>,
    stats: Stats,
}

impl Walker<'_> {
    fn declare_binding(&mut self, name: &str, is_mut: bool, outside: bool) {
        self.scopes.last_mut().expect("a scope").push(Binding {
            name: name.to_string(),
            is_mut,
            outside,
        });
    }

    /// Declares the bindings of a pattern; `outside` if they are `&mut` references (their
    /// referents live outside the function's locals).
    fn declare_pat_as(&mut self, pat: &Pat, outside: bool) {
        let mut names = Vec::new();
        binding_idents(pat, &mut names);
        let outside = outside || matches!(pat, Pat::Type(pt) if is_mut_ref(&pt.ty));
        for (n, m) in names {
            self.declare_binding(&n, m, outside);
        }
    }

    fn declare_pat(&mut self, pat: &Pat) {
        self.declare_pat_as(pat, false);
    }

    /// The binding a name refers to now (the innermost one).
    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes
            .iter()
            .rev()
            .find_map(|scope| scope.iter().rev().find(|b| b.name == name))
    }

    /// The `mut` bindings in scope now (the innermost binding of each name decides).
    fn mutable_in_scope(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for scope in self.scopes.iter().rev() {
            for b in scope.iter().rev() {
                if seen.insert(b.name.clone()) && b.is_mut && !b.outside {
                    out.push(b.name.clone());
                }
            }
        }
        out.sort();
        out
    }

    fn block_stmts(&mut self, stmts: &mut [Stmt]) {
        self.scopes.push(Vec::new());
        for stmt in stmts.iter_mut() {
            self.stmt(stmt);
        }
        self.scopes.pop();
    }

    fn stmt(&mut self, stmt: &mut Stmt) {
        match stmt {
            Stmt::Local(local) => {
                let mut mut_ref = false;
                if let Some(init) = &mut local.init {
                    mut_ref = matches!(&*init.expr, Expr::Reference(r) if r.mutability.is_some());
                    self.expr(&mut init.expr);
                    if let Some((_, diverge)) = &mut init.diverge {
                        self.expr(diverge);
                    }
                }
                self.declare_pat_as(&local.pat, mut_ref);
            }
            Stmt::Expr(e, _) => self.expr(e),
            Stmt::Macro(m) => {
                self.check_tx_macro(&m.mac);
            }
            Stmt::Item(Item::Macro(m)) => {
                if let Some(name) = &m.ident {
                    self.local_macros.insert(name.to_string());
                }
            }
            Stmt::Item(_) => {}
        }
    }

    /// Reports `tx!()` outside the loops; returns whether it was one.
    fn check_tx_macro(&self, mac: &syn::Macro) -> bool {
        let found = effects::is_tx(&mac.path) && mac.tokens.is_empty();
        if found {
            self.cx.error_spanned_by(
                mac,
                "no transaction runs here: outside its loops, an #[stm::in_transactions] \
                 function runs outside transactions. Reach the heap in a loop, in a \
                 #[stm::transactional] function, or in `stm::atomically(|tx| ..)`",
            );
        }
        found
    }

    fn expr(&mut self, e: &mut Expr) {
        let atomic = take_atomic_attr(e);
        match e {
            Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_) => {
                if atomic.is_some() || !blocks_or_spawns(e) {
                    self.loop_expr(e, atomic.is_some());
                } else {
                    // An ordinary loop outside transactions; its inner loops may break.
                    self.walk_children(e);
                }
            }
            Expr::Block(_) if atomic.is_some() => self.loop_expr(e, true),
            Expr::Macro(m) => {
                if self.check_tx_macro(&m.mac) {
                    // Reported: keep rustc from reporting the macro again.
                    *e = syn::parse_quote!(::core::unimplemented!());
                }
            }
            _ => {
                if let Some(a) = atomic {
                    self.cx.error_spanned_by(
                        a,
                        "#[stm::atomic] goes on a loop or a block statement inside an \
                         #[stm::in_transactions] function (or on a function)",
                    );
                }
                self.walk_children(e)
            }
        }
    }

    /// Visits the subexpressions of `e` as code outside transactions, with scopes.
    fn walk_children(&mut self, e: &mut Expr) {
        match e {
            Expr::Block(b) => self.block_stmts(&mut b.block.stmts),
            Expr::Unsafe(b) => self.block_stmts(&mut b.block.stmts),
            Expr::Const(_) | Expr::Async(_) => {}
            Expr::Closure(c) => {
                self.scopes.push(Vec::new());
                for p in &c.inputs {
                    self.declare_pat(p);
                }
                self.expr(&mut c.body);
                self.scopes.pop();
            }
            Expr::If(i) => {
                self.scopes.push(Vec::new());
                self.cond(&mut i.cond);
                self.block_stmts(&mut i.then_branch.stmts);
                self.scopes.pop();
                if let Some((_, els)) = &mut i.else_branch {
                    self.expr(els);
                }
            }
            Expr::Match(m) => {
                self.expr(&mut m.expr);
                for arm in m.arms.iter_mut() {
                    self.scopes.push(Vec::new());
                    self.declare_pat(&arm.pat);
                    self.expr(&mut arm.body);
                    self.scopes.pop();
                }
            }
            Expr::While(w) => {
                self.scopes.push(Vec::new());
                self.cond(&mut w.cond);
                self.block_stmts(&mut w.body.stmts);
                self.scopes.pop();
            }
            Expr::ForLoop(f) => {
                self.expr(&mut f.expr);
                self.scopes.push(Vec::new());
                self.declare_pat(&f.pat);
                self.block_stmts(&mut f.body.stmts);
                self.scopes.pop();
            }
            Expr::Loop(l) => self.block_stmts(&mut l.body.stmts),
            other => {
                // Any other expression: its direct subexpressions, in order.
                struct Children<'w, 'a>(&'w mut Walker<'a>);
                impl VisitMut for Children<'_, '_> {
                    fn visit_expr_mut(&mut self, e: &mut Expr) {
                        self.0.expr(e);
                    }
                    fn visit_item_mut(&mut self, _: &mut Item) {}
                    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
                        self.0.check_tx_macro(m);
                    }
                }
                syn::visit_mut::visit_expr_mut(&mut Children(self), other);
            }
        }
    }

    /// An `if`/`while` condition: `let` patterns bind in the current (pushed) scope.
    fn cond(&mut self, c: &mut Expr) {
        match c {
            Expr::Let(l) => {
                self.expr(&mut l.expr);
                self.declare_pat(&l.pat);
            }
            Expr::Binary(b) if matches!(b.op, syn::BinOp::And(_)) => {
                self.cond(&mut b.left);
                self.cond(&mut b.right);
            }
            other => self.expr(other),
        }
    }

    /// Replaces a loop (or an atomic block) by its series of transactions.
    fn loop_expr(&mut self, e: &mut Expr, atomic: bool) {
        let span = e.span();
        let rt = &self.args.runtime;
        let stm = syn::Ident::new("__stm", Span::mixed_site());
        let tx = syn::Ident::new("__stm_tx", Span::mixed_site());
        let label = syn::Lifetime::new("'__stm_step", Span::mixed_site());
        let iter = syn::Ident::new("__stm_iter", Span::mixed_site());
        let cf = quote!(::core::ops::ControlFlow);
        // Generated names, hygienic (mixed-site) so that they resolve to each other whatever
        // the user's spans (a loop written inside a `macro_rules!` included).
        let value = syn::Ident::new("__stm_value", Span::mixed_site());
        let state_id = syn::Ident::new("__stm_state", Span::mixed_site());
        let exit = syn::Ident::new("__stm_exit", Span::mixed_site());
        let carried_id = syn::Ident::new("__stm_carried", Span::mixed_site());
        let flow = syn::Ident::new("__stm_flow", Span::mixed_site());

        // 1. What the loop may change, and its own label.
        let changed = changed_names(e);
        for (name, at) in &changed {
            if self.lookup(name).is_some_and(|b| b.outside) {
                let what = if name == "self" {
                    "`self` (taken as `&mut self` or `mut self`)".to_string()
                } else {
                    format!("what `{name}` refers to (a `&mut` reference)")
                };
                self.cx.error_spanned_by(
                    syn::Ident::new(name, *at),
                    format!(
                        "this loop has break points and changes {what}: that state lives \
                         outside the function's locals and the shared heap, so it is not \
                         restored when a transaction aborts, and the iterations run again \
                         would change it twice. Change a `mut` local of this function \
                         instead (it is carried across break points) and copy it out after \
                         the loop, or keep the state in a shared object"
                    ),
                );
            }
        }
        if let Some(mac) = first_call_of(e, &self.local_macros) {
            self.cx.error_spanned_by(
                mac,
                "a loop with break points cannot call a `macro_rules!` macro defined in this \
                 function: its body may change locals that the macro cannot see to carry \
                 across break points. Define the macro outside the function, passing the \
                 locals as arguments",
            );
        }
        let (own_label, is_loop) = match &*e {
            Expr::Loop(l) => (l.label.as_ref().map(|l| l.name.ident.to_string()), true),
            Expr::While(w) => (w.label.as_ref().map(|l| l.name.ident.to_string()), true),
            Expr::ForLoop(f) => (f.label.as_ref().map(|l| l.name.ident.to_string()), true),
            _ => (None, false),
        };
        let carried: Vec<syn::Ident> = self
            .mutable_in_scope()
            .into_iter()
            .filter(|n| n != "self")
            .filter_map(|n| changed.get(&n).map(|at| syn::Ident::new(&n, *at)))
            .collect();

        // 2. The step: the body with its exits rewritten.
        let mut exits = Exits {
            cx: self.cx,
            own_label,
            is_loop,
            depth: 0,
            inner_labels: Vec::new(),
            label: label.clone(),
            stm: stm.clone(),
            value_break: false,
            any_break: false,
            returns: false,
        };
        let mut for_iter = None;
        let step: TokenStream = match e {
            Expr::Loop(l) => {
                exits.visit_block_mut(&mut l.body);
                let body = &l.body;
                quote!(#body)
            }
            Expr::While(w) => {
                exits.visit_expr_mut(&mut w.cond);
                exits.visit_block_mut(&mut w.body);
                exits.any_break = true;
                let (cond, body) = (&w.cond, &w.body);
                // The `if` takes the `while`'s span: rustc checks let-chains by its edition.
                let if_token = syn::Token![if](w.while_token.span);
                quote! {
                    #if_token #cond #body else {
                        break #label #cf::Break(#stm::Exit::Break(()));
                    }
                }
            }
            Expr::ForLoop(f) => {
                exits.visit_block_mut(&mut f.body);
                exits.any_break = true;
                if let Some(at) = effect_in(&f.expr) {
                    self.cx.error_spanned_by(
                        at,
                        "the iterator of this loop advances inside the loop's transactions \
                         (each `next()` runs in one), where this call could run again after an \
                         abort, and the macro does not rewrite it: move the call into the loop \
                         body, where I/O makes the transaction inevitable",
                    );
                }
                for_iter = Some(f.expr.clone());
                let (pat, body) = (&f.pat, &f.body);
                quote! {
                    let ::core::option::Option::Some(#pat) =
                        ::core::iter::Iterator::next(&mut #iter) else {
                        break #label #cf::Break(#stm::Exit::Break(()));
                    };
                    #body
                }
            }
            Expr::Block(b) => {
                exits.visit_block_mut(&mut b.block);
                exits.value_break = true;
                exits.any_break = true;
                let block = &b.block;
                quote! {
                    break #label #cf::Break(#stm::Exit::Break(#block));
                }
            }
            _ => unreachable!("loop_expr on a loop or block"),
        };
        let mut step_block: Block = match syn::parse2(quote!({ #step })) {
            Ok(b) => b,
            Err(err) => {
                self.cx.syn_error(err);
                return;
            }
        };

        // 3. Barriers in the step: it is transactional code.
        let mut rewriter = Rewriter::new(self.cx, self.knowledge, tx.clone());
        for (name, kind) in &self.params {
            rewriter.bind(name, *kind);
        }
        rewriter.body(&mut step_block);
        self.stats += rewriter.stats;
        self.stats.break_loops += usize::from(!atomic);
        self.stats.atomic_blocks += usize::from(atomic);

        // 4. The call.
        let step_stmts = &step_block.stmts;
        // The state's names (in the tuple passed in and given back), its bindings in the step,
        // and what the final state is assigned to.
        let mut state: Vec<TokenStream> = carried.iter().map(|c| quote!(#c)).collect();
        let mut pats: Vec<TokenStream> = carried.iter().map(|c| quote!(mut #c)).collect();
        let mut back = state.clone();
        let mut setup = TokenStream::new();
        for c in &carried {
            setup.extend(quote_spanned!(c.span()=> #stm::carried(&#c);));
        }
        if let Some(it) = &for_iter {
            setup.extend(quote_spanned!(it.span()=> let #iter = #stm::carried_iter(#it);));
            state.push(quote!(#iter));
            pats.push(quote!(mut #iter));
            back.push(quote!(_));
        }
        let run = if atomic {
            quote!(#stm::atomic_loop)
        } else {
            quote!(#stm::loop_in_transactions)
        };
        let never = quote!(::core::convert::Infallible);
        let break_ty = if exits.value_break {
            quote!(_)
        } else if exits.any_break {
            quote!(())
        } else {
            never.clone()
        };
        let (return_ty, on_return) = if exits.returns {
            (quote!(_), quote!(return #value))
        } else {
            (never.clone(), quote!(match #value {}))
        };
        let on_break = if exits.any_break {
            quote!(#value)
        } else {
            quote!(match #value {})
        };
        let write_back = if carried.is_empty() {
            quote!()
        } else {
            quote!(#[allow(unused_assignments)] { (#(#back,)*) = #state_id; })
        };
        let state_binding = if carried.is_empty() {
            quote!(_)
        } else {
            quote!(#state_id)
        };
        let new: Expr = syn::parse_quote_spanned! {span=> {
            #setup
            let (#state_binding, #exit): (_, #stm::Exit<#break_ty, #return_ty>) = #run(
                (#(#state,)*),
                |#tx: &#rt::Tx, #carried_id| {
                    #[allow(unused_mut)]
                    let (#(#pats,)*) = #carried_id;
                    #[allow(unreachable_code)]
                    let #flow = #label: {
                        #(#step_stmts)*
                        #cf::Continue(())
                    };
                    ((#(#state,)*), #flow)
                },
            );
            #write_back
            match #exit {
                #stm::Exit::Break(#value) => #on_break,
                #stm::Exit::Return(#value) => #on_return,
            }
        }};
        *e = new;
    }
}

/// Rewrites the exits of a loop body: `break`, `continue` (of this loop), `return` and `?`
/// become breaks out of the step's labelled block with what to do next.
struct Exits<'a> {
    cx: &'a Ctxt,
    own_label: Option<String>,
    is_loop: bool,
    /// Loops entered inside the body (unlabelled `break`/`continue` are theirs).
    depth: usize,
    /// Labels of the loops and blocks entered inside the body (they may shadow ours).
    inner_labels: Vec<String>,
    label: syn::Lifetime,
    stm: syn::Ident,
    value_break: bool,
    any_break: bool,
    returns: bool,
}

impl Exits<'_> {
    /// Whether a `break`/`continue` with this label leaves the step; reports (and answers
    /// no for) a label of an enclosing loop or block outside it.
    fn targets_us(&self, label: Option<&syn::Lifetime>) -> bool {
        let Some(l) = label else {
            return self.depth == 0;
        };
        let name = l.ident.to_string();
        if self.inner_labels.contains(&name) {
            false
        } else if self.own_label.as_deref() == Some(&name) {
            true
        } else {
            self.cx.error_spanned_by(
                l,
                format!(
                    "`{l}` is outside this loop with break points: its iterations run in \
                     transactions of their own, which cannot jump out to an enclosing loop or \
                     block. Leave the loop with `break` (a value says where to go on)"
                ),
            );
            false
        }
    }

    /// Visits a loop or labelled block inside the body.
    fn enter(&mut self, label: Option<String>, is_loop: bool, e: &mut Expr) {
        self.depth += usize::from(is_loop);
        let pushed = label.is_some();
        if let Some(l) = label {
            self.inner_labels.push(l);
        }
        syn::visit_mut::visit_expr_mut(self, e);
        if pushed {
            self.inner_labels.pop();
        }
        self.depth -= usize::from(is_loop);
    }
}

impl VisitMut for Exits<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // Inside an iteration everything is atomic already: `#[atomic]` changes nothing.
        take_atomic_attr(e);
        let (label, stm) = (self.label.clone(), self.stm.clone());
        let cf = quote!(::core::ops::ControlFlow);
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Loop(l) => {
                let label = l.label.as_ref().map(|l| l.name.ident.to_string());
                self.enter(label, true, e);
            }
            Expr::While(w) => {
                let label = w.label.as_ref().map(|l| l.name.ident.to_string());
                self.enter(label, true, e);
            }
            Expr::ForLoop(f) => {
                let label = f.label.as_ref().map(|l| l.name.ident.to_string());
                self.enter(label, true, e);
            }
            Expr::Block(b) if b.label.is_some() => {
                let label = b.label.as_ref().map(|l| l.name.ident.to_string());
                self.enter(label, false, e);
            }
            Expr::Break(b) => {
                if let Some(v) = &mut b.expr {
                    self.visit_expr_mut(v);
                }
                if self.targets_us(b.label.as_ref()) {
                    if !self.is_loop {
                        self.cx.error_spanned_by(
                            &*b,
                            "`break` cannot leave an #[stm::atomic] block: end the block first",
                        );
                        return;
                    }
                    self.any_break = true;
                    let value = match &b.expr {
                        Some(v) => {
                            self.value_break = true;
                            quote!(#v)
                        }
                        None => quote!(()),
                    };
                    *e = syn::parse_quote_spanned! {b.span()=>
                        break #label #cf::Break(#stm::Exit::Break(#value))
                    };
                }
            }
            Expr::Continue(c) => {
                if self.targets_us(c.label.as_ref()) {
                    if !self.is_loop {
                        self.cx.error_spanned_by(
                            &*c,
                            "`continue` cannot leave an #[stm::atomic] block: end the block first",
                        );
                        return;
                    }
                    *e = syn::parse_quote_spanned! {c.span()=> break #label #cf::Continue(()) };
                }
            }
            Expr::Return(r) => {
                if let Some(v) = &mut r.expr {
                    self.visit_expr_mut(v);
                }
                self.returns = true;
                let value = match &r.expr {
                    Some(v) => quote!(#v),
                    None => quote!(()),
                };
                *e = syn::parse_quote_spanned! {r.span()=>
                    break #label #cf::Break(#stm::Exit::Return(#value))
                };
            }
            Expr::Try(t) => {
                let ok = syn::Ident::new("__stm_ok", Span::mixed_site());
                let residual = syn::Ident::new("__stm_residual", Span::mixed_site());
                self.visit_expr_mut(&mut t.expr);
                self.returns = true;
                let inner = &t.expr;
                *e = syn::parse_quote_spanned! {t.question_token.span()=>
                    match #stm::Branch::__stm_branch(#inner) {
                        #cf::Continue(#ok) => #ok,
                        #cf::Break(#residual) => break #label #cf::Break(
                            #stm::Exit::Return(#stm::FromResidual::__stm_from_residual(#residual))
                        ),
                    }
                };
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_item_mut(&mut self, _: &mut Item) {}

    /// `?`, `return` and `break` in the arguments of formatting and assertion macros (their
    /// arguments are expressions); other macros are opaque.
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        let Some(mut args) = expr_macro_args(m) else {
            return;
        };
        for a in args.iter_mut() {
            self.visit_expr_mut(a);
        }
        m.tokens = args.into_token_stream();
    }
}

/// Removes an `#[atomic]` / `#[stm::atomic]` attribute from an expression, returning it.
fn take_atomic_attr(e: &mut Expr) -> Option<syn::Attribute> {
    let attrs = match e {
        Expr::Loop(l) => &mut l.attrs,
        Expr::While(w) => &mut w.attrs,
        Expr::ForLoop(f) => &mut f.attrs,
        Expr::Block(b) => &mut b.attrs,
        Expr::Call(c) => &mut c.attrs,
        Expr::MethodCall(m) => &mut m.attrs,
        Expr::If(i) => &mut i.attrs,
        Expr::Match(m) => &mut m.attrs,
        _ => return None,
    };
    let pos = attrs.iter().position(|a| attr::is_atomic_attr(a.path()))?;
    Some(attrs.remove(pos))
}

/// The first call in `e` (closures included) that is irreversible or forbidden inside a
/// transaction, by the names of `effects`.
fn effect_in(e: &Expr) -> Option<TokenStream> {
    struct Finder(Option<TokenStream>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            if let Expr::Path(p) = &*c.func {
                if effects::of_call(&p.path, &c.args) != Effect::None && self.0.is_none() {
                    self.0 = Some(c.func.to_token_stream());
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if effects::of_method_call(m) != Effect::None && self.0.is_none() {
                self.0 = Some(m.method.to_token_stream());
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            if effects::of_macro(&m.path) != Effect::None && self.0.is_none() {
                self.0 = Some(m.path.to_token_stream());
            }
        }
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    let mut f = Finder(None);
    f.visit_expr(e);
    f.0
}

/// Whether a loop calls something that blocks, spawns a thread or runs a transaction queue
/// (`queue.run(n)`, which waits for transactions of its own and refuses to run inside one),
/// outside closures: it cannot run in a transaction.
fn blocks_or_spawns(e: &Expr) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            if let Expr::Path(p) = &*c.func {
                if matches!(effects::of_call(&p.path, &c.args), Effect::Forbidden(_)) {
                    self.0 = true;
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            let name = m.method.to_string();
            if matches!(
                effects::of_method(&name, m.args.len()),
                Effect::Forbidden(_)
            ) || effects::runs_transactions(&name, m.args.len())
            {
                self.0 = true;
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    let mut f = Finder(false);
    f.visit_expr(e);
    f.0
}

/// The bindings a loop (its condition and body, not a `for` loop's iterator, which is
/// evaluated before it) may change, with where: roots of assigned places, of `&mut` borrows
/// and of method-call receivers (a method may take `&mut self`, unless it is one of the
/// rewriter's known read-only methods), called bindings (an `FnMut` closure), the first
/// argument of `write!`, and every name inside a macro that is not a formatting or assertion
/// macro (opaque). With a `ref mut` pattern, every name.
fn changed_names(e: &Expr) -> BTreeMap<String, Span> {
    struct Finder {
        out: BTreeMap<String, Span>,
        ref_mut: bool,
    }
    fn root(e: &Expr) -> Option<&syn::Ident> {
        match e {
            Expr::Path(p) => p.path.get_ident(),
            Expr::Field(f) => root(&f.base),
            Expr::Index(i) => root(&i.expr),
            Expr::Paren(p) => root(&p.expr),
            Expr::Group(g) => root(&g.expr),
            Expr::Unary(u) => root(&u.expr),
            Expr::MethodCall(m) => root(&m.receiver),
            _ => None,
        }
    }
    impl Finder {
        fn note(&mut self, e: &Expr) {
            if let Some(id) = root(e) {
                self.out.entry(id.to_string()).or_insert(id.span());
            }
        }
        /// The left side of `=`: a place, or a destructuring pattern of places.
        fn note_assigned(&mut self, e: &Expr) {
            match e {
                Expr::Tuple(t) => t.elems.iter().for_each(|x| self.note_assigned(x)),
                Expr::Array(a) => a.elems.iter().for_each(|x| self.note_assigned(x)),
                Expr::Call(c) => c.args.iter().for_each(|x| self.note_assigned(x)),
                Expr::Struct(st) => st.fields.iter().for_each(|f| self.note_assigned(&f.expr)),
                Expr::Paren(p) => self.note_assigned(&p.expr),
                other => self.note(other),
            }
        }
    }
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
            self.note_assigned(&a.left);
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
            if is_assign_op(&b.op) {
                // A compound assignment (`+=` and the others).
                self.note(&b.left);
            }
            syn::visit::visit_expr_binary(self, b);
        }
        fn visit_expr_reference(&mut self, r: &'ast syn::ExprReference) {
            if r.mutability.is_some() {
                self.note(&r.expr);
            }
            syn::visit::visit_expr_reference(self, r);
        }
        fn visit_expr_raw_addr(&mut self, r: &'ast syn::ExprRawAddr) {
            self.note(&r.expr);
            syn::visit::visit_expr_raw_addr(self, r);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if !READ_ONLY_METHODS.contains(&m.method.to_string().as_str()) {
                self.note(&m.receiver);
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            self.note(&c.func);
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            let Some(args) = expr_macro_args(m) else {
                collect_idents(&m.tokens, &mut self.out);
                return;
            };
            // Formatting and assertions read their arguments (`write!` changes its first).
            if m.path
                .segments
                .last()
                .is_some_and(|s| s.ident == "write" || s.ident == "writeln")
            {
                if let Some(first) = args.first() {
                    self.note(first);
                }
            }
            for a in &args {
                match a {
                    // `name = value` in format arguments: `name` is not a binding.
                    Expr::Assign(assign) if matches!(&*assign.left, Expr::Path(_)) => {
                        self.visit_expr(&assign.right)
                    }
                    other => self.visit_expr(other),
                }
            }
        }
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            if p.by_ref.is_some() && p.mutability.is_some() {
                self.ref_mut = true;
            }
            syn::visit::visit_pat_ident(self, p);
        }
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    let mut f = Finder {
        out: BTreeMap::new(),
        ref_mut: false,
    };
    match e {
        Expr::ForLoop(l) => {
            f.visit_pat(&l.pat);
            f.visit_block(&l.body);
        }
        other => f.visit_expr(other),
    }
    if f.ref_mut {
        collect_idents(&e.to_token_stream(), &mut f.out);
    }
    f.out
}

/// The arguments of a formatting or assertion macro (`EXPR_MACROS`), which are expressions;
/// `None` for any other macro, or arguments that do not parse as expressions.
fn expr_macro_args(m: &syn::Macro) -> Option<syn::punctuated::Punctuated<Expr, syn::Token![,]>> {
    use syn::parse::Parser;
    let name = m.path.segments.last()?.ident.to_string();
    if !EXPR_MACROS.contains(&name.as_str()) {
        return None;
    }
    syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated
        .parse2(m.tokens.clone())
        .ok()
}

/// Every identifier in a token stream, and the names captured by format strings (`"{x}"`),
/// each with where it first occurs.
fn collect_idents(ts: &TokenStream, out: &mut BTreeMap<String, Span>) {
    for tt in ts.clone() {
        match tt {
            TokenTree::Ident(i) => {
                out.entry(i.to_string()).or_insert(i.span());
            }
            TokenTree::Group(g) => collect_idents(&g.stream(), out),
            TokenTree::Literal(l) => {
                let text = l.to_string();
                if text.starts_with('"') || text.starts_with('r') {
                    let mut names = HashSet::new();
                    format_captures(&text, &mut names);
                    for n in names {
                        out.entry(n).or_insert(l.span());
                    }
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}

/// `{name}` and `{name:..}` in a string literal's text.
fn format_captures(text: &str, out: &mut HashSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        rest = &rest[i + 1..];
        if rest.starts_with('{') {
            rest = &rest[1..];
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(name);
        }
    }
}

/// A binding in scope outside transactions.
struct Binding {
    name: String,
    /// Declared `mut`: a loop that changes it carries it.
    is_mut: bool,
    /// A `&mut` reference, `&mut self` or `mut self`: a loop must not change what it reaches.
    outside: bool,
}

/// Whether a type is written `&mut T`.
fn is_mut_ref(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Reference(r) if r.mutability.is_some())
}

/// The first call in `e` of one of these macros (by name).
fn first_call_of(e: &Expr, names: &HashSet<String>) -> Option<syn::Macro> {
    struct Finder<'a> {
        names: &'a HashSet<String>,
        found: Option<syn::Macro>,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            if self.found.is_none()
                && m.path
                    .get_ident()
                    .is_some_and(|i| self.names.contains(&i.to_string()))
            {
                self.found = Some(m.clone());
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut f = Finder { names, found: None };
    f.visit_expr(e);
    f.found
}
