//! The operating-system calls the runtime makes, all in one place.
//!
//! * [`map_segment`]: one private, zero-filled view of the heap per segment.
//! * [`map_zeroed`]: anonymous zero-filled memory (the read-marker arrays).
//! * [`discard`]: `madvise(MADV_DONTNEED)`, which turns a private range back into zeros and
//!   gives its physical pages back to the kernel.
//! * [`heavy_fence`]: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, the expensive side of
//!   the asymmetric fence that biased segment ownership rests on (`owner.rs`).

use std::io;

use memmap2::{MmapMut, MmapOptions, UncheckedAdvice};

/// Maps one segment's view of the heap: `len` bytes of private memory that read zeros until
/// the segment writes them (pages are allocated on first touch; no swap is reserved).
///
/// Every segment starts from the same empty heap, and committed data travels between
/// segments only through the commit log, so nothing needs to be shared below the segments.
/// (The first version mapped one `memfd` privately per segment, a file never written: the
/// same view, but each first write to a page also put a zero page into the file's page
/// cache. Measured on 512 MiB touched page by page: 0.30-1.69 s and 512 MiB more shared
/// memory with the `memfd`, 0.19 s and none without.)
pub(crate) fn map_segment(len: usize) -> io::Result<MmapMut> {
    map_zeroed(len)
}

/// Maps `len` bytes of anonymous zero-filled private memory.
pub(crate) fn map_zeroed(len: usize) -> io::Result<MmapMut> {
    MmapOptions::new().len(len).no_reserve_swap().map_anon()
}

/// Gives a mapping's pages back to the kernel; they read zeros afterwards.
///
/// # Safety
/// No reference into `map` may be alive: its contents change to zeros.
pub(crate) unsafe fn discard(map: &MmapMut) -> io::Result<()> {
    // SAFETY: the caller guarantees no reference into the mapping is alive; all accesses go
    // through raw pointers that are re-read after this call (invariant 20).
    unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) }
}

/// Whether [`heavy_fence`] works in this process: `membarrier` supports private expedited
/// barriers and this process is registered for them (registration is process-wide and done
/// once, here). `STM_BIAS=0` in the environment answers no (segments are then never biased:
/// for measuring what biasing gains).
pub(crate) fn heavy_fence_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("STM_BIAS").is_some_and(|v| v == "0") {
            return false;
        }
        let private = libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED;
        let register = libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
        // SAFETY: membarrier(QUERY, 0, 0) only returns the supported commands' bitmask.
        let supported =
            unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0, 0) };
        if supported < 0
            || supported & (private | register) as libc::c_long
                != (private | register) as libc::c_long
        {
            return false;
        }
        // SAFETY: registration has no memory effects; it only enables `private` for this process.
        unsafe { libc::syscall(libc::SYS_membarrier, register, 0, 0) == 0 }
    })
}

/// The heavy side of an asymmetric fence: when it returns, every thread of this process has
/// run a full memory barrier since the call began (or was not running, which implies one).
/// Paired with a compiler fence on the light side, it orders a store before a later load
/// in both threads, as if both had run a full fence (see `owner.rs`).
///
/// Only called after [`heavy_fence_available`] returned true; a failure then would break
/// the exclusion it provides, so it aborts the process rather than return.
pub(crate) fn heavy_fence() {
    // SAFETY: membarrier(PRIVATE_EXPEDITED, 0, 0) has no memory-safety preconditions; the
    // process registered for it in `heavy_fence_available`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    if r != 0 {
        eprintln!(
            "stm-runtime: membarrier(PRIVATE_EXPEDITED) failed after registration: {}",
            io::Error::last_os_error()
        );
        std::process::abort();
    }
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`; zero if the clock
/// cannot be read): unlike wall time, it does not count the time the thread was descheduled.
/// The conflict report measures the time lost in it; against wall time, it tells whether
/// threads really ran at the same time (on a VM two threads may take turns).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Registers `f` to run when the process exits (`exit(3)`, which `std::process::exit` and a
/// return from `main` both go through).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain `extern "C" fn()` that lives for the whole program (a function
    // item); `atexit` has no other precondition. Its result only says whether it was added.
    let _ = unsafe { libc::atexit(f) };
}

/// The number of CPUs this process may run on (at least 1).
pub(crate) fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
