//! # Duhton on the STM
//!
//! Duhton is the tiny Lisp-syntax language PyPy-STM's authors measured their STM on. This
//! crate is a Duhton interpreter written in ordinary Rust on `stm-runtime`: every Duhton
//! object (conses, lists, containers, symbols, the symbol table, frames, queued calls) lives
//! in the shared heap, and the calls queued with `(transaction f args...)` run as parallel
//! transactions on the runtime's [`TransactionQueue`]. Built with the feature
//! `stm-runtime/gil`, the same source runs one transaction at a time without read barriers:
//! the baseline of the overhead measurement.
//!
//! ```
//! let (out, result) = duhton::run_to_vec(b"(defun f (n) (print n)) (transaction f 42) (print 1)", 1);
//! assert!(result.is_ok());
//! assert_eq!(out, b"1\n42\n");
//! ```
//!
//! The language is described in the repository's `docs/duhton.md`.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, RwLock};

use stm::{Gc, Root, Stm, Tasks, TransactionQueue, Tx};
use stm_runtime as stm;

mod eval;
pub mod heap;
pub mod list;
pub mod reader;

use eval::{Builtin, Cx, Function, Queue, BUILTINS, EXTRA_SYMBOLS, SYM_NONE};
use heap::{Call, Fr, Frame, Globals, Obj, Value};
use reader::Token;

/// A Duhton error: the message printed after `Error: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An error with this message.
    pub fn new(msg: &str) -> Error {
        Error(msg.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// How an interpreter is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads that run queued transactions (`--num-threads`).
    pub threads: usize,
    /// Bytes of shared heap (virtual memory). Default: `DUHTON_HEAP_MB` or 2 GiB.
    pub heap_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        let heap_mb = std::env::var("DUHTON_HEAP_MB")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(2048);
        Options {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            heap_size: heap_mb << 20,
        }
    }
}

/// Stack of the thread that runs the main program.
const MAIN_STACK: usize = 256 << 20;

thread_local! {
    /// Bytes of stack the evaluator may use on this thread (0: not set, use the default).
    static STACK_BUDGET: Cell<usize> = const { Cell::new(0) };
    /// Lowest stack address the evaluator may reach on this thread (0: not computed yet).
    static STACK_LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// The stack limit of the calling thread, computed at its first use from where its stack
/// is now and how big it is (threads spawned with the default size get `RUST_MIN_STACK` or
/// 2 MiB, as std does).
fn stack_limit() -> usize {
    STACK_LIMIT.with(|l| {
        if l.get() == 0 {
            let mut budget = STACK_BUDGET.with(Cell::get);
            if budget == 0 {
                let size = std::env::var("RUST_MIN_STACK")
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(2 << 20);
                budget = size - size / 4;
            }
            let here = 0u8;
            let sp = std::hint::black_box(&here) as *const u8 as usize;
            l.set(sp.saturating_sub(budget).max(1));
        }
        l.get()
    })
}

/// Symbol names, by id and by name. Names are immutable, like the original's symbol
/// strings; the symbols themselves and the table of them are heap objects.
#[derive(Default)]
struct Names {
    by_id: Vec<Arc<[u8]>>,
    ids: HashMap<Arc<[u8]>, u32>,
}

/// A Duhton interpreter: a runtime, its root object and its output.
pub struct Interp {
    stm: Stm,
    globals: Root<Globals>,
    names: RwLock<Names>,
    pub(crate) out: Mutex<Box<dyn Write + Send>>,
    threads: usize,
    /// Held while a program or REPL input runs: one main program at a time, so the main
    /// program never runs beside another transaction of this interpreter (which is what
    /// lets symbols be read without barriers, see `heap::global_value`).
    running: Mutex<()>,
}

impl fmt::Debug for Interp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interp")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// What one main-program transaction stopped at.
enum Step {
    /// The end of the block, with the printed last value (REPL).
    Done(Option<Vec<u8>>),
    /// A form that needs a commit inside it, the forms after it, and whether it is the
    /// block's last form.
    Structural(Structural, Option<Root<Obj>>, bool),
}

/// Nested structural forms (calls included) the driver follows before it reports deep
/// recursion.
const MAX_DRIVER_DEPTH: usize = 2_000;

/// Statements of the main program that the driver runs itself, so that a
/// `(run-transactions)` inside them can commit the main program's transaction.
enum Structural {
    /// `(run-transactions)`.
    RunTransactions,
    /// `(progn body...)`: the body.
    Progn(Option<Root<Obj>>),
    /// `(while cond body...)`: the arguments.
    While(Root<Obj>),
    /// `(if cond then else...)`: the arguments.
    If(Root<Obj>),
    /// A call of a user function whose body has `run-transactions` in it.
    Call {
        /// The function's name.
        sym: Root<Obj>,
        /// Its `(params . body)`.
        func: Root<Obj>,
        /// The argument forms.
        args: Option<Root<Obj>>,
    },
}

impl Interp {
    /// A new interpreter writing program output to `out`.
    pub fn new(opts: Options, out: Box<dyn Write + Send>) -> Result<Interp, Error> {
        let threads = opts.threads.clamp(1, stm::MAX_SEGMENTS);
        let stm = Stm::builder()
            .segments(threads)
            .heap_size(opts.heap_size)
            .build()
            .map_err(|e| Error(e.to_string()))?;
        let globals = stm.atomically(|tx| tx.root(heap::new_globals(tx)));
        let interp = Interp {
            stm,
            globals,
            names: RwLock::new(Names::default()),
            out: Mutex::new(out),
            threads,
            running: Mutex::new(()),
        };
        interp.stm.atomically(|tx| {
            tx.become_inevitable();
            let cx = interp.cx(tx, Queue::Main);
            for (name, _) in BUILTINS {
                interp.intern(&cx, name.as_bytes());
            }
            for name in EXTRA_SYMBOLS {
                interp.intern(&cx, name.as_bytes());
            }
            heap::set_global_value(cx.symbol(SYM_NONE), Value::None);
        });
        Ok(interp)
    }

    /// The runtime (for statistics).
    pub fn stm(&self) -> &Stm {
        &self.stm
    }

    fn cx<'tx>(&'tx self, tx: &'tx Tx, queue: Queue<'tx>) -> Cx<'tx> {
        Cx {
            tx,
            it: self,
            globals: self.globals.get(tx),
            queue,
            stack_limit: stack_limit(),
            spare: Default::default(),
        }
    }

    /// The name of symbol `id`, as text.
    pub(crate) fn symbol_name(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.symbol_name_bytes(id)).into_owned()
    }

    /// The name of symbol `id`.
    pub(crate) fn symbol_name_bytes(&self, id: u32) -> Arc<[u8]> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.by_id[id as usize].clone()
    }

    /// The id of an interned symbol (the type names are interned at start).
    pub(crate) fn symbol_id(&self, name: &str) -> u32 {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.ids[name.as_bytes()]
    }

    /// The symbol named `name`, created if new. Only called by inevitable transactions (the
    /// reader's), so a new symbol is never rolled back after its name was recorded.
    fn intern<'tx>(&self, cx: &Cx<'tx>, name: &[u8]) -> Gc<'tx, Obj> {
        debug_assert!(cx.tx.is_inevitable());
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = names.ids.get(name) {
            drop(names);
            return cx.symbol(id);
        }
        let id = names.by_id.len() as u32;
        let sym = heap::new_symbol(cx.tx, id);
        list::push(cx.tx, heap::symtab(cx.globals), Value::Obj(sym));
        let name: Arc<[u8]> = name.into();
        names.by_id.push(name.clone());
        names.ids.insert(name, id);
        sym
    }

    /// Reads `src` into heap conses: the list of its top-level forms.
    fn read(&self, src: &[u8]) -> Result<Option<Root<Obj>>, Error> {
        let tokens = reader::tokenize(src)?;
        Ok(self.stm.atomically(|tx| {
            tx.become_inevitable();
            let cx = self.cx(tx, Queue::Main);
            let mut stack: Vec<Vec<Value<'_>>> = vec![Vec::new()];
            for t in &tokens {
                match t {
                    Token::Open => stack.push(Vec::new()),
                    Token::Close => {
                        let items = stack.pop().expect("balanced");
                        let v = build_list(tx, items);
                        stack.last_mut().expect("balanced").push(v);
                    }
                    Token::Int(i) => stack.last_mut().expect("a level").push(Value::Int(*i)),
                    Token::Sym(name) => {
                        let s = self.intern(&cx, name);
                        stack.last_mut().expect("a level").push(Value::Obj(s));
                    }
                }
            }
            let top = stack.pop().expect("the top level");
            build_list(tx, top).as_cons().map(|c| tx.root(c))
        }))
    }

    /// Runs a whole program: its top-level forms in the main transaction, then the queued
    /// transactions. Output goes to the interpreter's output, which is flushed at the end.
    pub fn run_source(&self, src: &[u8]) -> Result<(), Error> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = on_big_stack(|| {
            let forms = self.read(src)?;
            self.exec_block(forms, false, false, None, 0)?;
            self.run_pending()
        });
        self.flush();
        result
    }

    /// Runs one REPL input: its forms, then prints the value of the last one, then runs
    /// the queued transactions.
    pub fn run_repl_input(&self, src: &[u8]) -> Result<(), Error> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = on_big_stack(|| {
            let forms = self.read(src)?;
            let mut last = self.exec_block(forms, false, true, None, 0)?;
            last.push(b'\n');
            {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = out.write_all(&last);
            }
            self.run_pending()
        });
        self.flush();
        result
    }

    /// Flushes the program output.
    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.flush();
    }

    /// Runs a block of statements of the main program (a cons chain; only its first form
    /// if `first_only`) in `frame` (`None`: the global frame), in main-program transactions
    /// that end around structural forms. Returns the printed value of the last form when
    /// `want_last` (the REPL shows it).
    fn exec_block(
        &self,
        forms: Option<Root<Obj>>,
        first_only: bool,
        want_last: bool,
        frame: Option<&Root<Frame>>,
        depth: usize,
    ) -> Result<Vec<u8>, Error> {
        if depth > MAX_DRIVER_DEPTH {
            return Err(Error::new("maximum recursion depth exceeded"));
        }
        let mut rest = forms;
        let mut last = b"None".to_vec();
        while let Some(r) = rest.take() {
            let step = self.stm.try_atomically(|tx| {
                let cx = self.cx(tx, Queue::Main);
                let fr = frame_in(frame, tx);
                let mut cur = Value::Obj(r.get(tx));
                let mut shown = None;
                while let Some(c) = cur.as_cons() {
                    let (form, next) = heap::cons_parts(c);
                    let next = if first_only { Value::None } else { next };
                    let is_last = next.is_none();
                    if let Some(s) = self.structural(&cx, form, fr)? {
                        let after = next.as_cons().map(|n| tx.root(n));
                        return Ok(Step::Structural(s, after, is_last));
                    }
                    let v = cx.eval(form, fr)?;
                    if want_last && is_last {
                        let mut b = Vec::new();
                        cx.repr(&mut b, v)?;
                        shown = Some(b);
                    }
                    cur = next;
                }
                Ok::<_, Error>(Step::Done(shown))
            })?;
            match step {
                Step::Done(shown) => {
                    if let Some(b) = shown {
                        last = b;
                    }
                }
                Step::Structural(s, after, is_last) => {
                    last = self.exec_structural(s, want_last && is_last, frame, depth + 1)?;
                    rest = after;
                }
            }
        }
        Ok(last)
    }

    fn exec_structural(
        &self,
        s: Structural,
        want_last: bool,
        frame: Option<&Root<Frame>>,
        depth: usize,
    ) -> Result<Vec<u8>, Error> {
        let none = || b"None".to_vec();
        match s {
            Structural::RunTransactions => self.run_pending().map(|_| none()),
            Structural::Progn(body) => self.exec_block(body, false, want_last, frame, depth),
            Structural::While(args) => loop {
                let (go, body) = self.stm.try_atomically(|tx| {
                    let cx = self.cx(tx, Queue::Main);
                    let (cond, body) = heap::cons_parts(args.get(tx));
                    let go = eval::is_true(cx.eval(cond, frame_in(frame, tx))?);
                    Ok::<_, Error>((go, body.as_cons().map(|b| tx.root(b))))
                })?;
                if !go {
                    return Ok(none());
                }
                self.exec_block(body, false, false, frame, depth)?;
            },
            Structural::If(args) => {
                let (branch, first_only) = self.stm.try_atomically(|tx| {
                    let cx = self.cx(tx, Queue::Main);
                    let (cond, rest) = heap::cons_parts(args.get(tx));
                    let go = eval::is_true(cx.eval(cond, frame_in(frame, tx))?);
                    let rest = rest.as_cons().expect("checked by `structural`");
                    let branch = if go {
                        Some(rest)
                    } else {
                        heap::cons_parts(rest).1.as_cons()
                    };
                    Ok::<_, Error>((branch.map(|b| tx.root(b)), go))
                })?;
                self.exec_block(branch, first_only, want_last, frame, depth)
            }
            Structural::Call { sym, func, args } => {
                let (callee, body) = self.stm.try_atomically(|tx| {
                    let cx = self.cx(tx, Queue::Main);
                    let callee = Fr {
                        gc: heap::new_frame(tx),
                    };
                    let args = args.as_ref().map_or(Value::None, |a| Value::Obj(a.get(tx)));
                    let body =
                        cx.bind_args(sym.get(tx), func.get(tx), args, frame_in(frame, tx), callee)?;
                    Ok::<_, Error>((tx.root(callee.gc), body.as_cons().map(|b| tx.root(b))))
                })?;
                self.exec_block(body, false, want_last, Some(&callee), depth)
            }
        }
    }

    /// Whether a statement of the main program is one the driver runs itself:
    /// `(run-transactions)`; a `progn`, `while` or `if` with `run-transactions` somewhere
    /// inside; or a call of a user function whose body has `run-transactions` in it.
    fn structural<'tx>(
        &self,
        cx: &Cx<'tx>,
        form: Value<'tx>,
        frame: Option<Fr<'tx>>,
    ) -> Result<Option<Structural>, Error> {
        let Some((head, args)) = form.as_cons().map(heap::cons_parts) else {
            return Ok(None);
        };
        let Value::Obj(head) = head else {
            return Ok(None);
        };
        if heap::kind(head) != heap::Kind::Symbol {
            return Ok(None);
        }
        let root = |v: Value<'tx>| v.as_cons().map(|c| cx.tx.root(c));
        Ok(match cx.lookup_function(head, frame) {
            Function::User(func) => {
                let (_, body) = heap::cons_parts(func);
                contains_run_transactions(body).then(|| Structural::Call {
                    sym: cx.tx.root(head),
                    func: cx.tx.root(func),
                    args: root(args),
                })
            }
            Function::Builtin(Builtin::RunTransactions) if args.is_none() => {
                Some(Structural::RunTransactions)
            }
            Function::Builtin(Builtin::Progn) if contains_run_transactions(args) => {
                Some(Structural::Progn(root(args)))
            }
            Function::Builtin(Builtin::While) if contains_run_transactions(args) => {
                root(args).map(Structural::While)
            }
            Function::Builtin(Builtin::If)
                if args
                    .as_cons()
                    .is_some_and(|c| heap::cons_parts(c).1.as_cons().is_some())
                    && contains_run_transactions(args) =>
            {
                root(args).map(Structural::If)
            }
            _ => None,
        })
    }

    /// Runs every queued call of the main program (and every call they queue) on the
    /// worker threads, each as its own transaction; called between main-program
    /// transactions, so the main program's writes are committed and nothing else runs.
    fn run_pending(&self) -> Result<(), Error> {
        loop {
            let calls: Vec<Root<Call>> = self.stm.atomically(|tx| {
                let g = self.globals.get(tx);
                heap::take_pending(g)
                    .into_iter()
                    .map(|c| tx.root(c))
                    .collect()
            });
            if calls.is_empty() {
                return Ok(());
            }
            let queue = TransactionQueue::new(&self.stm);
            for c in calls {
                queue.add(self.task(c));
            }
            panic::catch_unwind(AssertUnwindSafe(|| queue.run(self.threads)))
                .map_err(panic_to_error)?;
        }
    }

    fn task<'a>(&'a self, call: Root<Call>) -> impl FnMut(&Tx, &mut Tasks<'a>) + Send + 'a {
        move |tx, tasks| self.run_call(tx, tasks, &call)
    }

    /// One queued call, as one transaction attempt.
    fn run_call<'a>(&'a self, tx: &Tx, tasks: &mut Tasks<'a>, call: &Root<Call>) {
        let cx = self.cx(tx, Queue::Task(Default::default()));
        let (body, frame) = heap::call_parts(call.get(tx));
        let frame = heap::Fr { gc: frame };
        if let Err(e) = cx.progn(body.map_or(Value::None, Value::Obj), Some(frame)) {
            // Report the error only from an up-to-date snapshot: this validates (and reruns
            // the transaction if it read something stale).
            tx.become_inevitable();
            panic::resume_unwind(Box::new(e));
        }
        if let Queue::Task(q) = cx.queue {
            for c in q.into_inner() {
                tasks.add(self.task(tx.root(c)));
            }
        }
    }
}

/// The rooted frame `frame` as a handle of `tx`.
fn frame_in<'tx>(frame: Option<&Root<Frame>>, tx: &'tx Tx) -> Option<Fr<'tx>> {
    frame.map(|f| Fr { gc: f.get(tx) })
}

/// Builds the cons chain of `items` (None when empty).
fn build_list<'tx>(tx: &'tx Tx, items: Vec<Value<'tx>>) -> Value<'tx> {
    let mut v = Value::None;
    for item in items.into_iter().rev() {
        v = Value::Obj(heap::new_cons(tx, item, v));
    }
    v
}

/// Whether the symbol `run-transactions` occurs anywhere in `v` (iteratively).
fn contains_run_transactions(v: Value<'_>) -> bool {
    let target = BUILTINS
        .iter()
        .position(|(_, b)| *b == Builtin::RunTransactions)
        .expect("a builtin") as u32;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if let Value::Obj(o) = v {
            match heap::kind(o) {
                heap::Kind::Symbol if heap::symbol_id(o) == target => return true,
                heap::Kind::Cons => {
                    let (a, d) = heap::cons_parts(o);
                    stack.push(a);
                    stack.push(d);
                }
                _ => {}
            }
        }
    }
    false
}

/// Turns a panic payload into an error: a Duhton error raised in a queued transaction, or
/// anything else (heap exhausted, a bug) as an internal error.
fn panic_to_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    match payload.downcast::<Error>() {
        Ok(e) => *e,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            if msg.starts_with("STM heap exhausted") {
                Error(format!(
                    "out of memory: {msg}; set DUHTON_HEAP_MB to give Duhton a bigger heap"
                ))
            } else {
                Error(format!("internal error: {msg}"))
            }
        }
    }
}

/// Runs `f` on a thread with a big stack (the main program's evaluator recurses).
fn on_big_stack<T: Send>(f: impl FnOnce() -> Result<T, Error> + Send) -> Result<T, Error> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("duhton-main".into())
            .stack_size(MAIN_STACK)
            .spawn_scoped(s, || {
                STACK_BUDGET.with(|b| b.set(MAIN_STACK - (8 << 20)));
                f()
            })
            .map_err(|e| Error(format!("cannot start the main thread: {e}")))?;
        handle.join().map_err(panic_to_error)?
    })
}

/// A `Write` into a shared buffer (for tests and embedding).
#[derive(Clone, Default, Debug)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a program with `threads` worker threads and a small heap; returns its output and
/// its result.
pub fn run_to_vec(src: &[u8], threads: usize) -> (Vec<u8>, Result<(), Error>) {
    let buf = SharedBuf::default();
    let opts = Options {
        threads,
        heap_size: 256 << 20,
    };
    let result = Interp::new(opts, Box::new(buf.clone())).and_then(|it| it.run_source(src));
    let out = buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (out, result)
}
