//! The transaction queue: many small transactions run in parallel on worker threads
//! (PyPy-STM's `transaction.TransactionQueue`).
//!
//! Tasks are closures; each runs as its own transaction, retried on conflict, so the result
//! equals some serial execution of the tasks. A task may add more tasks; those become
//! runnable only when the attempt that added them commits (an aborted attempt's additions
//! vanish with it). By default workers take the newest task first (depth first, like Duhton
//! and PyPy's queue); [`QueueOrder::Fifo`] takes the oldest first (breadth first).
//!
//! Each worker has a deque of its own: it takes tasks from the shared queue in batches (a
//! share of what waits, guided self-scheduling), keeps there the tasks its own commits add
//! (LIFO order), and a worker that runs out steals half of another's deque. A small task thus
//! costs no trip through a lock another core just used (the queue's cache line would
//! otherwise travel between the cores at every task), and a task that waits (in
//! [`Tx::retry`], say) never keeps the others from the tasks behind it. With one worker the
//! order is exactly the queue's order.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

use crate::pool::Monitor;
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
    /// Idle workers wait here for tasks (or for the end of the run).
    idle: Monitor,
    /// A task panicked: workers stop after their current task.
    stop: AtomicBool,
}

/// One worker of a run: the tasks it holds (stealable by the others) and whether it is
/// running one of them. Each on lines of its own: only its worker writes them, except a thief.
struct Worker<'env> {
    tasks: Mutex<VecDeque<Task<'env>>>,
    running: AtomicBool,
}

/// The most tasks a worker takes from the queue at once.
const MAX_BATCH: usize = 256;

struct State<'env> {
    /// Runnable tasks not taken by a worker; the newest at the back.
    stack: VecDeque<Task<'env>>,
    /// Which end workers take from.
    order: QueueOrder,
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
                panic: None,
                done: 0,
            }),
            idle: Monitor::default(),
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
        let workers: Vec<CachePadded<Worker<'env>>> = (0..threads)
            .map(|_| {
                CachePadded::new(Worker {
                    tasks: Mutex::new(VecDeque::new()),
                    running: AtomicBool::new(false),
                })
            })
            .collect();
        std::thread::scope(|s| {
            for me in 0..threads {
                let workers = &workers;
                s.spawn(move || self.work(workers, me));
            }
        });
        let mut st = self.lock();
        if let Some(p) = st.panic.take() {
            let rest = std::mem::take(&mut st.stack);
            drop(st);
            // The tasks not run: user code's to drop, not under the lock.
            drop(rest);
            drop(workers);
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

    /// One worker: run the tasks of its own deque (and keep there what they add, LIFO),
    /// refill it from the shared queue or by stealing; until no worker holds or runs a task.
    fn work(&self, workers: &[CachePadded<Worker<'env>>], me: usize) {
        let mine = &workers[me];
        let order = self.lock().order;
        let mut done = 0u64;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            // SeqCst: a worker checking whether the run is over either sees this flag or
            // finds the task we are about to take (see `find_work`).
            mine.running.store(true, Ordering::SeqCst);
            let next = {
                let mut own = lock(&mine.tasks);
                match order {
                    QueueOrder::Lifo => own.pop_back(),
                    QueueOrder::Fifo => own.pop_front(),
                }
            };
            let Some(task) = next else {
                mine.running.store(false, Ordering::SeqCst);
                if self.find_work(workers, me) {
                    continue;
                }
                break;
            };
            match self.run_task(task, mine, order) {
                Ok(()) => done += 1,
                Err(p) => {
                    let mut st = self.lock();
                    let later = match st.panic {
                        None => {
                            st.panic = Some(p);
                            None
                        }
                        Some(_) => Some(p),
                    };
                    self.stop.store(true, Ordering::SeqCst);
                    // Not under the state's lock: a sleeping worker looks for work (which
                    // takes that lock) while holding the monitor's, so notifying here
                    // deadlocked them (seen once in `a_panicking_drop_of_a_task_stops_the_run`).
                    drop(st);
                    self.idle.notify();
                    drop(later); // a payload's `Drop` is user code too
                    break;
                }
            }
        }
        mine.running.store(false, Ordering::SeqCst);
        self.lock().done += done;
        self.idle.notify();
    }

    /// Runs one task as a transaction and files what it added; `Err` with the payload if
    /// the task (or the `Drop` of what it captured) panicked.
    fn run_task(
        &self,
        mut task: Task<'env>,
        mine: &Worker<'env>,
        order: QueueOrder,
    ) -> Result<(), Box<dyn Any + Send>> {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            self.stm.atomically(|tx| {
                let mut tasks = Tasks { added: Vec::new() };
                task(tx, &mut tasks);
                tasks.added
            })
        }));
        // What the task captured is user code's to drop: not under a lock, and its panic is
        // the task's.
        panic::catch_unwind(AssertUnwindSafe(|| drop(task)))?;
        let added = outcome?;
        if !added.is_empty() {
            match order {
                // Depth first: the follow-ups are the newest tasks, run next, here.
                QueueOrder::Lifo => lock(&mine.tasks).extend(added),
                // Breadth first: they wait behind everything already queued.
                QueueOrder::Fifo => self.lock().stack.extend(added),
            }
            // Without a fence: an idle worker that races with this sees the tasks at its
            // next poll.
            self.idle.notify_cheap();
        }
        Ok(())
    }

    /// Refills worker `me`'s deque from the shared queue, or steals half of another
    /// worker's; waits while others still run tasks. False when the run is over (no task
    /// anywhere and no worker running one) or stopped.
    fn find_work(&self, workers: &[CachePadded<Worker<'env>>], me: usize) -> bool {
        let mut found = false;
        self.idle
            .wait_until(|| match self.try_find_work(workers, me) {
                Some(f) => {
                    found = f;
                    true
                }
                None => false,
            });
        found
    }

    /// One look for work (see [`TransactionQueue::find_work`]): `Some(true)` with tasks in
    /// `me`'s deque, `Some(false)` when the run is over or stopped, `None` while others still
    /// run tasks that may add more.
    fn try_find_work(&self, workers: &[CachePadded<Worker<'env>>], me: usize) -> Option<bool> {
        let threads = workers.len();
        let mut st = self.lock();
        if self.stop.load(Ordering::SeqCst) {
            return Some(false);
        }
        // Tasks move into a deque only under this lock (a batch, a theft) or by the deque's
        // own running worker (follow-ups), so what we see here cannot grow behind our back
        // unless a worker runs.
        let n = st.stack.len();
        if n > 0 {
            let k = (n / (2 * threads)).clamp(1, MAX_BATCH);
            let batch: Vec<Task<'env>> = match st.order {
                // The newest k, in order: the newest is taken first from the back.
                QueueOrder::Lifo => st.stack.drain(n - k..).collect(),
                QueueOrder::Fifo => st.stack.drain(..k).collect(),
            };
            lock(&workers[me].tasks).extend(batch);
            return Some(true);
        }
        let mut anyone_running = false;
        for (i, w) in workers.iter().enumerate() {
            if i == me {
                continue;
            }
            // SeqCst: pairs with the owner's store before it takes a task.
            anyone_running |= w.running.load(Ordering::SeqCst);
            let mut theirs = lock(&w.tasks);
            let take = theirs.len().div_ceil(2);
            if take > 0 {
                // Their oldest half (LIFO runs the newest first; FIFO the oldest, so we take
                // the newer half and leave them the front).
                let stolen: Vec<Task<'env>> = match st.order {
                    QueueOrder::Lifo => theirs.drain(..take).collect(),
                    QueueOrder::Fifo => {
                        let keep = theirs.len() - take;
                        theirs.drain(keep..).collect()
                    }
                };
                drop(theirs);
                lock(&workers[me].tasks).extend(stolen);
                return Some(true);
            }
        }
        // Nothing queued, nothing held: over unless someone runs a task that may add more.
        (!anyone_running).then_some(false)
    }
}

/// Locks a worker's deque (a task that panicked was caught: the deque is consistent).
fn lock<'a, 'env>(
    tasks: &'a Mutex<VecDeque<Task<'env>>>,
) -> std::sync::MutexGuard<'a, VecDeque<Task<'env>>> {
    tasks.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for TransactionQueue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionQueue")
            .field("waiting", &self.len())
            .finish_non_exhaustive()
    }
}
