//! Long-running code as a series of transactions, cut at break points (PyPy-STM's model: the
//! whole program runs in transactions, and the runtime commits at a break point once the
//! running transaction has done enough work).
//!
//! [`Stm::run_in_transactions`] runs a *step* function over and over. Between two steps is a
//! break point: when the running transaction has done its budget of steps, it commits there
//! and the next one starts. A step never breaks inside (it is atomic), so a multi-step update
//! written as one step is never observed half-done.
//!
//! Soundness across break points comes from the types: the loop-carried state `S` is a type
//! chosen outside the transactions, so it cannot hold a `Gc<'tx, _>` handle (handles are tied
//! to one transaction); it holds `Root`s or plain values. If a transaction aborts, the state is
//! restored from its copy at the last commit (`S: Clone`) and the steps since are run again.
//!
//! The budget is per thread and adaptive, as PyPy's was: it halves with every aborted attempt
//! (down to one step: the retry already runs with half, so a thread that keeps losing shrinks
//! its transactions until they fit between the others' commits) and grows by a quarter after
//! each commit (up to [`MAX_BUDGET`]) while
//! transactions last less than [`TARGET_TIME`], so that heavy steps get short transactions.
//! A break point that does not break costs a decrement and a branch.
//!
//! I/O gets break points around it, as calls that released the GIL did in PyPy: a step that
//! becomes inevitable after other steps of its transaction restarts the attempt, which then
//! commits just before that step; the step runs inevitable in the next transaction, which the
//! following break point ends (an inevitable transaction holds up every other commit).

use std::cell::Cell;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::runtime::Stm;
use crate::tx::Tx;

/// Steps per transaction at most.
pub const MAX_BUDGET: u32 = 1 << 16;
/// Steps per transaction a thread starts with.
pub const START_BUDGET: u32 = 256;
/// How long a transaction of a series should last: the budget grows while transactions are
/// shorter and shrinks when they take more than twice as long. Long enough that a commit
/// (about a quarter of a microsecond) costs well under 1%, short enough that a conflict loses
/// little work.
pub const TARGET_TIME: Duration = Duration::from_micros(100);

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(START_BUDGET) };
    static LIMIT: Cell<u32> = const { Cell::new(MAX_BUDGET) };
}

/// The calling thread's current budget, in steps per transaction.
pub fn thread_budget() -> u32 {
    BUDGET.with(Cell::get)
}

/// Sets the calling thread's budget (clamped to `1..=` its limit); it keeps adapting from
/// there.
pub fn set_thread_budget(steps: u32) {
    let limit = LIMIT.with(Cell::get);
    BUDGET.with(|b| b.set(steps.clamp(1, limit)));
}

/// Sets the most steps per transaction the calling thread's budget may grow to (clamped to
/// `1..=MAX_BUDGET`; default [`MAX_BUDGET`]). `set_thread_budget_limit(1)` makes every
/// iteration its own transaction.
pub fn set_thread_budget_limit(steps: u32) {
    let limit = steps.clamp(1, MAX_BUDGET);
    LIMIT.with(|l| l.set(limit));
    BUDGET.with(|b| b.set(b.get().min(limit)));
}

impl Stm {
    /// Runs `step` repeatedly, as a series of transactions, until it returns
    /// `ControlFlow::Break(r)`; returns `r`.
    ///
    /// Each call of `step` is atomic; between calls the running transaction commits when it
    /// has done the thread's budget of steps, and a new one starts. A step that becomes
    /// inevitable (I/O) gets a transaction of its own, cut right after it. `state` is the
    /// loop-carried state: it cannot hold `Gc` handles (only `Root`s and plain data), and
    /// after an abort it is restored from its copy at the last commit, so steps may run again
    /// but their effects (on the heap and on `state`) count once.
    ///
    /// Called inside a transaction of this runtime (an atomic block), the steps run in that
    /// transaction and never break: the enclosing transaction decides.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use stm_runtime::Stm;
    ///
    /// let stm = Stm::builder().segments(1).heap_size(1 << 20).build().unwrap();
    /// let total = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
    /// // Add 1..=1000 to `total`, one step per number, many steps per transaction.
    /// let last = stm.run_in_transactions(1u64, |tx, next| {
    ///     total.get(tx).update(|t| *t += *next);
    ///     *next += 1;
    ///     if *next > 1000 { ControlFlow::Break(*next - 1) } else { ControlFlow::Continue(()) }
    /// });
    /// assert_eq!(last, 1000);
    /// assert_eq!(stm.atomically(|tx| total.get(tx).get()), 500_500);
    /// ```
    pub fn run_in_transactions<S: Clone, R>(
        &self,
        state: S,
        mut step: impl FnMut(&Tx, &mut S) -> ControlFlow<R>,
    ) -> R {
        let by_value = |tx: &Tx, mut s: S| {
            let flow = step(tx, &mut s);
            (s, flow)
        };
        if crate::tx::in_transaction_of(&self.shared) {
            inline_in_running(state, by_value).1
        } else {
            series(self, state, by_value).1
        }
    }
}

/// Runs every step in the transaction running on this thread (the caller checked there is
/// one): no break.
fn inline_in_running<S, R>(state: S, step: impl FnMut(&Tx, S) -> (S, ControlFlow<R>)) -> (S, R) {
    // Joining the running transaction calls the closure exactly once.
    let mut once = Some((state, step));
    crate::tx::atomically(|tx| {
        let (state, mut step) = once
            .take()
            .expect("a joined transaction runs its closure once");
        inline(tx, state, &mut step)
    })
}

/// Runs every step in the transaction `tx` (an enclosing atomic block): no break.
fn inline<S, R>(tx: &Tx, state: S, step: &mut impl FnMut(&Tx, S) -> (S, ControlFlow<R>)) -> (S, R) {
    let mut s = state;
    loop {
        let (next, flow) = step(tx, s);
        s = next;
        if let ControlFlow::Break(r) = flow {
            return (s, r);
        }
    }
}

/// The series of transactions behind [`Stm::run_in_transactions`] and the loops of
/// `#[stm::in_transactions]` functions. `step` takes the loop-carried state by value and gives
/// it back with what to do next; the final state is returned with the result.
fn series<S: Clone, R>(
    stm: &Stm,
    state: S,
    mut step: impl FnMut(&Tx, S) -> (S, ControlFlow<R>),
) -> (S, R) {
    let mut committed = state;
    // One clock read per transaction (about 30 ns): its end is the next one's start.
    let mut started = Instant::now();
    loop {
        let budget = thread_budget();
        // The step limit of the attempt that committed.
        let mut last_limit = budget;
        // Attempts lost to conflicts (not reruns after `retry`, a full heap or a root's
        // wait, which say nothing about the transaction's length).
        let conflicts_before = crate::stats::thread_conflicts();
        let (state, done) = stm.atomically(|tx| {
            let mut s = committed.clone();
            let limit = match crate::tx::take_cut_before() {
                // An attempt that lost a conflict tries again with half the steps of the one
                // it lost with: a thread that keeps losing to shorter transactions of others
                // shrinks its own until it fits between their commits, instead of rerunning
                // the same long transaction until the progress policy makes it inevitable.
                0 => budget >> (crate::stats::thread_conflicts() - conflicts_before).min(31),
                // Restarted to put a break point before I/O (not a conflict).
                cut => cut,
            }
            .max(1);
            last_limit = limit;
            tx.local().series.budget = limit;
            let left = tx.series_left();
            // SAFETY: this attempt's counter (see `Tx::series_left`); no runtime call runs
            // (invariant 10).
            // (It is 1 already if the progress policy made the attempt inevitable.)
            unsafe { left.write(limit.min(left.read())) };
            loop {
                let (next, flow) = step(tx, s);
                s = next;
                if let ControlFlow::Break(r) = flow {
                    return (s, Some(r));
                }
                // The break point: a decrement and a branch unless the budget is spent (or
                // the step did I/O: becoming inevitable set the count to 1).
                // SAFETY: this attempt's counter, used between steps, while no runtime call
                // (and so no `&mut` to the segment's local state) is running (invariant 10).
                let remaining = unsafe {
                    let r = left.read() - 1;
                    left.write(r);
                    r
                };
                if remaining == 0 {
                    tx.local().series.cut_by_break = true;
                    return (s, None);
                }
            }
        });
        let now = Instant::now();
        // After aborts, the next transaction starts with the steps that fitted.
        let aborted = crate::stats::thread_conflicts() > conflicts_before;
        set_thread_budget(if aborted {
            last_limit
        } else {
            next_budget(budget, now - started)
        });
        started = now;
        committed = state;
        if let Some(r) = done {
            return (committed, r);
        }
    }
}

/// The budget after a transaction of `budget` steps that committed at its first attempt and
/// took `took`: grown by a quarter while transactions are shorter than [`TARGET_TIME`], kept
/// while they are under twice that, and cut by a quarter when longer (heavy steps: a long
/// transaction loses more work when it conflicts). (After aborts the series goes on with the
/// limit of the attempt that committed, halved at each abort.)
fn next_budget(budget: u32, took: Duration) -> u32 {
    if took < TARGET_TIME {
        budget.saturating_add(budget / 4 + 1)
    } else if took < 2 * TARGET_TIME {
        budget
    } else {
        budget - budget / 4
    }
}

/// How a loop of an `#[stm::in_transactions]` function ended: a `break` (with the loop's
/// value) or a `return` from the function (with its value). Used by the generated code.
#[doc(hidden)]
pub enum Exit<B, R> {
    /// `break value` (or the loop condition failed: `()`).
    Break(B),
    /// `return value` (or `?` on an error).
    Return(R),
}

/// Runs a loop of an `#[stm::in_transactions]` function: one iteration per step, break points
/// at the back-edges. Inside a running transaction (an atomic block, or a caller's
/// transaction) the loop runs in it without breaking; otherwise as a series of transactions
/// of [`Stm::global`]. Used by the generated code.
///
/// `step` is `Fn + Sync`: an iteration may run again after an abort, so everything it changes
/// must be in the carried state `S` (restored from its copy at the last commit). The compiler
/// rejects an iteration that changes anything else the function can see (a local that is not
/// carried, what a `&mut` parameter refers to, a `Cell` or `RefCell`, which are not `Sync`),
/// instead of letting the change happen twice. (Atomics and locks are `Sync`: the macros make
/// the transaction inevitable before an atomic read-modify-write, and reject locks.)
#[doc(hidden)]
pub fn loop_in_transactions<S: Clone, B, R>(
    state: S,
    step: impl Fn(&Tx, S) -> (S, ControlFlow<Exit<B, R>>) + Sync,
) -> (S, Exit<B, R>) {
    if crate::tx::in_transaction() {
        inline_in_running(state, step)
    } else {
        series(Stm::global(), state, step)
    }
}

/// Runs a loop or block marked `#[stm::atomic]` in an `#[stm::in_transactions]` function: the
/// whole loop is one transaction (joining the running one if any, else one of
/// [`Stm::global`]); after an abort it starts again from `state`. Used by the generated code.
#[doc(hidden)]
/// `step` is `Fn` for the reason given at [`loop_in_transactions`].
pub fn atomic_loop<S: Clone, B, R>(
    state: S,
    step: impl Fn(&Tx, S) -> (S, ControlFlow<Exit<B, R>>) + Sync,
) -> (S, Exit<B, R>) {
    crate::tx::atomically(|tx| inline(tx, state.clone(), &mut &step))
}
