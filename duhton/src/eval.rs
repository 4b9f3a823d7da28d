//! The evaluator: `eval`, calls, frames and every builtin, running inside one transaction.

use std::cell::RefCell;
use std::io::Write;

use stm::{Gc, Tx};
use stm_runtime as stm;

use crate::heap::{self, Call, Fr, Globals, Kind, Obj, Value};
use crate::{list, Error, Interp};

/// The builtins, in the order of their symbol ids (symbol `i` names builtin `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Progn,
    Setq,
    Print,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Xor,
    Shl,
    Shr,
    Lt,
    Le,
    Eq,
    Ne,
    Gt,
    Ge,
    And,
    Or,
    Not,
    Type,
    Quote,
    List,
    Container,
    Get,
    Set,
    Append,
    Pop,
    Len,
    If,
    While,
    Defun,
    Car,
    Cdr,
    Cons,
    Pair,
    Defined,
    Assert,
    Transaction,
    RunTransactions,
    Sleepms,
    Time,
}

/// Builtin names and what they are; symbol ids `0..BUILTINS.len()` are these names.
pub(crate) const BUILTINS: [(&str, Builtin); 42] = [
    ("progn", Builtin::Progn),
    ("setq", Builtin::Setq),
    ("print", Builtin::Print),
    ("+", Builtin::Add),
    ("-", Builtin::Sub),
    ("*", Builtin::Mul),
    ("/", Builtin::Div),
    ("%", Builtin::Mod),
    ("^", Builtin::Xor),
    ("<<", Builtin::Shl),
    (">>", Builtin::Shr),
    ("<", Builtin::Lt),
    ("<=", Builtin::Le),
    ("==", Builtin::Eq),
    ("!=", Builtin::Ne),
    (">", Builtin::Gt),
    (">=", Builtin::Ge),
    ("&&", Builtin::And),
    ("||", Builtin::Or),
    ("not", Builtin::Not),
    ("type", Builtin::Type),
    ("quote", Builtin::Quote),
    ("list", Builtin::List),
    ("container", Builtin::Container),
    ("get", Builtin::Get),
    ("set", Builtin::Set),
    ("append", Builtin::Append),
    ("pop", Builtin::Pop),
    ("len", Builtin::Len),
    ("if", Builtin::If),
    ("while", Builtin::While),
    ("defun", Builtin::Defun),
    ("car", Builtin::Car),
    ("cdr", Builtin::Cdr),
    ("cons", Builtin::Cons),
    ("pair?", Builtin::Pair),
    ("defined?", Builtin::Defined),
    ("assert", Builtin::Assert),
    ("transaction", Builtin::Transaction),
    ("run-transactions", Builtin::RunTransactions),
    ("sleepms", Builtin::Sleepms),
    ("time", Builtin::Time),
];

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
pub(crate) const SYM_NONE: u32 = BUILTINS.len() as u32;

/// What a call names (see [`Cx::lookup_function`]).
pub(crate) enum Function<'tx> {
    /// A user function: its `(params . body)`.
    User(Gc<'tx, Obj>),
    /// A builtin.
    Builtin(Builtin),
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

type R<'tx> = Result<Value<'tx>, Error>;

/// The type name `type` returns.
pub(crate) fn type_name(v: Value<'_>) -> &'static str {
    match v {
        Value::None => "NoneType",
        Value::Int(_) => "int",
        Value::Obj(o) => match heap::kind(o) {
            Kind::Cons => "cons",
            Kind::List => "list",
            Kind::Container => "container",
            Kind::Symbol => "symbol",
        },
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

fn as_int(v: Value<'_>, wher: &str) -> Result<i32, Error> {
    match v {
        Value::Int(i) => Ok(i),
        _ => Err(Error(format!(
            "{wher}: expected 'int' argument, got '{}'",
            type_name(v)
        ))),
    }
}

fn as_kind<'tx>(v: Value<'tx>, k: Kind, wher: &str) -> Result<Gc<'tx, Obj>, Error> {
    match v {
        Value::Obj(o) if heap::kind(o) == k => Ok(o),
        _ => {
            let want = match k {
                Kind::Cons => "cons",
                Kind::List => "list",
                Kind::Container => "container",
                Kind::Symbol => "symbol",
            };
            Err(Error(format!(
                "{wher}: expected '{want}' argument, got '{}'",
                type_name(v)
            )))
        }
    }
}

/// Splits an argument list into its first form and the rest.
#[inline(always)]
fn next(args: Value<'_>) -> Option<(Value<'_>, Value<'_>)> {
    args.as_cons().map(heap::cons_parts)
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

    /// Evaluates `v` in `frame` (`None`: the global frame).
    pub fn eval(&self, v: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let Value::Obj(o) = v else {
            return Ok(v);
        };
        match heap::kind(o) {
            Kind::Symbol => self.lookup(o, frame),
            Kind::Cons => {
                let (f, args) = heap::cons_parts(o);
                self.call(f, args, frame, true)
            }
            Kind::List | Kind::Container => Ok(v),
        }
    }

    fn lookup(&self, sym: Gc<'tx, Obj>, frame: Option<Fr<'tx>>) -> R<'tx> {
        if let Some(fr) = frame {
            if let Some(v) = fr.value(sym) {
                return Ok(v);
            }
        }
        heap::global_value(sym).ok_or_else(|| {
            Error(format!(
                "symbol not defined as a variable: '{}'",
                self.it.symbol_name(heap::symbol_id(sym))
            ))
        })
    }

    /// The symbol table entry `id`.
    pub fn symbol(&self, id: u32) -> Gc<'tx, Obj> {
        match list::get(heap::symtab(self.globals), id as usize) {
            Some(Value::Obj(o)) => o,
            _ => unreachable!("symbol ids index the symbol table"),
        }
    }

    /// `(f args...)`: run now, or (`now == false`, `transaction`) queue the call.
    fn call(&self, f: Value<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>, now: bool) -> R<'tx> {
        self.check_stack()?;
        let sym = match f {
            Value::Obj(o) if heap::kind(o) == Kind::Symbol => o,
            _ => {
                let mut line = b"_DuFrame_EvalCall: ".to_vec();
                self.repr(&mut line, f)?;
                line.push(b'\n');
                self.write_out(&line);
                return Err(Error::new("expected a symbol to execute"));
            }
        };
        match self.lookup_function(sym, frame) {
            Function::User(func) => self.call_user(sym, func, args, frame, now),
            Function::Builtin(_) if !now => Err(Error(format!(
                "symbol refers to a macro: '{}'",
                self.it.symbol_name(heap::symbol_id(sym))
            ))),
            Function::Builtin(b) => self.builtin(b, args, frame),
            Function::Missing => Err(Error(format!(
                "symbol not defined as a function: '{}'",
                self.it.symbol_name(heap::symbol_id(sym))
            ))),
        }
    }

    /// What `(sym ...)` calls in `frame`: the local entry for `sym` if there is one (even
    /// one holding only a value), else the global user function, else the builtin.
    pub fn lookup_function(&self, sym: Gc<'tx, Obj>, frame: Option<Fr<'tx>>) -> Function<'tx> {
        let local = frame.and_then(|fr| fr.function(sym));
        let func = match local {
            Some(f) => f,
            None => heap::global_function(sym),
        };
        if let Some(func) = func {
            return Function::User(func);
        }
        let id = heap::symbol_id(sym) as usize;
        match BUILTINS.get(id) {
            Some((_, b)) if local.is_none() => Function::Builtin(*b),
            _ => Function::Missing,
        }
    }

    /// Evaluates the arguments of a call of `func` (named `sym`) in `frame` and binds them
    /// in `callee`; returns the function's body.
    pub fn bind_args(
        &self,
        sym: Gc<'tx, Obj>,
        func: Gc<'tx, Obj>,
        mut args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        callee: Fr<'tx>,
    ) -> R<'tx> {
        let (mut params, body) = heap::cons_parts(func);
        while let Some((param, rest)) = next(params) {
            let Some((arg, more)) = next(args) else {
                return Err(Error(format!(
                    "call to '{}': not enough arguments",
                    self.it.symbol_name(heap::symbol_id(sym))
                )));
            };
            let v = self.eval(arg, frame)?;
            let p = as_kind(param, Kind::Symbol, "DuSymbol_Id")?;
            callee.set_value(p, v, &self.spare);
            params = rest;
            args = more;
        }
        if !args.is_none() {
            return Err(Error(format!(
                "call to '{}': too many arguments",
                self.it.symbol_name(heap::symbol_id(sym))
            )));
        }
        Ok(body)
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
        let body = self.bind_args(sym, func, args, frame, callee)?;
        if now {
            let result = self.progn(body, Some(callee))?;
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

    /// Evaluates each form, returns the last value (None if none).
    pub fn progn(&self, mut forms: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let mut result = Value::None;
        while let Some((form, rest)) = next(forms) {
            result = self.eval(form, frame)?;
            forms = rest;
        }
        Ok(result)
    }

    fn args1(&self, name: &str, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        match next(args) {
            Some((a, Value::None)) => self.eval(a, frame),
            _ => Err(Error(format!("{name}: expected one argument"))),
        }
    }

    fn args2(
        &self,
        name: &str,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
    ) -> Result<(Value<'tx>, Value<'tx>), Error> {
        if let Some((a, rest)) = next(args) {
            if let Some((b, Value::None)) = next(rest) {
                let a = self.eval(a, frame)?;
                let b = self.eval(b, frame)?;
                return Ok((a, b));
            }
        }
        Err(Error(format!("{name}: expected two arguments")))
    }

    /// Binds a variable in the current frame.
    fn set_var(&self, frame: Option<Fr<'tx>>, sym: Value<'tx>, v: Value<'tx>) -> Result<(), Error> {
        let sym = as_kind(sym, Kind::Symbol, "DuSymbol_Id")?;
        match frame {
            Some(fr) => fr.set_value(sym, v, &self.spare),
            None => heap::set_global_value(sym, v),
        }
        Ok(())
    }

    /// Folds the evaluated int arguments with `op`, starting from `init`.
    fn fold(
        &self,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        init: i32,
        op: impl Fn(i32, i32) -> i32,
    ) -> R<'tx> {
        let mut acc = init;
        let mut args = args;
        while let Some((a, rest)) = next(args) {
            let v = self.eval(a, frame)?;
            acc = op(acc, as_int(v, "DuInt_AsInt")?);
            args = rest;
        }
        Ok(Value::Int(acc))
    }

    /// `/` and `%`: the first argument, then a left fold that fails on zero.
    fn divide(
        &self,
        name: &str,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        op: impl Fn(i32, i32) -> i32,
    ) -> R<'tx> {
        let Some((first, mut args)) = next(args) else {
            return Ok(Value::Int(0));
        };
        let mut acc = as_int(self.eval(first, frame)?, "DuInt_AsInt")?;
        while let Some((a, rest)) = next(args) {
            let d = as_int(self.eval(a, frame)?, "DuInt_AsInt")?;
            if d == 0 {
                return Err(Error(format!("{name}: division by zero")));
            }
            acc = op(acc, d);
            args = rest;
        }
        Ok(Value::Int(acc))
    }

    /// `<<` / `>>`: a left fold from the first argument (at least one).
    fn shift(
        &self,
        name: &str,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        op: impl Fn(i32, i32) -> i32,
    ) -> R<'tx> {
        let Some((first, rest)) = next(args) else {
            return Err(Error(format!("{name}: expected at least one argument")));
        };
        let init = as_int(self.eval(first, frame)?, "DuInt_AsInt")?;
        self.fold(rest, frame, init, op)
    }

    fn compare(
        &self,
        args: Value<'tx>,
        frame: Option<Fr<'tx>>,
        op: impl Fn(i32, i32) -> bool,
    ) -> R<'tx> {
        let (a, b) = self.args2("comparison", args, frame)?;
        let a = as_int(a, "DuInt_AsInt")?;
        let b = as_int(b, "DuInt_AsInt")?;
        Ok(Value::Int(op(a, b) as i32))
    }

    fn builtin(&self, b: Builtin, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        match b {
            Builtin::Progn => self.progn(args, frame),
            Builtin::Setq => {
                let mut result = Value::None;
                let mut args = args;
                while let Some((sym, rest)) = next(args) {
                    let Some((expr, rest)) = next(rest) else {
                        return Err(Error::new("setq: number of arguments is odd"));
                    };
                    let v = self.eval(expr, frame)?;
                    self.set_var(frame, sym, v)?;
                    result = v;
                    args = rest;
                }
                Ok(result)
            }
            Builtin::Print => {
                let mut values = Vec::new();
                let mut args = args;
                while let Some((a, rest)) = next(args) {
                    values.push(self.eval(a, frame)?);
                    args = rest;
                }
                let mut line = Vec::new();
                for (i, v) in values.into_iter().enumerate() {
                    if i > 0 {
                        line.push(b' ');
                    }
                    self.repr(&mut line, v)?;
                }
                line.push(b'\n');
                self.write_out(&line);
                Ok(Value::None)
            }
            Builtin::Add => self.fold(args, frame, 0, i32::wrapping_add),
            Builtin::Mul => self.fold(args, frame, 1, i32::wrapping_mul),
            Builtin::Xor => self.fold(args, frame, 0, |a, b| a ^ b),
            Builtin::Sub => match next(args) {
                None => Ok(Value::Int(0)),
                Some((first, rest)) => {
                    let init = as_int(self.eval(first, frame)?, "DuInt_AsInt")?;
                    self.fold(rest, frame, init, i32::wrapping_sub)
                }
            },
            Builtin::Div => self.divide("/", args, frame, i32::wrapping_div),
            Builtin::Mod => self.divide("%", args, frame, i32::wrapping_rem),
            Builtin::Shl => self.shift("<<", args, frame, |a, b| a.wrapping_shl(b as u32)),
            Builtin::Shr => self.shift(">>", args, frame, |a, b| a.wrapping_shr(b as u32)),
            Builtin::Lt => self.compare(args, frame, |a, b| a < b),
            Builtin::Le => self.compare(args, frame, |a, b| a <= b),
            Builtin::Eq => self.compare(args, frame, |a, b| a == b),
            Builtin::Ne => self.compare(args, frame, |a, b| a != b),
            Builtin::Gt => self.compare(args, frame, |a, b| a > b),
            Builtin::Ge => self.compare(args, frame, |a, b| a >= b),
            Builtin::And | Builtin::Or => {
                let want = b == Builtin::Or;
                let mut args = args;
                while let Some((a, rest)) = next(args) {
                    if is_true(self.eval(a, frame)?) == want {
                        return Ok(Value::Int(want as i32));
                    }
                    args = rest;
                }
                Ok(Value::Int(!want as i32))
            }
            Builtin::Not => Ok(Value::Int(!is_true(self.args1("not", args, frame)?) as i32)),
            Builtin::Type => {
                let v = self.args1("type", args, frame)?;
                Ok(Value::Obj(self.symbol(self.it.symbol_id(type_name(v)))))
            }
            Builtin::Quote => match next(args) {
                Some((form, Value::None)) => Ok(form),
                _ => Err(Error::new("quote: expected one argument")),
            },
            Builtin::List => {
                let l = heap::new_list(self.tx);
                let mut args = args;
                while let Some((a, rest)) = next(args) {
                    let v = self.eval(a, frame)?;
                    list::push(self.tx, l, v);
                    args = rest;
                }
                Ok(Value::Obj(l))
            }
            Builtin::Container => {
                let v = if args.is_none() {
                    Value::None
                } else {
                    self.args1("container", args, frame)?
                };
                Ok(Value::Obj(heap::new_container(self.tx, v)))
            }
            Builtin::Get => self.get(args, frame),
            Builtin::Set => self.set(args, frame),
            Builtin::Append => {
                let (l, v) = self.args2("append", args, frame)?;
                let lst = as_kind(l, Kind::List, "DuList_Append")?;
                list::push(self.tx, lst, v);
                Ok(l)
            }
            Builtin::Pop => self.pop(args, frame),
            Builtin::Len => {
                let v = self.args1("len", args, frame)?;
                match v {
                    Value::Obj(o) if heap::kind(o) == Kind::List => {
                        Ok(Value::Int(list::len(o) as i32))
                    }
                    _ => Err(Error(format!(
                        "object of type '{}' has no length",
                        type_name(v)
                    ))),
                }
            }
            Builtin::If => {
                let Some((cond, rest)) = next(args).filter(|(_, r)| !r.is_none()) else {
                    return Err(Error::new("if: expected at least two arguments"));
                };
                let c = self.eval(cond, frame)?;
                let (then, otherwise) = next(rest).expect("checked above");
                if is_true(c) {
                    self.eval(then, frame)
                } else {
                    self.progn(otherwise, frame)
                }
            }
            Builtin::While => {
                let Some((cond, body)) = next(args) else {
                    return Err(Error::new("while: expected at least one argument"));
                };
                while is_true(self.eval(cond, frame)?) {
                    self.progn(body, frame)?;
                }
                Ok(Value::None)
            }
            Builtin::Defun => {
                let Some((name, rest)) = next(args).filter(|(_, r)| !r.is_none()) else {
                    return Err(Error::new("defun: expected at least two arguments"));
                };
                let name = as_kind(name, Kind::Symbol, "DuSymbol_Id")?;
                let func = rest.as_cons().expect("checked above");
                match frame {
                    Some(fr) => fr.set_function(name, func),
                    None => heap::set_global_function(name, func),
                }
                Ok(Value::None)
            }
            Builtin::Car | Builtin::Cdr => {
                let (name, wher) = if b == Builtin::Car {
                    ("car", "DuCons_Car")
                } else {
                    ("cdr", "DuCons_Cdr")
                };
                let v = self.args1(name, args, frame)?;
                let (car, cdr) = heap::cons_parts(as_kind(v, Kind::Cons, wher)?);
                Ok(if b == Builtin::Car { car } else { cdr })
            }
            Builtin::Cons => {
                let (a, d) = self.args2("cons", args, frame)?;
                Ok(Value::Obj(heap::new_cons(self.tx, a, d)))
            }
            Builtin::Pair => {
                let v = self.args1("pair?", args, frame)?;
                Ok(Value::Int(v.as_cons().is_some() as i32))
            }
            Builtin::Defined => {
                let Some((sym, Value::None)) = next(args) else {
                    return Err(Error::new("defined?: expected one argument"));
                };
                let sym = as_kind(sym, Kind::Symbol, "DuSymbol_Id")?;
                let local = frame.and_then(|fr| fr.value(sym));
                let found = local.is_some() || heap::global_value(sym).is_some();
                Ok(Value::Int(found as i32))
            }
            Builtin::Assert => {
                let v = self.args1("assert", args, frame)?;
                if as_int(v, "DuInt_AsInt")? == 0 {
                    let (form, _) = next(args).expect("one argument");
                    let mut line = b"assert failed: ".to_vec();
                    self.repr(&mut line, form)?;
                    line.push(b'\n');
                    self.write_out(&line);
                    return Err(Error::new("assert failed"));
                }
                Ok(Value::None)
            }
            Builtin::Transaction => {
                let Some((f, rest)) = next(args) else {
                    return Err(Error::new("transaction: expected at least one argument"));
                };
                self.call(f, rest, frame, false)?;
                Ok(Value::None)
            }
            Builtin::RunTransactions => {
                if !args.is_none() {
                    return Err(Error::new("run-transactions: expected no argument"));
                }
                self.run_queued_inline()?;
                Ok(Value::None)
            }
            Builtin::Sleepms => {
                let ms = as_int(self.args1("sleepms", args, frame)?, "DuInt_AsInt")?;
                let _ = writeln!(std::io::stderr(), "[sleeping {ms} ms]");
                std::thread::sleep(std::time::Duration::from_millis(ms.max(0) as u64));
                let _ = writeln!(std::io::stderr(), "[slept {ms} ms]");
                Ok(Value::None)
            }
            Builtin::Time => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                Ok(Value::Int((now & 0x7fff_ffff) as i32))
            }
        }
    }

    fn get(&self, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let Some((expr, rest)) = next(args) else {
            return Err(Error::new("get: expected at least one argument"));
        };
        let obj = self.eval(expr, frame)?;
        match obj {
            Value::Obj(o) if heap::kind(o) == Kind::List => {
                let Some((idx, Value::None)) = next(rest) else {
                    return Err(Error::new("get with a list: expected two arguments"));
                };
                let idx = as_int(self.eval(idx, frame)?, "DuInt_AsInt")?;
                usize::try_from(idx)
                    .ok()
                    .and_then(|i| list::get(o, i))
                    .ok_or_else(|| Error::new("list_get: index out of range"))
            }
            Value::Obj(o) if heap::kind(o) == Kind::Container => {
                if !rest.is_none() {
                    return Err(Error::new("get with a container: expected one argument"));
                }
                Ok(heap::container_get(o))
            }
            _ => Err(Error(format!(
                "get: bad argument type '{}'",
                type_name(obj)
            ))),
        }
    }

    fn set(&self, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let Some((expr, rest)) = next(args).filter(|(_, r)| !r.is_none()) else {
            return Err(Error::new("set: expected at least two arguments"));
        };
        let obj = self.eval(expr, frame)?;
        let (expr2, rest2) = next(rest).expect("checked above");
        match obj {
            Value::Obj(o) if heap::kind(o) == Kind::List => {
                let Some((expr3, Value::None)) = next(rest2) else {
                    return Err(Error::new("set with a list: expected three arguments"));
                };
                let idx = self.eval(expr2, frame)?;
                let v = self.eval(expr3, frame)?;
                let idx = as_int(idx, "DuInt_AsInt")?;
                let ok = usize::try_from(idx).is_ok_and(|i| list::set(o, i, v));
                if !ok {
                    return Err(Error::new("list_set: index out of range"));
                }
            }
            Value::Obj(o) if heap::kind(o) == Kind::Container => {
                if !rest2.is_none() {
                    return Err(Error::new("set with a container: expected two arguments"));
                }
                let v = self.eval(expr2, frame)?;
                heap::container_set(o, v);
            }
            _ => {
                return Err(Error(format!(
                    "set: bad argument type '{}'",
                    type_name(obj)
                )))
            }
        }
        Ok(Value::None)
    }

    fn pop(&self, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
        let Some((expr, rest)) = next(args) else {
            return Err(Error::new("pop: expected at least one argument"));
        };
        let l = self.eval(expr, frame)?;
        let (lst, idx) = match next(rest) {
            None => {
                let lst = as_kind(l, Kind::List, "DuList_Size")?;
                let n = list::len(lst);
                if n == 0 {
                    return Err(Error::new("pop: empty list"));
                }
                (lst, (n - 1) as i64)
            }
            Some((idx, more)) => {
                if !more.is_none() {
                    return Err(Error::new("pop: expected at most two arguments"));
                }
                let idx = as_int(self.eval(idx, frame)?, "DuInt_AsInt")?;
                (as_kind(l, Kind::List, "DuList_Pop")?, idx as i64)
            }
        };
        usize::try_from(idx)
            .ok()
            .and_then(|i| list::pop(lst, i))
            .ok_or_else(|| Error::new("list_pop: index out of range"))
    }

    /// `(run-transactions)` where the current transaction cannot be committed (inside a
    /// function, or in a queued transaction): the calls queued so far run here, one after
    /// the other, newest first, inside this transaction. Since nothing else runs while the
    /// main program runs, this is the same as committing and running them on one thread.
    fn run_queued_inline(&self) -> Result<(), Error> {
        loop {
            let call = match &self.queue {
                Queue::Main => heap::pop_pending(self.globals),
                Queue::Task(q) => q.borrow_mut().pop(),
            };
            let Some(call) = call else {
                return Ok(());
            };
            let (body, frame) = heap::call_parts(call);
            self.progn(body.map_or(Value::None, Value::Obj), Some(Fr { gc: frame }))?;
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
