//! Runtime configuration and the errors a runtime can report.

use std::fmt;

/// The largest heap a runtime accepts: handles are 32-bit granule numbers (16 bytes each).
pub const MAX_HEAP_SIZE: usize = 16 * (u32::MAX as usize);
/// The smallest heap a runtime accepts.
pub const MIN_HEAP_SIZE: usize = 1 << 20;
/// The most segments (concurrently running transactions) a runtime accepts.
pub const MAX_SEGMENTS: usize = 256;

/// How a runtime is set up. Build one with [`Stm::builder`](crate::Stm::builder).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Segments: how many transactions run at the same moment. A thread that starts a
    /// transaction while every segment is busy waits for one. Default: the number of CPUs
    /// GIL mode (feature `gil`) always runs one segment, whatever this says: that one segment
    /// is the global lock.
    pub segments: usize,
    /// Bytes of shared heap (virtual memory, mapped once per segment; only pages actually used
    /// take memory). Default: 256 MiB.
    pub heap_size: usize,
    /// After this many aborts in a row, the next attempt of a transaction runs inevitable, so
    /// it cannot lose again (the progress guarantee). Default: 8.
    pub inevitable_after: u32,
    /// Record every conflict for [`Stm::conflict_report`](crate::Stm::conflict_report).
    /// Default: off, unless the environment variable `STM_CONFLICT_REPORT=1` is set.
    pub conflict_reports: bool,
    /// For testing the rollback paths: the probability that a write barrier's slow path, an
    /// allocation or a commit aborts the attempt as if it had conflicted (inevitable
    /// transactions excepted). Default 0.
    pub fault_rate: f64,
    /// Number every committed transaction in one serial order that
    /// [`last_commit_rev`](crate::last_commit_rev) reports, for checkers that replay a run.
    /// It costs one shared counter that every commit increments (and read-only transactions
    /// then validate their reads at commit): it serializes commits on one cache line, so it is
    /// for tests, not for speed. Default: off (`last_commit_rev` then returns 0).
    pub serial_order: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segments: if cfg!(feature = "gil") {
                1
            } else {
                crate::sys::available_cpus()
            },
            heap_size: 256 << 20,
            inevitable_after: 8,
            conflict_reports: false,
            fault_rate: 0.0,
            serial_order: false,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), StmError> {
        if self.segments == 0 {
            return Err(StmError::Config("segments must be at least 1".into()));
        }
        if self.segments > MAX_SEGMENTS {
            return Err(StmError::Config(format!(
                "segments = {} is more than the maximum of {MAX_SEGMENTS}",
                self.segments
            )));
        }
        if !(0.0..=1.0).contains(&self.fault_rate) {
            return Err(StmError::Config(format!(
                "fault_rate = {} is not a probability",
                self.fault_rate
            )));
        }
        if self.heap_size < MIN_HEAP_SIZE || self.heap_size > MAX_HEAP_SIZE {
            return Err(StmError::Config(format!(
                "heap_size = {} bytes is outside {MIN_HEAP_SIZE}..={MAX_HEAP_SIZE}",
                self.heap_size
            )));
        }
        Ok(())
    }
}

/// What can go wrong when creating a runtime or allocating in it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StmError {
    /// The configuration is not usable; the message says which value and why.
    Config(String),
    /// The operating system refused to create or map the heap.
    Map(std::io::Error),
    /// The shared heap has no room left for an allocation of this many bytes.
    HeapExhausted {
        /// The size of the allocation that failed, header included.
        requested: usize,
        /// The configured heap size.
        heap_size: usize,
    },
}

impl fmt::Display for StmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StmError::Config(msg) => write!(f, "invalid STM configuration: {msg}"),
            StmError::Map(e) => write!(f, "cannot map the STM heap: {e}"),
            StmError::HeapExhausted {
                requested,
                heap_size,
            } => write!(
                f,
                "STM heap exhausted: no room for {requested} more bytes in a heap of \
                 {heap_size} bytes (raise it with `Stm::builder().heap_size(..)`)"
            ),
        }
    }
}

impl std::error::Error for StmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StmError::Map(e) => Some(e),
            _ => None,
        }
    }
}
