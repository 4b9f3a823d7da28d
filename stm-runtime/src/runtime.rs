//! The runtime object ([`Stm`]) and its [`Builder`]: the public face of the shared state in
//! `pool.rs`.

use std::sync::{Arc, OnceLock};

use crate::config::{Config, StmError};
use crate::pool::Shared;
use crate::report;
use crate::stats::{GcStats, Stats};

/// A shared heap and the transactions that run on it.
///
/// `Stm` is a cheap handle (an `Arc`): clone it to give it to threads. Objects live as long
/// as the runtime, and the runtime lives as long as any `Stm` clone or
/// [`Root`](crate::Root) refers to it.
///
/// ```
/// use stm_runtime::Stm;
///
/// let stm = Stm::builder().segments(2).heap_size(16 << 20).build().unwrap();
/// let counter = stm.atomically(|tx| tx.root(tx.alloc(0u64)));
/// stm.atomically(|tx| {
///     let c = counter.get(tx);
///     c.set(c.get() + 1);
/// });
/// assert_eq!(stm.atomically(|tx| counter.get(tx).get()), 1);
/// ```
#[derive(Clone)]
pub struct Stm {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Stm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stm")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builds a runtime with chosen settings. See [`Config`] for each setting and its default.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// How many transactions may run at the same moment (default: the number of CPUs).
    pub fn segments(mut self, n: usize) -> Self {
        self.config.segments = n;
        self
    }

    /// The heap size in bytes (default 256 MiB of virtual memory per segment).
    pub fn heap_size(mut self, bytes: usize) -> Self {
        self.config.heap_size = bytes;
        self
    }

    /// Records every conflict for [`Stm::conflict_report`] (default: off, unless the
    /// environment variable `STM_CONFLICT_REPORT=1` is set).
    pub fn conflict_reports(mut self, on: bool) -> Self {
        self.config.conflict_reports = on;
        self
    }

    /// Testing aid: makes write barriers' slow paths, allocations and commits abort at random
    /// with this probability, so that rollback paths run often (default 0).
    pub fn inject_faults(mut self, probability: f64) -> Self {
        self.config.fault_rate = probability;
        self
    }

    /// Numbers every commit in one serial order, reported by
    /// [`last_commit_rev`](crate::last_commit_rev) (see [`Config::serial_order`]): for
    /// checkers that replay a run; it makes every commit write one shared counter.
    pub fn serial_order(mut self, on: bool) -> Self {
        self.config.serial_order = on;
        self
    }

    /// After this many aborts in a row a transaction runs inevitable (default 8).
    pub fn inevitable_after(mut self, aborts: u32) -> Self {
        self.config.inevitable_after = aborts;
        self
    }

    /// Creates the runtime: one mapping per segment, the committed heap and its version words.
    pub fn build(self) -> Result<Stm, StmError> {
        Shared::new(self.config).map(|s| Stm {
            shared: Arc::new(s),
        })
    }

    /// Creates the runtime and makes it the process-wide one, [`Stm::global`] (which
    /// `#[transactional]` and `#[in_transactions]` functions use): call it at the start of
    /// `main`, before anything uses the global runtime.
    ///
    /// # Errors
    /// [`StmError::Config`] if the global runtime exists already (it is created on first
    /// use), or any error of [`Builder::build`].
    pub fn build_global(self) -> Result<&'static Stm, StmError> {
        let stm = self.build()?;
        let mut fresh = false;
        let global = GLOBAL.get_or_init(|| {
            fresh = true;
            stm
        });
        if fresh {
            report_at_exit();
            Ok(global)
        } else {
            Err(StmError::Config(
                "the global runtime exists already: call `build_global` before anything uses \
                 `Stm::global()`"
                    .into(),
            ))
        }
    }
}

/// The process-wide runtime (see [`Stm::global`]).
static GLOBAL: OnceLock<Stm> = OnceLock::new();

/// With `STM_CONFLICT_REPORT` set, prints the global runtime's report when the process exits
/// (it is never dropped, and `std::process::exit` runs no destructors); registered once.
fn report_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if report::env_enabled() {
        ONCE.call_once(|| crate::sys::at_exit(print_global_report));
    }
}

extern "C" fn print_global_report() {
    // Never unwind out of an `extern "C"` exit handler.
    let _ = std::panic::catch_unwind(|| {
        if let Some(stm) = GLOBAL.get() {
            let r = stm.conflict_report();
            if !r.sites.is_empty() {
                eprint!("{r}");
            }
        }
    });
}

impl Stm {
    /// A runtime with the default [`Config`].
    pub fn new() -> Result<Stm, StmError> {
        Builder::default().build()
    }

    /// A builder to choose the number of segments, the heap size and the progress policy.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide runtime, created on first use with the default configuration
    /// (overridable by the environment variables `STM_SEGMENTS` and `STM_HEAP_MB`), unless
    /// [`Builder::build_global`] created it first.
    ///
    /// # Panics
    /// If the runtime cannot be created (bad environment values, or the OS refused the
    /// mapping); the message says why.
    pub fn global() -> &'static Stm {
        if let Some(stm) = GLOBAL.get() {
            return stm;
        }
        let stm = GLOBAL.get_or_init(|| {
            let mut b = Stm::builder();
            if let Some(n) = env_number("STM_SEGMENTS") {
                b = b.segments(n);
            }
            if let Some(mb) = env_number("STM_HEAP_MB") {
                b = b.heap_size(mb.saturating_mul(1 << 20));
            }
            b.build()
                .unwrap_or_else(|e| panic!("cannot create the global STM runtime: {e}"))
        });
        report_at_exit();
        stm
    }

    /// The configuration this runtime runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Counters summed over every segment: commits, aborts by cause, inevitable transactions.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Collects garbage now: waits until no transaction of this runtime runs, frees every
    /// object no [`Root`](crate::Root) reaches, and frees the commit log. Collections also run
    /// by themselves as the heap fills.
    ///
    /// # Panics
    /// If called inside a transaction (of any runtime): it would wait for that transaction to
    /// end.
    #[track_caller]
    pub fn collect(&self) -> GcStats {
        crate::tx::refuse_inside_transaction("Stm::collect");
        self.shared.collect();
        self.gc_stats()
    }

    /// What the collections so far found (live and freed sizes of the last one).
    pub fn gc_stats(&self) -> GcStats {
        self.shared
            .gc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
    }

    /// Whether `self` and `other` are the same runtime.
    pub fn same_runtime(&self, other: &Stm) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

fn env_number(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("environment variable {name}={v:?} is not a number"),
    }
}
