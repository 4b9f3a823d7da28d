//! The transaction queue: many small transactions run in parallel on worker threads
//! (PyPy-STM's `transaction.TransactionQueue`).
//!
//! Tasks are closures; each runs as its own transaction, retried on conflict, so the result
//! equals some serial execution of the tasks. A task may add more tasks; those become
//! runnable only when the attempt that added them commits (an aborted attempt's additions
//! vanish with it). By default workers take the newest task first (depth first, like Duhton
//! and PyPy's queue); [`QueueOrder::Fifo`] takes the oldest first (breadth first).
//!
//! Workers take tasks from the shared queue in batches (a share of what waits, guided
//! self-scheduling) and keep the tasks their own commits add, so that a small task costs no
//! trip through the queue's lock, whose cache line would otherwise travel between the cores at
//! every task. A worker that runs out waits and is *hungry*: the others then hand it half of
//! their batches. With one worker the order is exactly the queue's order.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::report;
use crate::runtime::Stm;
use crate::stats::Stats;
use crate::tx::Tx;

type Task<'env> = Box<dyn FnMut(&Tx, &mut Tasks<'env>) + Send + 'env>;

/// Tasks added by the running attempt of a task; they join the queue if it commits.
pub struct Tasks<'env> {
    added: Vec<Task<'env>>,
}

impl<'env> Tasks<'env> {
    /// Adds a task, to run after the current one commits.
    pub fn add(&mut self, task: impl FnMut(&Tx, &mut Tasks<'env>) + Send + 'env) {
        self.added.push(Box::new(task));
    }
}

impl std::fmt::Debug for Tasks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("added", &self.added.len())
            .finish()
    }
}

/// Which task a worker of a [`TransactionQueue`] takes next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueOrder {
    /// The newest first (depth first: a task's follow-ups run before older tasks). The
    /// default, as in PyPy's `TransactionQueue` and Duhton.
    #[default]
    Lifo,
    /// The oldest first (breadth first), in the order tasks were added and committed.
    Fifo,
}

/// What a [`TransactionQueue::run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// Tasks that ran (each committed once).
    pub tasks: u64,
    /// Worker threads used.
    pub threads: usize,
    /// How long the run took.
    pub elapsed: Duration,
    /// The runtime's counters during the run (commits, aborts by cause, ...). Transactions
    /// run by other threads on the same runtime meanwhile are counted too.
    pub stats: Stats,
}

/// A queue of transactions to run in parallel.
///
/// ```
/// use stm_runtime::{Stm, TransactionQueue};
///
/// let stm = Stm::builder().segments(2).heap_size(1 << 20).build().unwrap();
/// let total = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
/// let queue = TransactionQueue::new(&stm);
/// for i in 1..=100u64 {
///     let total = &total;
///     queue.add(move |tx, _| total.get(tx).update(|t| *t += i));
/// }
/// let report = queue.run(2);
/// assert_eq!(report.tasks, 100);
/// assert_eq!(stm.atomically(|tx| total.get(tx).get()), 5050);
/// ```
pub struct TransactionQueue<'env> {
    stm: Stm,
    state: Mutex<State<'env>>,
    wake: Condvar,
    /// Some worker waits for tasks (`State::waiting > 0`): the busy ones share theirs.
    hungry: AtomicBool,
    /// A task panicked: workers stop after their current task.
    stop: AtomicBool,
}

/// The most tasks a worker takes from the queue at once.
const MAX_BATCH: usize = 256;

struct State<'env> {
    /// Runnable tasks not taken by a worker; the newest at the back.
    stack: VecDeque<Task<'env>>,
    /// Which end workers take from.
    order: QueueOrder,
    /// Workers holding tasks (running one, or with a batch of their own).
    busy: usize,
    /// Workers waiting for tasks.
    waiting: usize,
    /// The first panic of the run; the run stops when set.
    panic: Option<Box<dyn Any + Send>>,
    /// Tasks committed by this run.
    done: u64,
}

impl<'env> TransactionQueue<'env> {
    /// An empty queue whose tasks run on `stm`, newest task first ([`QueueOrder::Lifo`]).
    pub fn new(stm: &Stm) -> Self {
        TransactionQueue {
            stm: stm.clone(),
            state: Mutex::new(State {
                stack: Default::default(),
                order: QueueOrder::Lifo,
                busy: 0,
                waiting: 0,
                panic: None,
                done: 0,
            }),
            wake: Condvar::new(),
            hungry: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// An empty queue whose workers take tasks in `order`: [`QueueOrder::Fifo`] for a
    /// breadth-first search or any work where tasks added later should wait for the earlier
    /// ones.
    pub fn with_order(stm: &Stm, order: QueueOrder) -> Self {
        let q = TransactionQueue::new(stm);
        q.lock().order = order;
        q
    }

    /// Adds a task. It runs as one transaction when [`TransactionQueue::run`] is called; it
    /// may run more than once if it conflicts (only the last run commits), so keep its effects
    /// in the shared heap or make it inevitable first.
    pub fn add(&self, task: impl FnMut(&Tx, &mut Tasks<'env>) + Send + 'env) {
        self.lock().stack.push_back(Box::new(task));
    }

    /// Tasks waiting to run.
    pub fn len(&self) -> usize {
        self.lock().stack.len()
    }

    /// Whether no task is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<'env>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs every task, and every task they add, on `threads` worker threads (0 means one per
    /// segment of the runtime), and returns when all are done.
    ///
    /// # Panics
    /// * If a task panics: its transaction is rolled back, the other workers stop after their
    ///   current task, the tasks not yet run are dropped, and the panic is raised again here.
    /// * If called inside a transaction: the tasks' commits would not be part of that
    ///   transaction's snapshot (it would go on reading stale data), and it holds a segment
    ///   the workers may wait for. Queue the work from outside, or add it as tasks.
    #[track_caller]
    pub fn run(&self, threads: usize) -> RunReport {
        crate::tx::refuse_inside_transaction("TransactionQueue::run");
        let threads = if threads == 0 {
            self.stm.config().segments
        } else {
            threads
        };
        let before = self.stm.stats();
        let start = Instant::now();
        self.lock().done = 0;
        self.stop.store(false, Ordering::Relaxed);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| self.work(threads));
            }
        });
        let mut st = self.lock();
        if let Some(p) = st.panic.take() {
            let rest = std::mem::take(&mut st.stack);
            drop(st);
            drop(rest);
            panic::resume_unwind(p);
        }
        let report = RunReport {
            tasks: st.done,
            threads,
            elapsed: start.elapsed(),
            stats: self.stm.stats() - before,
        };
        drop(st);
        if report::env_enabled() {
            eprint!("{}", self.stm.conflict_report());
        }
        report
    }

    /// One worker: take a batch of tasks, run each as a transaction, keep what they add
    /// (LIFO) or queue it (FIFO), share with hungry workers; until every worker is out of
    /// tasks.
    fn work(&self, threads: usize) {
        let mut local: VecDeque<Task<'env>> = VecDeque::new();
        let mut done = 0u64;
        let mut st = self.lock();
        loop {
            st.done += std::mem::take(&mut done);
            if st.panic.is_some() {
                return;
            }
            let n = st.stack.len();
            if n == 0 {
                if st.busy == 0 {
                    // Nobody holds a task, and none waits: the run is over.
                    self.wake.notify_all();
                    return;
                }
                st.waiting += 1;
                self.hungry.store(true, Ordering::Relaxed);
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                st.waiting -= 1;
                self.hungry.store(st.waiting > 0, Ordering::Relaxed);
                continue;
            }
            let order = st.order;
            let k = (n / (2 * threads.max(1))).clamp(1, MAX_BATCH);
            match order {
                // The newest k, in order: the newest is taken first from the back.
                QueueOrder::Lifo => local.extend(st.stack.drain(n - k..)),
                QueueOrder::Fifo => local.extend(st.stack.drain(..k)),
            }
            st.busy += 1;
            drop(st);
            let stopped = self.run_batch(&mut local, order, &mut done);
            // What the dropped tasks captured is user code's to drop: not under the lock.
            local.clear();
            st = self.lock();
            st.busy -= 1;
            if let Err(p) = stopped {
                st.done += std::mem::take(&mut done);
                let later = match st.panic {
                    None => {
                        st.panic = Some(p);
                        None
                    }
                    Some(_) => Some(p),
                };
                self.stop.store(true, Ordering::Relaxed);
                self.wake.notify_all();
                drop(st);
                drop(later); // a payload's `Drop` is user code too
                return;
            }
        }
    }

    /// Runs the tasks of a worker's batch until it is empty or the run stops (`Ok`), or a
    /// task panics (`Err` with the payload).
    fn run_batch(
        &self,
        local: &mut VecDeque<Task<'env>>,
        order: QueueOrder,
        done: &mut u64,
    ) -> Result<(), Box<dyn Any + Send>> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let next = match order {
                QueueOrder::Lifo => local.pop_back(),
                QueueOrder::Fifo => local.pop_front(),
            };
            let Some(mut task) = next else {
                return Ok(());
            };
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                self.stm.atomically(|tx| {
                    let mut tasks = Tasks { added: Vec::new() };
                    task(tx, &mut tasks);
                    tasks.added
                })
            }));
            // What the task captured is user code's to drop: not under the queue's lock.
            drop(task);
            let added = outcome?;
            *done += 1;
            if !added.is_empty() {
                match order {
                    // Depth first: the follow-ups are the newest tasks, run next, here.
                    QueueOrder::Lifo => local.extend(added),
                    // Breadth first: they wait behind everything already queued.
                    QueueOrder::Fifo => {
                        let mut st = self.lock();
                        st.stack.extend(added);
                        if st.waiting > 0 {
                            self.wake.notify_all();
                        }
                    }
                }
            }
            if local.len() > 1 && self.hungry.load(Ordering::Relaxed) {
                let mut st = self.lock();
                if st.waiting > 0 {
                    let give = local.len() / 2;
                    match order {
                        // Our oldest half goes on top of the shared stack.
                        QueueOrder::Lifo => st.stack.extend(local.drain(..give)),
                        // Our newest half is older than everything queued: it goes in front.
                        QueueOrder::Fifo => {
                            let keep = local.len() - give;
                            for t in local.drain(keep..).rev() {
                                st.stack.push_front(t);
                            }
                        }
                    }
                    self.wake.notify_all();
                }
            }
        }
    }
}

impl std::fmt::Debug for TransactionQueue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionQueue")
            .field("waiting", &self.len())
            .finish_non_exhaustive()
    }
}
