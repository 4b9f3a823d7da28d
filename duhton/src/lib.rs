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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use stm::{Gc, Root, Stm, Tasks, TransactionQueue, Tx};
use stm_runtime as stm;

mod builtins;
mod eval;
pub mod heap;
pub use heap::list;
pub mod reader;

use builtins::BUILTINS;
use eval::{Cx, Held, HeldKont, Queue, Stop, Stopped, EXTRA_SYMBOLS, K, SYM_NONE};
use heap::{Call, Globals, Obj, Value};
use reader::Token;

/// A Duhton error: its message and, when known, where in the source the form that failed
/// is. It prints as `file:line:col: message` (the CLI prints it after `Error: `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub message: String,
    /// The form that failed (or the reader's position), if known.
    pub at: Option<Location>,
}

/// A position in a source: file (or `<stdin>`, `<repl>`), line and column from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The source's name.
    pub file: Arc<str>,
    /// Line, from 1.
    pub line: u32,
    /// Column (byte), from 1.
    pub col: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

impl Error {
    /// An error with this message.
    pub fn new(msg: &str) -> Error {
        Error::from(msg.to_string())
    }

    /// The same error, at `at` unless it has a position already.
    pub fn at(mut self, at: impl FnOnce() -> Option<Location>) -> Error {
        if self.at.is_none() {
            self.at = at();
        }
        self
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error { message, at: None }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
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
    /// Where each form the reader built starts (keyed by [`form_key`]), for errors.
    positions: RwLock<HashMap<u64, Location>>,
    /// One bit per symbol id: set once any frame may have had an entry for the symbol
    /// (see [`Interp::maybe_local`]).
    local_names: Box<[AtomicU64]>,
}

/// Symbol ids the [`Interp::local_names`] bits cover; higher ids always count as local.
const LOCAL_NAME_BITS: usize = 1 << 16;

impl fmt::Debug for Interp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interp")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// How many user calls a suspended computation may hold when it breaks (see
/// [`Interp::run_main`]): deeper, the program ends with `maximum recursion depth exceeded`.
const MAX_SUSPENDED_CALLS: usize = 10_000;

/// How one main-program transaction ended.
enum Step {
    /// The program is done, with the printed value of its last form (REPL).
    Done(Option<Vec<u8>>),
    /// A transaction break: keep the first `keep` records of the continuation, then
    /// these (outermost first, each with the count of calls at and below it).
    Break(usize, Vec<(HeldKont, usize)>),
}

impl Interp {
    /// A new interpreter writing program output to `out`.
    pub fn new(opts: Options, out: Box<dyn Write + Send>) -> Result<Interp, Error> {
        let threads = opts.threads.clamp(1, stm::MAX_SEGMENTS);
        let stm = Stm::builder()
            .segments(threads)
            .heap_size(opts.heap_size)
            .build()
            .map_err(|e| Error::from(e.to_string()))?;
        let globals = stm.atomically(|tx| tx.root(heap::new_globals(tx)));
        let interp = Interp {
            stm,
            globals,
            names: RwLock::new(Names::default()),
            out: Mutex::new(out),
            threads,
            running: Mutex::new(()),
            positions: RwLock::new(HashMap::new()),
            local_names: (0..LOCAL_NAME_BITS / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
        };
        interp.stm.atomically(|tx| {
            tx.become_inevitable();
            let cx = interp.cx(tx, Queue::Main);
            for b in BUILTINS {
                interp.intern(&cx, b.name.as_bytes());
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

    /// Reads `src` (named `file`, starting at line `first_line`) into heap conses: the
    /// list of its top-level forms. Every form's position is recorded for errors.
    fn read(&self, src: &[u8], file: &str, first_line: u32) -> Result<Option<Root<Obj>>, Error> {
        let file: Arc<str> = file.into();
        let tokens = reader::tokenize(src, &file, first_line)?;
        Ok(self.stm.atomically(|tx| {
            tx.become_inevitable();
            let cx = self.cx(tx, Queue::Main);
            let mut positions = self.positions.write().unwrap_or_else(|e| e.into_inner());
            let top = reader::Pos { line: 0, col: 0 };
            let mut stack: Vec<(Vec<Value<'_>>, reader::Pos)> = vec![(Vec::new(), top)];
            for (t, pos) in &tokens {
                match t {
                    Token::Open => stack.push((Vec::new(), *pos)),
                    Token::Close => {
                        let (items, open) = stack.pop().expect("balanced");
                        let v = build_list(tx, items);
                        if let Some(c) = v.as_cons() {
                            let at = Location {
                                file: file.clone(),
                                line: open.line,
                                col: open.col,
                            };
                            positions.insert(form_key(c), at);
                        }
                        stack.last_mut().expect("balanced").0.push(v);
                    }
                    Token::Int(i) => stack.last_mut().expect("a level").0.push(Value::Int(*i)),
                    Token::Sym(name) => {
                        let s = self.intern(&cx, name);
                        stack.last_mut().expect("a level").0.push(Value::Obj(s));
                    }
                }
            }
            let (top, _) = stack.pop().expect("the top level");
            build_list(tx, top).as_cons().map(|c| tx.root(c))
        }))
    }

    /// Whether some frame may have an entry for symbol `id`. If not, a lookup goes straight
    /// to the global frame (most calls are of builtins and global functions, whose names
    /// are never bound locally). The bit is set before any entry for the symbol is made,
    /// by the thread that makes it, and never cleared; a frame made by another thread
    /// reaches this one through the queue, which orders the bit before it.
    #[inline(always)]
    pub(crate) fn maybe_local(&self, id: u32) -> bool {
        let id = id as usize;
        match self.local_names.get(id / 64) {
            Some(w) => w.load(Ordering::Relaxed) & (1 << (id % 64)) != 0,
            None => true,
        }
    }

    /// Records that a frame gets an entry for symbol `id` (see [`Interp::maybe_local`]).
    #[inline(always)]
    pub(crate) fn mark_local(&self, id: u32) {
        let id = id as usize;
        if let Some(w) = self.local_names.get(id / 64) {
            let bit = 1 << (id % 64);
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// Where the form `form` starts in its source, if the reader built it.
    pub(crate) fn position(&self, form: Gc<'_, Obj>) -> Option<Location> {
        let positions = self.positions.read().unwrap_or_else(|e| e.into_inner());
        positions.get(&form_key(form)).cloned()
    }

    /// Runs a whole program: its top-level forms in the main transaction, then the queued
    /// transactions. Output goes to the interpreter's output, which is flushed at the end.
    /// Errors name the source `<input>`.
    pub fn run_source(&self, src: &[u8]) -> Result<(), Error> {
        self.run_named(src, "<input>")
    }

    /// [`Interp::run_source`] for a source named `file` in error messages.
    pub fn run_named(&self, src: &[u8], file: &str) -> Result<(), Error> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = on_big_stack(|| {
            let forms = self.read(src, file, 1)?;
            self.run_main(forms, false)?;
            self.run_pending()
        });
        self.flush();
        result
    }

    /// Runs one REPL input: its forms, then prints the value of the last one, then runs
    /// the queued transactions. Errors name the source `<repl>`, at lines counted from
    /// `first_line`.
    pub fn run_repl_input(&self, src: &[u8], first_line: u32) -> Result<(), Error> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = on_big_stack(|| {
            let forms = self.read(src, "<repl>", first_line)?;
            let mut last = self.run_main(forms, true)?.unwrap_or_default();
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

    /// Runs the main program, the forms `forms` in the global frame, in main-program
    /// transactions: one until a `(run-transactions)` is evaluated, wherever it is. There
    /// the evaluation breaks with its continuation ([`eval::K`] records), whose handles
    /// are rooted; the transaction commits; the queued calls run on the worker threads;
    /// and a new transaction resumes the records, innermost first. Returns the printed
    /// value of the last form when `show_last` (the REPL shows it).
    ///
    /// The records kept between transactions are only read by an attempt (it hands back
    /// how many it used up and the new ones), so an attempt that rolls back leaves them as
    /// they were and the next one resumes from the same state.
    fn run_main(
        &self,
        forms: Option<Root<Obj>>,
        show_last: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let start = K::Progn {
            rest: forms.map_or(Held::None, Held::Obj),
            frame: None,
        };
        // The continuation, outermost record first, each with the user calls at and below it.
        let mut stack: Vec<(HeldKont, usize)> = vec![(start, 0)];
        loop {
            let step = self.stm.try_atomically(|tx| {
                let cx = self.cx(tx, Queue::Main);
                let mut v = Value::None;
                let mut i = stack.len();
                while i > 0 {
                    i -= 1;
                    let k = stack[i].0.get(tx);
                    match cx.resume(k, v) {
                        Ok(next) => v = next,
                        Err(Stop(stop)) => {
                            let ks = match *stop {
                                Stopped::Error(e) => return Err(e),
                                Stopped::Break(ks) => ks,
                            };
                            let mut calls = if i == 0 { 0 } else { stack[i - 1].1 };
                            let mut held = Vec::with_capacity(ks.len());
                            for k in ks.iter().rev() {
                                if matches!(k, K::Return) {
                                    calls += 1;
                                }
                                held.push((HeldKont::hold(tx, k), calls));
                            }
                            if calls > MAX_SUSPENDED_CALLS {
                                return Err(Error::new("maximum recursion depth exceeded"));
                            }
                            return Ok(Step::Break(i, held));
                        }
                    }
                }
                let shown = if show_last {
                    let mut b = Vec::new();
                    cx.repr(&mut b, v)?;
                    Some(b)
                } else {
                    None
                };
                Ok(Step::Done(shown))
            })?;
            match step {
                Step::Done(shown) => return Ok(shown),
                Step::Break(keep, held) => {
                    stack.truncate(keep);
                    stack.extend(held);
                    self.run_pending()?;
                }
            }
        }
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
        if let Err(Stop(stop)) = cx.progn(body.map_or(Value::None, Value::Obj), Some(frame)) {
            let e = match *stop {
                Stopped::Error(e) => e,
                // `run-transactions` is an error in a queued call, so nothing breaks here.
                Stopped::Break(_) => {
                    Error::new("internal error: a transaction break in a queued call")
                }
            };
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

/// The key of a form in [`Interp::positions`]: its identity (handles hash by the object
/// they name), the same in every transaction.
fn form_key(form: Gc<'_, Obj>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    form.hash(&mut h);
    h.finish()
}

/// Builds the cons chain of `items` (None when empty).
fn build_list<'tx>(tx: &'tx Tx, items: Vec<Value<'tx>>) -> Value<'tx> {
    let mut v = Value::None;
    for item in items.into_iter().rev() {
        v = Value::Obj(heap::new_cons(tx, item, v));
    }
    v
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
                Error::from(format!(
                    "out of memory: {msg}; set DUHTON_HEAP_MB to give Duhton a bigger heap"
                ))
            } else {
                Error::from(format!("internal error: {msg}"))
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
            .map_err(|e| Error::from(format!("cannot start the main thread: {e}")))?;
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
