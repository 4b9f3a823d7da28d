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
//! The budget is per thread and adaptive, as PyPy's was: it halves after an abort (down to
//! one step) and grows by a quarter after each commit (up to [`MAX_BUDGET`]). A break point
//! that does not break costs a counter increment, a compare and a branch.

use std::cell::Cell;
use std::ops::ControlFlow;

use crate::runtime::Stm;
use crate::tx::Tx;

/// Steps per transaction at most.
pub const MAX_BUDGET: u32 = 1 << 16;
/// Steps per transaction a thread starts with.
pub const START_BUDGET: u32 = 256;

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(START_BUDGET) };
}

/// The calling thread's current budget, in steps per transaction.
pub fn thread_budget() -> u32 {
    BUDGET.with(Cell::get)
}

/// Sets the calling thread's budget (clamped to `1..=MAX_BUDGET`); it keeps adapting from
/// there.
pub fn set_thread_budget(steps: u32) {
    BUDGET.with(|b| b.set(steps.clamp(1, MAX_BUDGET)));
}

impl Stm {
    /// Runs `step` repeatedly, as a series of transactions, until it returns
    /// `ControlFlow::Break(r)`; returns `r`.
    ///
    /// Each call of `step` is atomic; between calls the running transaction commits when it
    /// has done the thread's budget of steps, and a new one starts. `state` is the loop-carried
    /// state: it cannot hold `Gc` handles (only `Root`s and plain data), and after an abort it
    /// is restored from its copy at the last commit, so steps may run again but their effects
    /// (on the heap and on `state`) count once.
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
        let mut committed = state;
        loop {
            let budget = thread_budget();
            let mut attempts = 0u32;
            let (state, done) = self.atomically(|tx| {
                attempts += 1;
                let mut s = committed.clone();
                let mut steps = 0;
                loop {
                    if let ControlFlow::Break(r) = step(tx, &mut s) {
                        return (s, Some(r));
                    }
                    // The break point: a compare and a branch unless the budget is spent.
                    steps += 1;
                    if steps >= budget {
                        tx.local().cut_by_break = true;
                        return (s, None);
                    }
                }
            });
            let next = if attempts > 1 {
                budget / 2
            } else {
                budget.saturating_add(budget / 4 + 1)
            };
            set_thread_budget(next);
            committed = state;
            if let Some(r) = done {
                return r;
            }
        }
    }
}
