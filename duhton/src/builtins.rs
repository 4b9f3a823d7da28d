//! The builtins, one function each, and the table that names them.
//!
//! A builtin is either *special* (it receives its argument forms and evaluates what it
//! wants: `progn`, `setq`, `if`, `while`, `quote`...) or *strict* (the evaluator checks
//! the number of argument forms, evaluates them left to right, then calls it with their
//! values). Strict builtins never evaluate anything themselves, so a transaction break in
//! one of their arguments is resumed by the evaluator alone (`K::Args`).

use std::io::Write;

use crate::eval::{as_int, as_kind, is_true, next, type_name, Cx, R};
use crate::heap::{self, Fr, Kind, Value};
use crate::{list, Error};

/// A special builtin: the argument forms and the frame they are evaluated in.
pub(crate) type SpecialFn = for<'a, 'tx> fn(&'a Cx<'tx>, Value<'tx>, Option<Fr<'tx>>) -> R<'tx>;
/// A strict builtin: the argument values and the argument forms (`assert` shows its form).
pub(crate) type StrictFn = for<'a, 'tx> fn(&'a Cx<'tx>, &'a [Value<'tx>], Value<'tx>) -> R<'tx>;

/// How many argument forms a strict builtin takes (checked before any is evaluated).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arity {
    /// Any number.
    Any,
    /// Exactly this many, else the error message.
    Exactly(usize, &'static str),
    /// At least this many.
    AtLeast(usize, &'static str),
    /// At most this many.
    AtMost(usize, &'static str),
    /// Between the two (inclusive): the messages for too few and too many.
    Between(usize, usize, &'static str, &'static str),
}

impl Arity {
    /// Checks `n` argument forms.
    #[inline(always)]
    pub fn check(self, n: usize) -> Result<(), Error> {
        let msg = match self {
            Arity::Any => return Ok(()),
            Arity::Exactly(k, msg) if n != k => msg,
            Arity::AtLeast(k, msg) if n < k => msg,
            Arity::AtMost(k, msg) if n > k => msg,
            Arity::Between(lo, _, msg, _) if n < lo => msg,
            Arity::Between(_, hi, _, msg) if n > hi => msg,
            _ => return Ok(()),
        };
        Err(Error::new(msg))
    }
}

/// What a builtin is.
#[derive(Clone, Copy)]
pub(crate) enum BuiltinKind {
    /// Receives its argument forms.
    Special(SpecialFn),
    /// Receives its evaluated arguments.
    Strict(Arity, StrictFn),
}

/// A builtin: its name and its function.
#[derive(Clone, Copy)]
pub(crate) struct Builtin {
    /// The name it is bound to.
    pub name: &'static str,
    /// Its function.
    pub kind: BuiltinKind,
}

const fn special(name: &'static str, f: SpecialFn) -> Builtin {
    Builtin {
        name,
        kind: BuiltinKind::Special(f),
    }
}

const fn strict(name: &'static str, arity: Arity, f: StrictFn) -> Builtin {
    Builtin {
        name,
        kind: BuiltinKind::Strict(arity, f),
    }
}

/// How many builtins there are.
pub(crate) const N_BUILTINS: usize = 42;

/// Every builtin; symbol ids `0..N_BUILTINS` are their names, in this order (a `static`:
/// indexing a `const` array at run time would copy it).
pub(crate) static BUILTINS: [Builtin; N_BUILTINS] = [
    special("progn", progn),
    special("setq", setq),
    strict("print", Arity::Any, print),
    strict("+", Arity::Any, add),
    strict("-", Arity::Any, sub),
    strict("*", Arity::Any, mul),
    strict("/", Arity::Any, div),
    strict("%", Arity::Any, rem),
    strict("^", Arity::Any, xor),
    strict(
        "<<",
        Arity::AtLeast(1, "<<: expected at least one argument"),
        shl,
    ),
    strict(
        ">>",
        Arity::AtLeast(1, ">>: expected at least one argument"),
        shr,
    ),
    strict("<", TWO_CMP, lt),
    strict("<=", TWO_CMP, le),
    strict("==", TWO_CMP, eq),
    strict("!=", TWO_CMP, ne),
    strict(">", TWO_CMP, gt),
    strict(">=", TWO_CMP, ge),
    special("&&", and),
    special("||", or),
    strict("not", Arity::Exactly(1, "not: expected one argument"), not),
    strict(
        "type",
        Arity::Exactly(1, "type: expected one argument"),
        type_,
    ),
    special("quote", quote),
    strict("list", Arity::Any, list_),
    strict(
        "container",
        Arity::AtMost(1, "container: expected one argument"),
        container,
    ),
    strict(
        "get",
        Arity::AtLeast(1, "get: expected at least one argument"),
        get,
    ),
    strict(
        "set",
        Arity::AtLeast(2, "set: expected at least two arguments"),
        set,
    ),
    strict(
        "append",
        Arity::Exactly(2, "append: expected two arguments"),
        append,
    ),
    strict(
        "pop",
        Arity::Between(
            1,
            2,
            "pop: expected at least one argument",
            "pop: expected at most two arguments",
        ),
        pop,
    ),
    strict("len", Arity::Exactly(1, "len: expected one argument"), len),
    special("if", if_),
    special("while", while_),
    special("defun", defun),
    strict("car", Arity::Exactly(1, "car: expected one argument"), car),
    strict("cdr", Arity::Exactly(1, "cdr: expected one argument"), cdr),
    strict(
        "cons",
        Arity::Exactly(2, "cons: expected two arguments"),
        cons,
    ),
    strict(
        "pair?",
        Arity::Exactly(1, "pair?: expected one argument"),
        pair,
    ),
    special("defined?", defined),
    strict(
        "assert",
        Arity::Exactly(1, "assert: expected one argument"),
        assert,
    ),
    special("transaction", transaction),
    special("run-transactions", run_transactions),
    strict(
        "sleepms",
        Arity::Exactly(1, "sleepms: expected one argument"),
        sleepms,
    ),
    special("time", time),
];

const TWO_CMP: Arity = Arity::Exactly(2, "comparison: expected two arguments");

/// `(progn form...)`: each in turn, the last one's value.
fn progn<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    cx.progn(args, frame)
}

/// `(setq sym expr...)`: binds in the current frame, returns the last value.
fn setq<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    cx.setq(args, frame)
}

/// `(print arg...)`: one line, arguments separated by a space; the transaction becomes
/// inevitable before the line is written.
fn print<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let mut line = Vec::new();
    for (i, &v) in vals.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        cx.repr(&mut line, v)?;
    }
    line.push(b'\n');
    cx.write_out(&line);
    Ok(Value::None)
}

/// A left fold of the int arguments from `init`.
#[inline(always)]
fn fold<'tx>(vals: &[Value<'tx>], init: i32, op: impl Fn(i32, i32) -> i32) -> R<'tx> {
    let mut acc = init;
    for &v in vals {
        acc = op(acc, as_int(v)?);
    }
    Ok(Value::Int(acc))
}

/// `(+ int...)`: the sum (0 without arguments).
fn add<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    fold(vals, 0, i32::wrapping_add)
}

/// `(* int...)`: the product (1 without arguments).
fn mul<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    fold(vals, 1, i32::wrapping_mul)
}

/// `(^ int...)`: the xor (0 without arguments).
fn xor<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    fold(vals, 0, |a, b| a ^ b)
}

/// `(- int...)`: the first minus the others (0 without arguments).
fn sub<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    match vals.split_first() {
        None => Ok(Value::Int(0)),
        Some((&first, rest)) => fold(rest, as_int(first)?, i32::wrapping_sub),
    }
}

/// `/` and `%`: the first, then a left fold that fails on zero (0 without arguments).
fn divide<'tx>(vals: &[Value<'tx>], name: &str, op: impl Fn(i32, i32) -> i32) -> R<'tx> {
    let Some((&first, rest)) = vals.split_first() else {
        return Ok(Value::Int(0));
    };
    let mut acc = as_int(first)?;
    for &v in rest {
        let d = as_int(v)?;
        if d == 0 {
            return Err(Error::from(format!("{name}: division by zero")).into());
        }
        acc = op(acc, d);
    }
    Ok(Value::Int(acc))
}

/// `(/ int...)`: truncating division.
fn div<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    divide(vals, "/", i32::wrapping_div)
}

/// `(% int...)`: remainder, with the sign of the dividend.
fn rem<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    divide(vals, "%", i32::wrapping_rem)
}

/// `(<< int int...)`: shifts left (count modulo 32).
fn shl<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    fold(&vals[1..], as_int(vals[0])?, |a, b| {
        a.wrapping_shl(b as u32)
    })
}

/// `(>> int int...)`: arithmetic shifts right (count modulo 32).
fn shr<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    fold(&vals[1..], as_int(vals[0])?, |a, b| {
        a.wrapping_shr(b as u32)
    })
}

/// A comparison of two ints: 1 or 0.
#[inline(always)]
fn compare<'tx>(vals: &[Value<'tx>], op: impl Fn(i32, i32) -> bool) -> R<'tx> {
    let a = as_int(vals[0])?;
    let b = as_int(vals[1])?;
    Ok(Value::Int(op(a, b) as i32))
}

/// `(< a b)`.
fn lt<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a < b)
}

/// `(<= a b)`.
fn le<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a <= b)
}

/// `(== a b)`.
fn eq<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a == b)
}

/// `(!= a b)`.
fn ne<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a != b)
}

/// `(> a b)`.
fn gt<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a > b)
}

/// `(>= a b)`.
fn ge<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    compare(vals, |a, b| a >= b)
}

/// `(&& form...)`: short-circuit, 1 or 0.
fn and<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    cx.logic(false, args, frame)
}

/// `(|| form...)`: short-circuit, 1 or 0.
fn or<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    cx.logic(true, args, frame)
}

/// `(not x)`: 1 or 0.
fn not<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    Ok(Value::Int(!is_true(vals[0]) as i32))
}

/// `(type x)`: the type name as a symbol.
fn type_<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let id = cx.it.symbol_id(type_name(vals[0]));
    Ok(Value::Obj(cx.symbol(id)))
}

/// `(quote form)`: the form, unevaluated.
fn quote<'tx>(_: &Cx<'tx>, args: Value<'tx>, _: Option<Fr<'tx>>) -> R<'tx> {
    match next(args) {
        Some((form, Value::None)) => Ok(form),
        _ => Err(Error::new("quote: expected one argument").into()),
    }
}

/// `(list x...)`: a new list.
fn list_<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let l = heap::new_list(cx.tx);
    for &v in vals {
        list::push(cx.tx, l, v);
    }
    Ok(Value::Obj(l))
}

/// `(container [x])`: a new box.
fn container<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let v = vals.first().copied().unwrap_or(Value::None);
    Ok(Value::Obj(heap::new_container(cx.tx, v)))
}

/// `(get list i)` or `(get box)`.
fn get<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    match vals[0] {
        Value::Obj(o) if heap::kind(o) == Kind::List => {
            let [_, idx] = vals else {
                return Err(Error::new("get with a list: expected two arguments").into());
            };
            let idx = as_int(*idx)?;
            usize::try_from(idx)
                .ok()
                .and_then(|i| list::get(o, i))
                .ok_or_else(|| Error::new("list_get: index out of range").into())
        }
        Value::Obj(o) if heap::kind(o) == Kind::Container => {
            if vals.len() != 1 {
                return Err(Error::new("get with a container: expected one argument").into());
            }
            Ok(heap::container_get(o))
        }
        v => Err(Error::from(format!("get: bad argument type '{}'", type_name(v))).into()),
    }
}

/// `(set list i v)` or `(set box v)`.
fn set<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    match vals[0] {
        Value::Obj(o) if heap::kind(o) == Kind::List => {
            let [_, idx, v] = vals else {
                return Err(Error::new("set with a list: expected three arguments").into());
            };
            let idx = as_int(*idx)?;
            if !usize::try_from(idx).is_ok_and(|i| list::set(o, i, *v)) {
                return Err(Error::new("list_set: index out of range").into());
            }
        }
        Value::Obj(o) if heap::kind(o) == Kind::Container => {
            let [_, v] = vals else {
                return Err(Error::new("set with a container: expected two arguments").into());
            };
            heap::container_set(o, *v);
        }
        v => return Err(Error::from(format!("set: bad argument type '{}'", type_name(v))).into()),
    }
    Ok(Value::None)
}

/// `(append list v)`: in place; returns the list.
fn append<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let lst = as_kind(vals[0], Kind::List, "DuList_Append")?;
    list::push(cx.tx, lst, vals[1]);
    Ok(vals[0])
}

/// `(pop list [i])`: removes and returns item i (default: the last).
fn pop<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let (lst, idx) = match vals {
        [l] => {
            let lst = as_kind(*l, Kind::List, "DuList_Size")?;
            let n = list::len(lst);
            if n == 0 {
                return Err(Error::new("pop: empty list").into());
            }
            (lst, (n - 1) as i64)
        }
        [l, idx] => {
            let idx = as_int(*idx)?;
            (as_kind(*l, Kind::List, "DuList_Pop")?, idx as i64)
        }
        _ => unreachable!("arity checked"),
    };
    usize::try_from(idx)
        .ok()
        .and_then(|i| list::pop(lst, i))
        .ok_or_else(|| Error::new("list_pop: index out of range").into())
}

/// `(len list)`.
fn len<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    match vals[0] {
        Value::Obj(o) if heap::kind(o) == Kind::List => Ok(Value::Int(list::len(o) as i32)),
        v => Err(Error::from(format!("object of type '{}' has no length", type_name(v))).into()),
    }
}

/// `(if cond then else...)`.
fn if_<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    let Some((cond, rest)) = next(args).filter(|(_, r)| !r.is_none()) else {
        return Err(Error::new("if: expected at least two arguments").into());
    };
    let c = cx
        .eval(cond, frame)
        .or_break(|| crate::eval::K::If { rest, frame })?;
    cx.branch(is_true(c), rest, frame)
}

use crate::eval::OrBreak;

/// `(while cond body...)`: None.
fn while_<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    if args.is_none() {
        return Err(Error::new("while: expected at least one argument").into());
    }
    cx.while_loop(args, frame)
}

/// `(defun name (params...) body...)`: in the current frame.
fn defun<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    let Some((name, rest)) = next(args).filter(|(_, r)| !r.is_none()) else {
        return Err(Error::new("defun: expected at least two arguments").into());
    };
    let name = as_kind(name, Kind::Symbol, "DuSymbol_Id")?;
    let func = rest.as_cons().expect("checked above");
    match frame {
        Some(fr) => cx.define_local(fr, name, func),
        None => heap::set_global_function(name, func),
    }
    Ok(Value::None)
}

/// `(car cons)`.
fn car<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    Ok(heap::cons_parts(as_kind(vals[0], Kind::Cons, "DuCons_Car")?).0)
}

/// `(cdr cons)`.
fn cdr<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    Ok(heap::cons_parts(as_kind(vals[0], Kind::Cons, "DuCons_Cdr")?).1)
}

/// `(cons a b)`.
fn cons<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    Ok(Value::Obj(heap::new_cons(cx.tx, vals[0], vals[1])))
}

/// `(pair? x)`: 1 for a cons.
fn pair<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    Ok(Value::Int(vals[0].as_cons().is_some() as i32))
}

/// `(defined? sym)`: whether the (unevaluated) symbol has a variable binding.
fn defined<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    let Some((sym, Value::None)) = next(args) else {
        return Err(Error::new("defined?: expected one argument").into());
    };
    let sym = as_kind(sym, Kind::Symbol, "DuSymbol_Id")?;
    let local = cx.local_value(frame, sym);
    let found = local.is_some() || heap::global_value(sym).is_some();
    Ok(Value::Int(found as i32))
}

/// `(assert int)`: fails, showing the form, if it is 0.
fn assert<'tx>(cx: &Cx<'tx>, vals: &[Value<'tx>], forms: Value<'tx>) -> R<'tx> {
    if as_int(vals[0])? == 0 {
        let (form, _) = next(forms).expect("one argument");
        let mut line = b"assert failed: ".to_vec();
        cx.repr(&mut line, form)?;
        line.push(b'\n');
        cx.write_out(&line);
        return Err(Error::new("assert failed").into());
    }
    Ok(Value::None)
}

/// `(transaction f args...)`: queues the call, arguments evaluated and bound now.
fn transaction<'tx>(cx: &Cx<'tx>, args: Value<'tx>, frame: Option<Fr<'tx>>) -> R<'tx> {
    let Some((f, rest)) = next(args) else {
        return Err(Error::new("transaction: expected at least one argument").into());
    };
    cx.call(f, rest, frame, false)
}

/// `(run-transactions)`: commits, runs the queued calls, continues.
fn run_transactions<'tx>(cx: &Cx<'tx>, args: Value<'tx>, _: Option<Fr<'tx>>) -> R<'tx> {
    if !args.is_none() {
        return Err(Error::new("run-transactions: expected no argument").into());
    }
    cx.run_transactions()
}

/// `(sleepms ms)`: sleeps, with notes on stderr.
fn sleepms<'tx>(_: &Cx<'tx>, vals: &[Value<'tx>], _: Value<'tx>) -> R<'tx> {
    let ms = as_int(vals[0])?;
    let _ = writeln!(std::io::stderr(), "[sleeping {ms} ms]");
    std::thread::sleep(std::time::Duration::from_millis(ms.max(0) as u64));
    let _ = writeln!(std::io::stderr(), "[slept {ms} ms]");
    Ok(Value::None)
}

/// `(time)`: wall-clock milliseconds, 31 bits (arguments ignored).
fn time<'tx>(_: &Cx<'tx>, _: Value<'tx>, _: Option<Fr<'tx>>) -> R<'tx> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(Value::Int((now & 0x7fff_ffff) as i32))
}
