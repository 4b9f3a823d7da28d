//! Side effects inside transactions, recognised by name (the macro sees no types).
//!
//! * **Irreversible** calls (`println!` and friends, `std::io`, `std::fs`, `std::net`,
//!   `std::process`, sending on a channel) make the transaction inevitable first, as PyPy's
//!   translator did before external calls: an inevitable transaction never rolls back, so
//!   the effect happens once.
//! * **Forbidden** calls can never be right inside a transaction (spawning threads, blocking
//!   on locks, channels, condition variables or other threads): compile errors.
//! * `tx_safe!(expr)` declares the calls in `expr` safe: no inevitability, no rejection
//!   (barriers are still inserted).

use proc_macro2::TokenStream;
use quote::quote;

/// What a call does to the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing the macro knows of.
    None,
    /// An effect that cannot be undone: make the transaction inevitable first.
    Irreversible,
    /// Never right inside a transaction: the message says why and what to do instead.
    Forbidden(String),
}

const ESCAPE: &str = "if the macro misjudged this call by its name, wrap it in \
                      `stm::tx_safe!(..)`";

fn forbidden(what: &str, why: &str) -> Effect {
    Effect::Forbidden(format!("{what} inside a transaction: {why}; {ESCAPE}"))
}

fn spawn() -> Effect {
    forbidden(
        "cannot spawn a thread or task",
        "a transaction may run again after a conflict and would spawn it again, and the new \
         thread cannot see this transaction's uncommitted writes. Spawn it before or after \
         the transaction (pass it a `Root<T>` to reach shared objects)",
    )
}

fn blocking(what: &str) -> Effect {
    forbidden(
        &format!("cannot block on {what}"),
        "a transaction that waits keeps its segment and can deadlock with the thread it waits \
         for, and a rerun would wait again. To wait until shared data changes, call \
         `tx.retry()`; keep shared state in objects instead of behind locks",
    )
}

/// The effect of calling a function by this path (`std::fs::write`, `thread::spawn`, ...),
/// with these arguments (a method called by its path, `AtomicU64::fetch_add(&a, 1, SeqCst)`,
/// is judged like the method).
pub(crate) fn of_call(
    path: &syn::Path,
    args: &syn::punctuated::Punctuated<syn::Expr, syn::Token![,]>,
) -> Effect {
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let last = segs.last().map(String::as_str).unwrap_or("");
    let has = |name: &str| segs.iter().any(|s| s == name);
    if last == "spawn" || (has("thread") && matches!(last, "scope" | "Builder")) {
        return spawn();
    }
    if has("thread") && matches!(last, "sleep" | "park" | "park_timeout") {
        return blocking("a sleep or park");
    }
    if has("io") || has("fs") || has("net") || has("process") {
        return Effect::Irreversible;
    }
    // `AtomicU64::fetch_add(&a, ..)`, `Mutex::lock(&m)`: a method called by its path (the
    // first argument is the receiver). `ptr::read` and friends are not methods.
    if segs.len() >= 2 && !has("ptr") && !args.is_empty() {
        let effect = of_method_args(last, args.iter().skip(1).collect());
        if effect != Effect::None {
            return effect;
        }
    }
    let first = segs.first().map(String::as_str).unwrap_or("");
    if matches!(
        first,
        "File"
            | "OpenOptions"
            | "TcpStream"
            | "TcpListener"
            | "UdpSocket"
            | "Command"
            | "stdout"
            | "stderr"
            | "stdin"
    ) {
        return Effect::Irreversible;
    }
    Effect::None
}

/// The effect of a method call, by name and arguments.
pub(crate) fn of_method_call(m: &syn::ExprMethodCall) -> Effect {
    of_method_args(&m.method.to_string(), m.args.iter().collect())
}

fn of_method_args(name: &str, args: Vec<&syn::Expr>) -> Effect {
    // An atomic write (`store`, `swap` with an `Ordering`) changes shared state outside the
    // heap, which a rerun would change again: like I/O, the transaction becomes inevitable.
    let ordered = args.last().is_some_and(|a| is_ordering(a));
    if ordered && matches!(name, "store" | "swap") {
        return Effect::Irreversible;
    }
    // `a.store(v, ORDER)` with the ordering in a constant or a variable: nothing else in
    // std stores with two arguments. (`swap` needs the ordering spelled out: `slice.swap(i,
    // j)` has two arguments too.)
    if name == "store" && args.len() == 2 {
        return Effect::Irreversible;
    }
    of_method(name, args.len())
}

/// Whether an expression names a memory ordering (`Ordering::SeqCst`, `Relaxed`, ...).
fn is_ordering(e: &syn::Expr) -> bool {
    let syn::Expr::Path(p) = e else { return false };
    p.path.segments.last().is_some_and(|s| {
        matches!(
            s.ident.to_string().as_str(),
            "Relaxed" | "Release" | "Acquire" | "AcqRel" | "SeqCst"
        )
    })
}

/// The effect of a method call by name and argument count.
pub(crate) fn of_method(name: &str, args: usize) -> Effect {
    match (name, args) {
        // Atomic read-modify-writes: their change outside the heap would happen again on a
        // rerun (the transaction's closures are `Fn + Sync`, which stops `Cell`s, not atomics).
        (
            "fetch_add"
            | "fetch_sub"
            | "fetch_and"
            | "fetch_nand"
            | "fetch_or"
            | "fetch_xor"
            | "fetch_max"
            | "fetch_min"
            | "fetch_update"
            | "compare_exchange"
            | "compare_exchange_weak",
            _,
        ) => Effect::Irreversible,
        // `scope.spawn(closure)` (std's thread scopes, crossbeam, rayon).
        ("spawn", 1) => spawn(),
        ("lock" | "read_lock" | "write_lock" | "try_lock" | "try_read" | "try_write", 0)
        | ("read" | "write", 0) => blocking("a lock"),
        ("join", 0) => blocking("another thread"),
        ("recv" | "recv_timeout" | "recv_deadline" | "try_recv", _) => blocking("a channel"),
        ("wait" | "wait_while" | "wait_timeout" | "wait_timeout_while", _) => {
            blocking("a condition variable or barrier")
        }
        // `Write::write(buf)`, `File::write_at`, a child process run by a `Command`
        // (`status()`, `output()`, `spawn()`: no argument, unlike a thread's `spawn`).
        ("write", 1) | ("write_vectored" | "write_at" | "set_len", _) => Effect::Irreversible,
        ("status" | "output" | "spawn", 0) => Effect::Irreversible,
        ("send" | "try_send", 1)
        | ("get_or_init" | "get_or_try_init", 1)
        | ("write_all" | "write_fmt" | "flush" | "sync_all" | "sync_data", _)
        | ("read_to_string" | "read_to_end" | "read_line" | "read_exact", _) => {
            Effect::Irreversible
        }
        _ => Effect::None,
    }
}

/// Whether a method call runs transactions of its own and waits for them
/// (`TransactionQueue::run(threads)`): the runtime refuses it inside a transaction, so a loop
/// that calls it must not be put into one.
pub(crate) fn runs_transactions(name: &str, args: usize) -> bool {
    matches!((name, args), ("run", 1))
}

/// The effect of a macro invocation by path.
pub(crate) fn of_macro(path: &syn::Path) -> Effect {
    let last = path.segments.last().map(|s| s.ident.to_string());
    match last.as_deref() {
        Some("print" | "println" | "eprint" | "eprintln" | "dbg" | "write" | "writeln") => {
            Effect::Irreversible
        }
        _ => Effect::None,
    }
}

/// Whether a macro path names the escape hatch (`tx_safe!`, `stm::tx_safe!`).
pub(crate) fn is_tx_safe(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "tx_safe")
}

/// Whether a macro path names `tx!()` (the running transaction).
pub(crate) fn is_tx(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "tx")
}

/// `tx!()` outside a `#[transactional]` item.
pub(crate) fn tx_outside(input: TokenStream) -> TokenStream {
    let _ = input;
    quote! {
        ::core::compile_error!(
            "`tx!()` names the running transaction inside a #[stm::transactional] function; \
             outside one, use the `&Tx` that `Stm::atomically` gives its closure"
        )
    }
}

/// `tx_safe!` outside a `#[transactional]` item.
pub(crate) fn tx_safe_outside(input: TokenStream) -> TokenStream {
    let _ = input;
    quote! {
        ::core::compile_error!(
            "`tx_safe!` only has a meaning inside a #[stm::transactional] function: it \
             declares the calls it wraps safe to run in a transaction. Outside one, call the \
             code directly"
        )
    }
}
