//! The evaluator: `eval`, calls and frames, inside one transaction — and the continuation
//! that lets a transaction break anywhere.
//!
//! The evaluator is an ordinary recursive one. When `(run-transactions)` is evaluated in
//! the main program, it returns [`Stopped::Break`]: the main program's transaction has to
//! commit before the queued calls can run. On its way out, every evaluation step with work
//! left to do (the rest of a `progn`, a `while` loop, the arguments still to evaluate, a
//! call's arguments still to bind...) adds one record ([`K`]) of that work to the break, so
//! the break carries the whole rest of the computation. The driver (`Interp::run_main`)
//! roots the records' handles, commits, runs the queued calls, and continues in a new
//! transaction by resuming the records one after the other, innermost first
//! ([`Cx::resume`]). Nothing is re-evaluated, and no Rust stack frame survives a commit:
//! the state that crosses it is the records and the heap (frames, pending calls).

use std::cell::RefCell;
use std::io::Write;

use stm::{Gc, Root, Tx};
use stm_runtime as stm;

use crate::builtins::{Arity, BuiltinKind, StrictFn, BUILTINS, N_BUILTINS};
use crate::heap::{self, Call, Fr, Frame, Globals, Kind, Obj, Value};
use crate::{list, Error, Interp};

/// Symbols interned right after the builtins: `None`, then the type names.
pub(crate) const EXTRA_SYMBOLS: [&str; 7] = [
    "None",
    "NoneType",
    "int",
    "symbol",
    "cons",
    "list",
    "container",
];
/// Symbol id of `None`.
pub(crate) const SYM_NONE: u32 = N_BUILTINS as u32;

/// What a call names (see [`Cx::lookup_function`]).
pub(crate) enum Function<'tx> {
    /// A user function: its `(params . body)`.
    User(Gc<'tx, Obj>),
    /// A builtin: its index in [`BUILTINS`].
    Builtin(usize),
    /// Nothing callable.
    Missing,
}

/// Where queued calls go.
pub(crate) enum Queue<'tx> {
    /// The main program: the pending list in the heap (`Globals::pending`).
    Main,
    /// A queued transaction: calls it queues become tasks when it commits.
    Task(RefCell<Vec<Gc<'tx, Call>>>),
}

/// One record of work left to do when a transaction breaks: the continuation of an
/// evaluation step, with its handles as `V` (values) and `F` (frames). In a running
/// transaction they are [`Value`]s and [`Fr`]s; across a commit, [`Held`] values and rooted
/// frames (see [`Kont`] and [`HeldKont`]).
#[derive(Clone, Debug)]
pub(crate) enum K<V, F> {
    /// The forms of a body after the one that broke; the body's value is its last form's.
    Progn {
        /// The forms still to evaluate.
        rest: V,
        /// Where.
        frame: Option<F>,
    },
    /// The body of a user call broke (one level of call depth); its value passes through.
    Return,
    /// A call's argument broke: `param` waits for its value, then binding goes on.
    Bind {
        /// The function's name (for errors).
        sym: V,
        /// The parameter the value is for.
        param: V,
        /// The parameters after it.
        params: V,
        /// The argument forms after the one that broke.
        args: V,
        /// The caller's frame (where arguments are evaluated).
        frame: Option<F>,
        /// The callee's frame (where they are bound).
        callee: F,
        /// The function body.
        body: V,
        /// Whether the call runs now (or is queued, `transaction`).
        now: bool,
    },
    /// A `setq` value broke: `sym` waits for it; `rest` are the pairs after it.
    Setq {
        /// The symbol to bind.
        sym: V,
        /// The pairs still to do.
        rest: V,
        /// Where.
        frame: Option<F>,
    },
    /// An argument of a builtin that takes evaluated arguments broke.
    Args {
        /// The builtin's index in [`BUILTINS`].
        b: usize,
        /// The values of the arguments before it.
        done: Vec<V>,
        /// All the argument forms (`assert` shows its form).
        forms: V,
        /// The argument forms after it.
        rest: V,
        /// Where.
        frame: Option<F>,
    },
    /// An `if` condition broke; `rest` is `(then else...)`.
    If {
        /// The branches.
        rest: V,
        /// Where.
        frame: Option<F>,
    },
    /// A `while` condition broke; `args` is `(cond body...)`.
    WhileCond {
        /// The loop.
        args: V,
        /// Where.
        frame: Option<F>,
    },
    /// A `while` body broke: after it, the loop goes on.
    WhileBody {
        /// The loop.
        args: V,
        /// Where.
        frame: Option<F>,
    },
    /// An operand of `&&` (`want` false) or `||` (`want` true) broke.
    Logic {
        /// The value that ends the evaluation early.
        want: bool,
        /// The operands after it.
        rest: V,
        /// Where.
        frame: Option<F>,
    },
}

/// A record of a running transaction.
pub(crate) type Kont<'tx> = K<Value<'tx>, Fr<'tx>>;
/// A record kept across a commit.
pub(crate) type HeldKont = K<Held, Root<Frame>>;

/// A value kept across a commit: ints and None inline, objects rooted.
#[derive(Clone, Debug)]
pub(crate) enum Held {
    /// `None`.
    None,
    /// An int.
    Int(i32),
    /// A rooted object.
    Obj(Root<Obj>),
}

impl Held {
    /// Roots `v`.
    pub fn hold<'tx>(tx: &'tx Tx, v: Value<'tx>) -> Held {
        match v {
            Value::None => Held::None,
            Value::Int(i) => Held::Int(i),
            Value::Obj(o) => Held::Obj(tx.root(o)),
        }
    }

    /// The value, as a handle of `tx`.
    pub fn get<'tx>(&self, tx: &'tx Tx) -> Value<'tx> {
        match self {
            Held::None => Value::None,
            Held::Int(i) => Value::Int(*i),
            Held::Obj(r) => Value::Obj(r.get(tx)),
        }
    }
}

impl<V, F> K<V, F> {
    /// The same record with its handles converted.
    pub fn map<V2, F2>(
        &self,
        v: &mut impl FnMut(&V) -> V2,
        f: &mut impl FnMut(&F) -> F2,
    ) -> K<V2, F2> {
        match self {
            K::Progn { rest, frame } => K::Progn {
                rest: v(rest),
                frame: frame.as_ref().map(&mut *f),
            },
            K::Return => K::Return,
            K::Bind {
                sym,
                param,
                params,
                args,
                frame,
                callee,
                body,
                now,
            } => K::Bind {
                sym: v(sym),
                param: v(param),
                params: v(params),
                args: v(args),
                frame: frame.as_ref().map(&mut *f),
                callee: f(callee),
                body: v(body),
                now: *now,
            },
            K::Setq { sym, rest, frame } => K::Setq {
                sym: v(sym),
                rest: v(rest),
                frame: frame.as_ref().map(&mut *f),
            },
            K::Args {
                b,
                done,
                forms,
                rest,
                frame,
            } => K::Args {
                b: *b,
                done: done.iter().map(&mut *v).collect(),
                forms: v(forms),
                rest: v(rest),
                frame: frame.as_ref().map(&mut *f),
            },
            K::If { rest, frame } => K::If {
                rest: v(rest),
                frame: frame.as_ref().map(&mut *f),
            },
            K::WhileCond { args, frame } => K::WhileCond {
                args: v(args),
                frame: frame.as_ref().map(&mut *f),
            },
            K::WhileBody { args, frame } => K::WhileBody {
                args: v(args),
                frame: frame.as_ref().map(&mut *f),
            },
            K::Logic { want, rest, frame } => K::Logic {
                want: *want,
                rest: v(rest),
                frame: frame.as_ref().map(&mut *f),
            },
        }
    }
}

impl HeldKont {
    /// Roots the handles of a record of the running transaction.
    pub fn hold<'tx>(tx: &'tx Tx, k: &Kont<'tx>) -> HeldKont {
        k.map(&mut |v| Held::hold(tx, *v), &mut |f| tx.root(f.gc))
    }

    /// The record as one of `tx`.
    pub fn get<'tx>(&self, tx: &'tx Tx) -> Kont<'tx> {
        self.map(&mut |v| v.get(tx), &mut |f| Fr { gc: f.get(tx) })
    }
}

/// Why an evaluation ended without a value (boxed: results stay small on the hot path).
pub(crate) struct Stop<'tx>(pub Box<Stopped<'tx>>);

/// What a [`Stop`] is.
pub(crate) enum Stopped<'tx> {
    /// A Duhton error.
    Error(Error),
    /// A transaction break: the work left, innermost record first. The value of the form
    /// that broke (`run-transactions`) is None.
    Break(Vec<Kont<'tx>>),
}

impl From<Error> for Stop<'_> {
    #[cold]
    fn from(e: Error) -> Self {
        Stop(Box::new(Stopped::Error(e)))
    }
}

/// The result of an evaluation.
pub(crate) type R<'tx> = Result<Value<'tx>, Stop<'tx>>;

/// Adds a record to a break on its way out.
pub(crate) trait OrBreak<'tx> {
    /// On a break, appends the record `k` makes (the caller's work left).
    fn or_break(self, k: impl FnOnce() -> Kont<'tx>) -> Self;
}

impl<'tx, T> OrBreak<'tx> for Result<T, Stop<'tx>> {
    #[inline(always)]
    fn or_break(mut self, k: impl FnOnce() -> Kont<'tx>) -> Self {
        if let Err(Stop(s)) = &mut self {
            if let Stopped::Break(ks) = &mut **s {
                ks.push(k());
            }
        }
        self
    }
}

/// The context of one transaction attempt of the interpreter (made afresh for every
/// attempt, so nothing in it survives a rollback).
pub(crate) struct Cx<'tx> {
    /// The running transaction.
    pub tx: &'tx Tx,
    /// The interpreter (symbol names, output).
    pub it: &'tx Interp,
    /// The root object, as a handle of this transaction.
    pub globals: Gc<'tx, Globals>,
    /// Where `(transaction ...)` queues calls.
    pub queue: Queue<'tx>,
    /// Below this stack address, calls fail with a recursion error.
    pub stack_limit: usize,
    /// Frames of returned calls, for reuse.
    pub spare: heap::Spare<'tx>,
}

/// The type name `type` returns.
pub(crate) fn type_name(v: Value<'_>) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Int(_) => "int",
        Value::Obj(o) => kind_name(heap::kind(o)),
    }
}

/// The type name of an object kind.
pub(crate) fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Cons => "cons",
        Kind::List => "list",
        Kind::Container => "container",
        Kind::Symbol => "symbol",
    }
}

/// Truthiness: None false; int false iff 0; list false iff empty; the rest true.
pub(crate) fn is_true(v: Value<'_>) -> bool {
    match v {
        Value::None => false,
        Value::Int(i) => i != 0,
        Value::Obj(o) => heap::kind(o) != Kind::List || list::len(o) != 0,
    }
}

/// The int `v`, or the error the original reports (`DuInt_AsInt`).
pub(crate) fn as_int(v: Value<'_>) -> Result<i32, Error> {
    match v {
        Value::Int(i) => Ok(i),
        _ => Err(Error::from(format!(
            "DuInt_AsInt: expected 'int' argument, got '{}'",
            type_name(v)
        ))),
    }
}

/// The object `v` if it is of kind `k`, or an error naming `wher`.
pub(crate) fn as_kind<'tx>(v: Value<'tx>, k: Kind, wher: &str) -> Result<Gc<'tx, Obj>, Error> {
    match v {
        Value::Obj(o) if heap::kind(o) == k => Ok(o),
        _ => Err(Error::from(format!(
            "{wher}: expected '{}' argument, got '{}'",
            kind_name(k),
            type_name(v)
        ))),
    }
}

/// Splits an argument list into its first form and the rest.
#[inline(always)]
pub(crate) fn next(args: Value<'_>) -> Option<(Value<'_>, Value<'_>)> {
    args.as_cons().map(heap::cons_parts)
}

/// The number of forms in an argument list.
#[inline]
fn count(mut args: Value<'_>) -> usize {
    let mut n = 0;
    while let Some((_, rest)) = next(args) {
        n += 1;
        args = rest;
    }
    n
}

/// Evaluated arguments: up to four inline, more on the heap.
struct ArgBuf<'tx> {
    inline: [Value<'tx>; 4],
    len: usize,
    spill: Vec<Value<'tx>>,
}

impl<'tx> ArgBuf<'tx> {
    #[inline(always)]
    fn new() -> Self {
        ArgBuf {
            inline: [Value::None; 4],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn from_vec(v: Vec<Value<'tx>>) -> Self {
        ArgBuf {
            inline: [Value::None; 4],
            len: 0,
            spill: v,
        }
    }

    #[inline(always)]
    fn push(&mut self, v: Value<'tx>) {
        if self.spill.is_empty() && self.len < 4 {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.push(v);
        }
    }

    #[inline(always)]
    fn as_slice(&self) -> &[Value<'tx>] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

impl<'tx> Cx<'tx> {
    #[inline(always)]
    fn check_stack(&self) -> Result<(), Error> {
        let here = 0u8;
        let addr = std::hint::black_box(&here) as *const u8 as usize;
        if addr < self.stack_limit {
            return Err(Error::new("maximum recursion depth exceeded"));
        }
        Ok(())
    }

    /// The name of a symbol, as text.
    pub fn name(&self, sym: Gc<'tx, Obj>) -> String {
        self.it.symbol_name(heap::symbol_id(sym))
    }

    /// Evaluates `v` in `frame` (`None`: the global frame). Ints and None are themselves
    /// without a call.
    #[inline(always)]
    pub fn eval(&self, v: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        match v {
            Value::Obj(o) => self.eval_obj(o, frame),
            _ => Ok(v),
        }
    }

    /// Evaluates the object `o`: a symbol is a variable, a cons a call, the rest itself.
    fn eval_obj(&self, o: Gc<'tx, Obj>, frame: Option<Fr<'tx>>) -> R<'tx> {
        match heap::kind(o) {
            Kind::Symbol => match self.local_value(frame, o) {
                Some(v) => Ok(v),
                None => match heap::global_value(o) {
                    Some(v) => Ok(v),
                    None => Err(self.undefined(o).into()),
                },
            },
            Kind::Cons => {
                let (f, args) = heap::cons_parts(o);
                self.call(f, args, frame, true)
                    .map_err(|s| self.locate(s, o))
            }
            Kind::List | Kind::Container => Ok(Value::Obj(o)),
        }
    }

    #[cold]
    #[inline(never)]
    fn undefined(&self, sym: Gc<'tx, Obj>) -> Error {
        Error::from(format!(
            "symbol not defined as a variable: '{}'",
            self.name(sym)
        ))
    }

    /// An error without a position gets the position of `form`, the innermost form with
    /// one that it came out of.
    #[cold]
    fn locate(&self, mut s: Stop<'tx>, form: Gc<'tx, Obj>) -> Stop<'tx> {
        if let Stopped::Error(e) = &mut *s.0 {
            if e.at.is_none() {
                e.at = self.it.position(form);
            }
        }
        s
    }

    /// The variable `sym` in `frame` (not the global frame), if bound there.
    #[inline(always)]
    pub fn local_value(&self, frame: Option<Fr<'tx>>, sym: Gc<'tx, Obj>) -> Option<Value<'tx>> {
        match frame {
            Some(fr) if self.it.maybe_local(heap::symbol_id(sym)) => fr.value(sym),
            _ => None,
        }
    }

    /// Binds the variable `sym` in the call frame `fr`.
    #[inline(always)]
    pub fn bind_local(&self, fr: Fr<'tx>, sym: Gc<'tx, Obj>, v: Value<'tx>) {
        self.it.mark_local(heap::symbol_id(sym));
        fr.set_value(sym, v, &self.spare);
    }

    /// Defines the function `sym` in the call frame `fr`.
    pub fn define_local(&self, fr: Fr<'tx>, sym: Gc<'tx, Obj>, f: Gc<'tx, Obj>) {
        self.it.mark_local(heap::symbol_id(sym));
        fr.set_function(sym, f);
    }

    /// The symbol table entry `id`.
    pub fn symbol(&self, id: u32) -> Gc<'tx, Obj> {
        match list::get(heap::symtab(self.globals), id as usize) {
            Some(Value::Obj(o)) => o,
            _ => unreachable!("symbol ids index the symbol table"),
        }
    }

    /// `(f args...)`: run now, or (`now == false`, `transaction`) queue the call.
    pub fn call(
        &self,
        f: Value<'tx>,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        now: bool,
    ) -> R<'tx> {
        self.check_stack()?;
        let sym = match f {
            Value::Obj(o) if heap::kind(o) == Kind::Symbol => o,
            _ => return Err(self.not_a_symbol(f)),
        };
        match self.lookup_function(sym, frame) {
            Function::User(func) => self.call_user(sym, func, args, frame, now),
            Function::Builtin(b) if now => match &BUILTINS[b].kind {
                BuiltinKind::Special(f) => f(self, args, frame),
                BuiltinKind::Strict(arity, apply) => {
                    self.call_strict(b, *arity, *apply, args, frame)
                }
            },
            Function::Builtin(_) => Err(self.no_function(sym, "symbol refers to a macro")),
            Function::Missing => Err(self.no_function(sym, "symbol not defined as a function")),
        }
    }

    /// `(f ...)` where `f` is not a symbol: the original's note on stdout, then the error.
    #[cold]
    #[inline(never)]
    fn not_a_symbol(&self, f: Value<'tx>) -> Stop<'tx> {
        let mut line = b"_DuFrame_EvalCall: ".to_vec();
        if let Err(e) = self.repr(&mut line, f) {
            return e.into();
        }
        line.push(b'\n');
        self.write_out(&line);
        Error::new("expected a symbol to execute").into()
    }

    #[cold]
    #[inline(never)]
    fn no_function(&self, sym: Gc<'tx, Obj>, what: &str) -> Stop<'tx> {
        Error::from(format!("{what}: '{}'", self.name(sym))).into()
    }

    /// A call of the strict builtin `b`: checks the number of arguments, evaluates them,
    /// applies it. (Out of line: `call` stays small for user calls.)
    #[inline(never)]
    fn call_strict(
        &self,
        b: usize,
        arity: Arity,
        apply: StrictFn,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
    ) -> R<'tx> {
        // One and two arguments (most calls) without a buffer.
        let Some((a, rest)) = next(args) else {
            arity.check(0)?;
            return apply(self, &[], args);
        };
        match next(rest) {
            None => {
                arity.check(1)?;
                let va = self.eval(a, frame).or_break(|| K::Args {
                    b,
                    done: Vec::new(),
                    forms: args,
                    rest,
                    frame,
                })?;
                apply(self, &[va], args)
            }
            Some((e, Value::None)) => {
                arity.check(2)?;
                let va = self.eval(a, frame).or_break(|| K::Args {
                    b,
                    done: Vec::new(),
                    forms: args,
                    rest,
                    frame,
                })?;
                let vb = self.eval(e, frame).or_break(|| K::Args {
                    b,
                    done: vec![va],
                    forms: args,
                    rest: Value::None,
                    frame,
                })?;
                apply(self, &[va, vb], args)
            }
            Some(_) => {
                arity.check(count(args))?;
                self.strict(b, ArgBuf::new(), args, args, frame)
            }
        }
    }

    /// A builtin that takes evaluated arguments: evaluates the forms `rest` (after the
    /// values `done`), then applies it.
    fn strict(
        &self,
        b: usize,
        mut done: ArgBuf<'tx>,
        forms: Value<'tx>,
        mut rest: Value<'tx>,
        frame: Option<Fr<'tx>>,
    ) -> R<'tx> {
        while let Some((a, more)) = next(rest) {
            let v = self.eval(a, frame).or_break(|| K::Args {
                b,
                done: done.as_slice().to_vec(),
                forms,
                rest: more,
                frame,
            })?;
            done.push(v);
            rest = more;
        }
        let BuiltinKind::Strict(_, apply) = BUILTINS[b].kind else {
            unreachable!("a strict builtin");
        };
        apply(self, done.as_slice(), forms)
    }

    /// What `(sym ...)` calls in `frame`: the local entry for `sym` if there is one (even
    /// one holding only a value), else the global user function, else the builtin.
    pub fn lookup_function(&self, sym: Gc<'tx, Obj>, frame: Option<Fr<'tx>>) -> Function<'tx> {
        let local = match frame {
            Some(fr) if self.it.maybe_local(heap::symbol_id(sym)) => fr.function(sym),
            _ => None,
        };
        let func = match local {
            Some(f) => f,
            None => heap::global_function(sym),
        };
        if let Some(func) = func {
            return Function::User(func);
        }
        let id = heap::symbol_id(sym) as usize;
        if id < N_BUILTINS && local.is_none() {
            Function::Builtin(id)
        } else {
            Function::Missing
        }
    }

    fn call_user(
        &self,
        sym: Gc<'tx, Obj>,
        func: Gc<'tx, Obj>,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        now: bool,
    ) -> R<'tx> {
        let callee = if now {
            Fr::new(self.tx, &self.spare)
        } else {
            Fr {
                gc: heap::new_frame(self.tx),
            }
        };
        let (params, body) = heap::cons_parts(func);
        self.bind(Value::Obj(sym), params, args, frame, callee, body, now)
    }

    /// Evaluates the argument forms `args` in `frame` and binds them to `params` in
    /// `callee`, then runs the call (`now`) or queues it.
    #[allow(clippy::too_many_arguments)]
    fn bind(
        &self,
        sym: Value<'tx>,
        mut params: Value<'tx>,
        mut args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        callee: Fr<'tx>,
        body: Value<'tx>,
        now: bool,
    ) -> R<'tx> {
        while let Some((param, rest)) = next(params) {
            let Some((arg, more)) = next(args) else {
                return Err(self.arity_error(sym, "not enough arguments").into());
            };
            let v = self.eval(arg, frame).or_break(|| K::Bind {
                sym,
                param,
                params: rest,
                args: more,
                frame,
                callee,
                body,
                now,
            })?;
            let p = as_kind(param, Kind::Symbol, "DuSymbol_Id")?;
            self.bind_local(callee, p, v);
            params = rest;
            args = more;
        }
        if !args.is_none() {
            return Err(self.arity_error(sym, "too many arguments").into());
        }
        if now {
            let result = self.progn(body, Some(callee)).or_break(|| K::Return)?;
            callee.recycle(&self.spare);
            return Ok(result);
        }
        let body = match body {
            Value::Obj(o) => Some(o),
            _ => None,
        };
        let call = heap::new_call(callee.gc, body);
        match &self.queue {
            Queue::Main => heap::push_pending(self.globals, call),
            Queue::Task(q) => q.borrow_mut().push(call),
        }
        Ok(Value::None)
    }

    fn arity_error(&self, sym: Value<'tx>, what: &str) -> Error {
        let name = match sym {
            Value::Obj(o) => self.name(o),
            _ => String::new(),
        };
        Error::from(format!("call to '{name}': {what}"))
    }

    /// Evaluates each form, returns the last value (None if none).
    pub fn progn(&self, mut forms: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let mut result = Value::None;
        while let Some((form, rest)) = next(forms) {
            result = self
                .eval(form, frame)
                .or_break(|| K::Progn { rest, frame })?;
            forms = rest;
        }
        Ok(result)
    }

    /// `setq` from the pair list `args`.
    pub fn setq(&self, mut args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let mut result = Value::None;
        while let Some((sym, rest)) = next(args) {
            let Some((expr, rest)) = next(rest) else {
                return Err(Error::new("setq: number of arguments is odd").into());
            };
            let v = self
                .eval(expr, frame)
                .or_break(|| K::Setq { sym, rest, frame })?;
            self.set_var(frame, sym, v)?;
            result = v;
            args = rest;
        }
        Ok(result)
    }

    /// Binds a variable in the current frame.
    pub fn set_var(
        &self,
        frame: Option<Fr<'tx>>,
        sym: Value<'tx>,
        v: Value<'tx>,
    ) -> Result<(), Error> {
        let sym = as_kind(sym, Kind::Symbol, "DuSymbol_Id")?;
        match frame {
            Some(fr) => self.bind_local(fr, sym, v),
            None => heap::set_global_value(sym, v),
        }
        Ok(())
    }

    /// `if`'s branch: `rest` is `(then else...)`.
    #[inline]
    pub fn branch(&self, cond: bool, rest: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let (then, otherwise) = next(rest).expect("checked by `if`");
        if cond {
            self.eval(then, frame)
        } else {
            self.progn(otherwise, frame)
        }
    }

    /// `while`, from the start of an iteration; `args` is `(cond body...)`.
    pub fn while_loop(&self, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let (cond, body) = next(args).expect("checked by `while`");
        loop {
            let c = self
                .eval(cond, frame)
                .or_break(|| K::WhileCond { args, frame })?;
            if !is_true(c) {
                return Ok(Value::None);
            }
            self.progn(body, frame)
                .or_break(|| K::WhileBody { args, frame })?;
        }
    }

    /// `&&` (`want` false) and `||` (`want` true) over the operands `args`.
    pub fn logic(&self, want: bool, mut args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        while let Some((a, rest)) = next(args) {
            let v = self
                .eval(a, frame)
                .or_break(|| K::Logic { want, rest, frame })?;
            if is_true(v) == want {
                return Ok(Value::Int(want as i32));
            }
            args = rest;
        }
        Ok(Value::Int(!want as i32))
    }

    /// `(run-transactions)`: in the main program, a transaction break; in a queued
    /// transaction, an error (it would have to commit a transaction that is not finished).
    pub fn run_transactions(&self) -> R<'tx> {
        match self.queue {
            Queue::Main => Err(Stop(Box::new(Stopped::Break(Vec::new())))),
            Queue::Task(_) => Err(Error::new(
                "run-transactions: not possible inside a transaction queued with 'transaction' \
                 (only the main program can commit and wait for the queued ones)",
            )
            .into()),
        }
    }

    /// Continues the work of record `k`, given the value the work it waited for produced.
    pub fn resume(&self, k: Kont<'tx>, v: Value<'tx>) -> R<'tx> {
        self.check_stack()?;
        match k {
            K::Progn { rest, frame } => {
                if rest.is_none() {
                    Ok(v)
                } else {
                    self.progn(rest, frame)
                }
            }
            K::Return => Ok(v),
            K::Bind {
                sym,
                param,
                params,
                args,
                frame,
                callee,
                body,
                now,
            } => {
                let p = as_kind(param, Kind::Symbol, "DuSymbol_Id")?;
                self.bind_local(callee, p, v);
                self.bind(sym, params, args, frame, callee, body, now)
            }
            K::Setq { sym, rest, frame } => {
                self.set_var(frame, sym, v)?;
                if rest.is_none() {
                    Ok(v)
                } else {
                    self.setq(rest, frame)
                }
            }
            K::Args {
                b,
                mut done,
                forms,
                rest,
                frame,
            } => {
                done.push(v);
                self.strict(b, ArgBuf::from_vec(done), forms, rest, frame)
            }
            K::If { rest, frame } => self.branch(is_true(v), rest, frame),
            K::WhileCond { args, frame } => {
                if !is_true(v) {
                    return Ok(Value::None);
                }
                let (_, body) = next(args).expect("checked by `while`");
                self.progn(body, frame)
                    .or_break(|| K::WhileBody { args, frame })?;
                self.while_loop(args, frame)
            }
            K::WhileBody { args, frame } => self.while_loop(args, frame),
            K::Logic { want, rest, frame } => {
                if is_true(v) == want {
                    Ok(Value::Int(want as i32))
                } else {
                    self.logic(want, rest, frame)
                }
            }
        }
    }

    /// Writes a line of program output (making the transaction inevitable first, so that it
    /// is written exactly once).
    pub fn write_out(&self, bytes: &[u8]) {
        self.tx.become_inevitable();
        let mut out = self.it.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(bytes);
    }

    /// Appends the printed form of `v`.
    pub fn repr(&self, out: &mut Vec<u8>, v: Value<'tx>) -> Result<(), Error> {
        self.check_stack()?;
        match v {
            Value::None => out.extend_from_slice(b"None"),
            Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Value::Obj(o) => match heap::kind(o) {
                Kind::Symbol => {
                    out.push(b'\'');
                    out.extend_from_slice(&self.it.symbol_name_bytes(heap::symbol_id(o)));
                    out.push(b'\'');
                }
                Kind::Cons => {
                    out.extend_from_slice(b"( ");
                    let mut cell = o;
                    let tail = loop {
                        let (car, cdr) = heap::cons_parts(cell);
                        self.repr(out, car)?;
                        match cdr.as_cons() {
                            Some(c) => {
                                out.push(b' ');
                                cell = c;
                            }
                            None => break cdr,
                        }
                    };
                    if !tail.is_none() {
                        out.extend_from_slice(b" . ");
                        self.repr(out, tail)?;
                    }
                    out.extend_from_slice(b" )");
                }
                Kind::List => {
                    let n = list::len(o);
                    if n == 0 {
                        out.extend_from_slice(b"[]");
                    } else {
                        out.extend_from_slice(b"[ ");
                        for i in 0..n {
                            let item = list::get(o, i).unwrap_or(Value::None);
                            self.repr(out, item)?;
                            out.push(b' ');
                        }
                        out.push(b']');
                    }
                }
                Kind::Container => {
                    out.extend_from_slice(b"<container ");
                    self.repr(out, heap::container_get(o))?;
                    out.push(b'>');
                }
            },
        }
        Ok(())
    }
}
