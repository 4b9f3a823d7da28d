//! # stm-macros: barrier insertion at compile time for `stm-runtime`
//!
//! Thin entry points over [`stm_transform`], which holds the transformation (shared with the
//! `stm-rewrite` tool). Use them through `stm-runtime`, which re-exports them:
//!
//! ```
//! use stm_runtime as stm;
//! use stm::Gc;
//!
//! #[stm::object]
//! struct Account { balance: i64, owner: u32, next: Option<Gc<Account>> }
//!
//! #[stm::transactional]
//! fn transfer(from: Gc<Account>, to: Gc<Account>, amount: i64) -> bool {
//!     if from.balance < amount { return false; }
//!     from.balance -= amount;
//!     to.balance += amount;
//!     true
//! }
//!
//! #[stm::transactional]
//! fn open(balance: i64) -> stm::Root<Account> {
//!     stm::tx!().root(Gc::new(Account { balance, owner: 0, next: None }))
//! }
//!
//! let (a, b) = (open(100), open(0));
//! assert!(stm::atomically(|tx| transfer(a.get(tx), b.get(tx), 30)));
//! # #[stm::transactional] fn balance(a: Gc<Account>) -> i64 { a.balance }
//! assert_eq!(stm::atomically(|tx| (balance(a.get(tx)), balance(b.get(tx)))), (70, 30));
//! ```
//!
//! See `docs/macros.md` in the repository for what they expand to, the supported syntax,
//! what is rejected and why.

use proc_macro::TokenStream;

/// Makes a struct with named fields a shared-object type: values live in the shared heap
/// and are reached through handles (`Gc<T>`) inside transactions.
///
/// Fields may be plain data (integers, floats, `bool`, `char`, `()`, arrays and tuples of
/// plain data, `#[derive(Plain)]` types), handles `Gc<T>` / `Option<Gc<T>>`, and the
/// runtime's containers (`TVec<T>`, `TString`); anything else is a compile error on the field
/// saying what to use. Allocate with `tx.alloc(T { .. })` (handle fields `None`),
/// `stm::alloc!(tx, T { .. })`, or `Gc::new(T { .. })` inside a `#[transactional]` function.
///
/// ```
/// use stm_runtime as stm;
/// use stm::{Gc, TString, TVec};
///
/// #[stm::object]
/// struct Team {
///     name: TString,
///     members: TVec<Gc<Player>>,
/// }
///
/// #[stm::object]
/// struct Player {
///     score: u64,
///     team: Option<Gc<Team>>,
/// }
///
/// let stm = stm::Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
/// let team = stm.atomically(|tx| {
///     let p = tx.alloc(Player { score: 3, team: None });
///     let t = stm::alloc!(tx, Team { name: TString::from_str(tx, "red"), members: TVec::new(tx) });
///     tx.root(t)
/// });
/// # let _ = team;
/// ```
///
/// Argument: `crate = path` names the runtime crate if it is not `::stm_runtime`.
#[proc_macro_attribute]
pub fn object(attr: TokenStream, item: TokenStream) -> TokenStream {
    stm_transform::expand_object(attr.into(), item.into()).into()
}

/// Makes a function, a method, or every method of an `impl` block transactional: field
/// accesses through handles get read and write barriers, irreversible calls make the
/// transaction inevitable first, and calls that can never be right inside a transaction
/// are compile errors.
///
/// **Nesting**: a function that takes a handle (or a `&Tx`) runs in that handle's
/// transaction. Any other transactional function joins the transaction running on the
/// thread, or, called outside one, runs as its own transaction on `Stm::global()`, retried
/// on conflict (so its body may run more than once, and cannot change what it sees from
/// outside: `mut` parameters are copied per attempt, a `&mut` parameter cannot be changed).
///
/// ```
/// use stm_runtime as stm;
/// use stm::{Gc, Root};
///
/// #[stm::object]
/// struct Counter {
///     hits: u64,
/// }
///
/// // Takes a handle: runs inside its caller's transaction.
/// #[stm::transactional]
/// fn bump(c: Gc<Counter>, by: u64) -> u64 {
///     c.hits += by;
///     c.hits
/// }
///
/// // Takes no handle: joins the running transaction, or runs as its own on the global
/// // runtime, retried on conflict; `println!` makes that transaction inevitable first.
/// #[stm::transactional]
/// fn bump_and_say(c: &Root<Counter>) {
///     let n = bump(c.get(stm::tx!()), 1);
///     println!("{n} hits");
/// }
///
/// let c = stm::atomically(|tx| tx.root(tx.alloc(Counter { hits: 0 })));
/// bump_and_say(&c);
/// ```
///
/// Argument: `crate = path` names the runtime crate if it is not `::stm_runtime`.
#[proc_macro_attribute]
pub fn transactional(attr: TokenStream, item: TokenStream) -> TokenStream {
    stm_transform::expand_transactional(attr.into(), item.into()).into()
}

/// Makes a function run *in* transactions rather than *as* one (PyPy-STM's model for
/// long-running code): each of its loops runs as a series of transactions, one iteration
/// atomic, with a **break point** at the back-edge where the running transaction commits once
/// the thread's budget of iterations is spent (adaptive: halved after an abort, grown after
/// commits; see `stm_runtime::set_thread_budget`). Its other code runs outside transactions.
///
/// * Loop bodies are transactional code (barriers, `tx!()`, I/O made inevitable, after which
///   the transaction is cut at the next break point).
/// * `mut` locals the loop mentions are carried across break points and restored after an
///   abort; they must be `Clone`, and so must a `for` loop's iterator.
/// * `#[stm::atomic]` on a loop or block statement makes it one transaction (no break inside).
/// * Loops that block or spawn threads stay ordinary loops outside transactions.
/// * Called inside a transaction, the loops run in it and never break.
///
/// The function cannot take or return handles (they live in one transaction): pass `Root`s.
///
/// ```
/// use stm_runtime as stm;
/// use stm::Root;
///
/// #[stm::object]
/// struct Total {
///     sum: u64,
/// }
///
/// #[stm::in_transactions]
/// fn add_up(total: &Root<Total>, n: u64) -> u64 {
///     let mut done = 0; // carried across break points
///     for i in 1..=n {
///         total.get(stm::tx!()).sum += i; // one iteration is atomic
///         done += 1;
///     } // <- a break point
///     done
/// }
///
/// let total = stm::atomically(|tx| tx.root(tx.alloc(Total { sum: 0 })));
/// assert_eq!(add_up(&total, 100), 100);
/// ```
///
/// Argument: `crate = path` names the runtime crate if it is not `::stm_runtime`.
#[proc_macro_attribute]
pub fn in_transactions(attr: TokenStream, item: TokenStream) -> TokenStream {
    stm_transform::expand_in_transactions(attr.into(), item.into()).into()
}

/// On a function: the same as `#[transactional]` (the function is atomic: one transaction,
/// or part of its caller's). On a loop or block statement inside an `#[in_transactions]`
/// function, the enclosing macro reads it: that loop or block is one transaction, with no
/// break point inside; I/O inside it makes it inevitable.
///
/// ```
/// use stm_runtime as stm;
/// use stm::Root;
///
/// #[stm::object]
/// struct Pair {
///     a: i64,
///     b: i64,
/// }
///
/// #[stm::in_transactions]
/// fn shuffle(p: &Root<Pair>, rounds: u32) {
///     for _ in 0..rounds {
///         // Two steps that no other transaction may see half done: one transaction.
///         #[stm::atomic]
///         {
///             p.get(stm::tx!()).a -= 1;
///             p.get(stm::tx!()).b += 1;
///         }
///     }
/// }
///
/// let p = stm::atomically(|tx| tx.root(tx.alloc(Pair { a: 10, b: 0 })));
/// shuffle(&p, 3);
/// ```
#[proc_macro_attribute]
pub fn atomic(attr: TokenStream, item: TokenStream) -> TokenStream {
    stm_transform::expand_transactional(attr.into(), item.into()).into()
}

/// Tells `stm-rewrite --all-functions` to leave an item as written: a function, an `impl`
/// block, a trait or an inline module, with everything inside. For the compiler it does
/// nothing: the item is emitted unchanged, so the attribute can stay in code that is built
/// with the macros and rewritten by the tool alike. Use it for code that must run outside
/// transactions (it blocks, or hands closures to other threads), or that the tool would make
/// transactional for nothing.
///
/// ```
/// use stm_runtime as stm;
///
/// #[stm::not_transactional]
/// fn spawn_workers(n: usize) -> Vec<std::thread::JoinHandle<()>> {
///     (0..n).map(|_| std::thread::spawn(|| {})).collect()
/// }
/// # for h in spawn_workers(2) { h.join().unwrap(); }
/// ```
///
/// It takes no arguments.
#[proc_macro_attribute]
pub fn not_transactional(attr: TokenStream, item: TokenStream) -> TokenStream {
    stm_transform::expand_not_transactional(attr.into(), item.into()).into()
}

/// Declares a `Copy` struct or enum plain data (`stm_runtime::Plain`), so that it can be a
/// field of shared objects. Every field must be plain data itself.
///
/// ```
/// use stm_runtime as stm;
///
/// #[derive(Clone, Copy, Debug, Default, PartialEq, stm::Plain)]
/// enum Color {
///     #[default]
///     Red,
///     Rgb(u8, u8, u8),
/// }
///
/// #[stm::object]
/// struct Pixel {
///     color: Color,
///     history: stm::TVec<Color>, // `Default` makes it a `TVec` element too
/// }
/// # fn main() {}
/// ```
///
/// Helper attribute: `#[stm(crate = path)]` names the runtime crate.
#[proc_macro_derive(Plain, attributes(stm))]
pub fn derive_plain(input: TokenStream) -> TokenStream {
    stm_transform::expand_plain_derive(input.into()).into()
}

/// Declares the calls inside it transaction-safe: inside a `#[transactional]` function,
/// `tx_safe!(expr)` evaluates `expr` (still with barriers on every field access) without
/// making the transaction inevitable and without rejecting calls the macro would otherwise
/// treat as irreversible or forbidden. Use it for calls the macro misjudges by name (a
/// `lock()` that is not a blocking lock, a `write!` into a `String`). Outside a
/// `#[transactional]` item it is a compile error.
///
/// ```
/// use stm_runtime as stm;
/// use std::fmt::Write;
///
/// #[stm::transactional]
/// fn describe(c: &stm::Root<u64>) -> String {
///     let mut s = String::new();
///     // `write!` into a String is not I/O: no need to make the transaction inevitable.
///     stm::tx_safe!(write!(s, "{}", c.get(stm::tx!()).get())).unwrap();
///     s
/// }
/// # let c = stm::atomically(|tx| tx.root(tx.alloc(7u64)));
/// # assert_eq!(describe(&c), "7");
/// ```
#[proc_macro]
pub fn tx_safe(input: TokenStream) -> TokenStream {
    stm_transform::expand_tx_safe_outside(input.into()).into()
}

/// The running transaction (`&Tx`), inside a `#[transactional]` function: for the runtime's
/// own API (`root.get(stm::tx!())`, `GcVec::new(stm::tx!())`, `stm::tx!().retry()`).
/// Outside a `#[transactional]` item it is a compile error.
#[proc_macro]
pub fn tx(input: TokenStream) -> TokenStream {
    stm_transform::expand_tx_outside(input.into()).into()
}
