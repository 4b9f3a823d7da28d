//! The operating-system calls the runtime makes, all in one place.
//!
//! * [`map_segment`]: one private, zero-filled view of the heap per segment.
//! * [`map_zeroed`]: anonymous zero-filled memory (the read-marker arrays).
//! * [`discard`]: `madvise(MADV_DONTNEED)`, which turns a private range back into zeros and
//!   gives its physical pages back to the kernel.
//! * [`heavy_fence`]: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, the expensive side of
//!   the asymmetric fence that biased segment ownership rests on (`owner.rs`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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

/// Whether `madvise(MADV_POPULATE_WRITE)` may work here: true until the kernel first refuses
/// it (before Linux 5.14), then [`populate_write`] asks no more.
static POPULATE: AtomicBool = AtomicBool::new(true);

/// The size of a page of memory.
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

/// Fills in, writable, the page-table entries of the pages of `len` bytes at `addr`
/// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14 and later) without changing a byte: a page
/// not touched yet becomes a zeroed page of its own, one already there stays as it is.
///
/// Why: the barriers read an entry of a side array (a read marker, a copy version, a
/// version word) before they write it, so a page of one first met by a read maps the
/// kernel's zero page, and the write that follows faults again to replace it, which
/// interrupts the process's other cores to flush their TLBs (7% of vacation's time on 2
/// threads, `perf record -e cpu-clock`). The callers (`ChunkAllocator::prefault`,
/// `View::fault_in`) fill pages before anything reads them.
///
/// Returns false where the kernel does not have it (nothing is done then, nor later).
pub(crate) fn populate_write(addr: usize, len: usize) -> bool {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    if !POPULATE.load(Ordering::Relaxed) {
        return false;
    }
    let page = page_size();
    let start = addr & !(page - 1);
    let end = (addr + len + page - 1) & !(page - 1);
    // SAFETY: MADV_POPULATE_WRITE changes no contents and unmaps nothing: it only faults in
    // pages of a mapping that exists (the caller's range lies inside one of the runtime's
    // private anonymous mappings, which live as long as the runtime), as a write would.
    let ok =
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) == 0 };
    if !ok {
        POPULATE.store(false, Ordering::Relaxed);
    }
    ok
}

/// Whether [`populate_write`] works here (for tests of its callers).
#[cfg(test)]
pub(crate) fn populate_available() -> bool {
    POPULATE.load(Ordering::Relaxed)
}

/// [`HEAVY_FENCE`]: not asked yet.
const FENCE_UNKNOWN: u8 = 0;
/// [`HEAVY_FENCE`]: a thread is registering the process.
const FENCE_REGISTERING: u8 = 1;
/// [`HEAVY_FENCE`]: registered; [`heavy_fence`] works.
const FENCE_READY: u8 = 2;
/// [`HEAVY_FENCE`]: not supported here, or turned off (`STM_BIAS=0`).
const FENCE_UNAVAILABLE: u8 = 3;

/// Where the registration for [`heavy_fence`] stands in this process.
static HEAVY_FENCE: AtomicU8 = AtomicU8::new(FENCE_UNKNOWN);

/// Starts registering the process for [`heavy_fence`], once per process: at once if the
/// process has one thread, else on a thread of its own (the registration of a multi-threaded
/// process waits for an RCU grace period in the kernel, about 13 ms measured here, which no
/// transaction should wait for). Until it is done,
/// [`heavy_fence_available`] answers no and segments are simply not biased.
/// `STM_BIAS=0` in the environment turns biasing off (for measuring what it gains).
pub(crate) fn start_heavy_fence_registration() {
    if HEAVY_FENCE
        .compare_exchange(
            FENCE_UNKNOWN,
            FENCE_REGISTERING,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return;
    }
    if std::env::var_os("STM_BIAS").is_some_and(|v| v == "0") {
        HEAVY_FENCE.store(FENCE_UNAVAILABLE, Ordering::Relaxed);
        return;
    }
    let register = || {
        let private = libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED;
        let register = libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
        let wanted = libc::c_long::from(private | register);
        // SAFETY: membarrier(QUERY, 0, 0) only returns the supported commands' bitmask.
        let supported =
            unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0, 0) };
        // SAFETY: registration has no memory effects; it only enables `private` for this
        // process.
        let ok = supported >= 0
            && supported & wanted == wanted
            && unsafe { libc::syscall(libc::SYS_membarrier, register, 0, 0) } == 0;
        // SeqCst (so also Release: a thread that sees READY sees a registered process): the
        // inevitable transaction's side of `protocol::announce` relies on one order of this
        // store and the loads below (a committer that saw READY and skipped its fence is
        // seen by a becomer that saw READY too, or ordered before one that did not).
        HEAVY_FENCE.store(
            if ok { FENCE_READY } else { FENCE_UNAVAILABLE },
            Ordering::SeqCst,
        );
    };
    // A single-threaded process registers at once (the kernel skips the grace period when
    // no other thread could be running); otherwise a thread of its own waits for it.
    if process_threads() == Some(1) {
        register();
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("stm-membarrier-register".into())
        .spawn(register);
    if spawned.is_err() {
        HEAVY_FENCE.store(FENCE_UNAVAILABLE, Ordering::Relaxed);
    }
}

/// The number of threads of this process (`/proc/self/stat`, field 20), if it can be read.
fn process_threads() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the
    // last ')'. Field 3 is the first after it, so field 20 is the 18th.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// Whether [`heavy_fence`] works in this process now: `membarrier` supports private
/// expedited barriers and the registration started by [`start_heavy_fence_registration`]
/// has finished.
#[inline]
pub(crate) fn heavy_fence_available() -> bool {
    HEAVY_FENCE.load(Ordering::SeqCst) == FENCE_READY
}

/// Whether every page of `len` bytes at `addr` is resident (`mincore`), for tests of
/// [`populate_write`]'s callers. The range must lie inside one mapping.
#[cfg(test)]
pub(crate) fn resident(addr: usize, len: usize) -> bool {
    let page = page_size();
    let start = addr & !(page - 1);
    let pages = (addr + len - start).div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: the caller's range lies inside one of its mappings, so do its whole pages;
    // `vec` has one byte per page.
    let r = unsafe { libc::mincore(start as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore failed");
    vec.iter().all(|&b| b & 1 != 0)
}

/// Whether the registration for [`heavy_fence`] has finished (either way).
#[cfg(test)]
pub(crate) fn heavy_fence_settled() -> bool {
    matches!(
        HEAVY_FENCE.load(Ordering::Acquire),
        FENCE_READY | FENCE_UNAVAILABLE
    )
}

/// The heavy side of an asymmetric fence: when it returns true, every thread of this process
/// has run a full memory barrier since the call began (or was not running, which implies
/// one). Paired with a compiler fence on the light side, it orders a store before a later
/// load in both threads, as if both had run a full fence (see `owner.rs`).
///
/// Only called after [`heavy_fence_available`] returned true (a thief calls it only for a
/// biased segment, and segments are biased only then). False if the kernel refused (it may,
/// short of memory): the caller must then act as if the fence had not happened.
#[must_use]
pub(crate) fn heavy_fence() -> bool {
    // SAFETY: membarrier(PRIVATE_EXPEDITED, 0, 0) has no memory-safety preconditions; the
    // process registered for it (`start_heavy_fence_registration`) before any caller could
    // see `heavy_fence_available` return true.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    r == 0
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
