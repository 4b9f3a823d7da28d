//! The operating-system calls the runtime makes, all in one place.
//!
//! * [`HeapFile`]: the heap image, a `memfd` that is sized once and never written after the
//!   segments are mapped (see "Segments" in `ARCHITECTURE.md` for why it must stay still).
//! * [`map_segment`]: one copy-on-write (`MAP_PRIVATE`) view of the heap image per segment.
//! * [`map_zeroed`]: anonymous zero-filled memory (the read-marker arrays).
//! * [`discard`]: `madvise(MADV_DONTNEED)`, which turns a private range back into the image's
//!   contents (zeros) and gives its physical pages back to the kernel.

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

use memmap2::{MmapMut, MmapOptions, UncheckedAdvice};

/// The heap image: an anonymous in-memory file (`memfd_create`) of the heap's size.
///
/// Every segment maps it privately. The file itself stays all zeros: writes go to each
/// segment's private copy, so a page that a segment never wrote keeps reading zeros, whatever
/// the other segments do. Committed data travels between segments through the commit log.
pub(crate) struct HeapFile {
    file: File,
}

impl HeapFile {
    /// Creates a zero-filled image of `len` bytes.
    pub(crate) fn create(len: usize) -> io::Result<HeapFile> {
        // SAFETY: the name is a valid NUL-terminated C string; the flags are valid for
        // memfd_create. The call has no other preconditions.
        let fd = unsafe { libc::memfd_create(c"stm-heap".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create, is open, and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        Ok(HeapFile { file })
    }
}

/// Maps the heap image privately (copy-on-write): the segment's own view of the heap.
pub(crate) fn map_segment(image: &HeapFile, len: usize) -> io::Result<MmapMut> {
    // SAFETY: the file is our own memfd; nobody truncates or writes it after this point
    // (HeapFile is private to the runtime and never written, invariant 2), so the mapping's
    // contents are only changed through the mapping itself.
    unsafe {
        MmapOptions::new()
            .len(len)
            .no_reserve_swap()
            .map_copy(&image.file)
    }
}

/// Maps `len` bytes of anonymous zero-filled private memory.
pub(crate) fn map_zeroed(len: usize) -> io::Result<MmapMut> {
    MmapOptions::new().len(len).no_reserve_swap().map_anon()
}

/// Gives a mapping's pages back to the kernel. Private file pages read the file again (zeros
/// for the heap image); anonymous pages read zeros.
///
/// # Safety
/// No reference into `map` may be alive: its contents change to zeros.
pub(crate) unsafe fn discard(map: &MmapMut) -> io::Result<()> {
    // SAFETY: the caller guarantees no reference into the mapping is alive; all accesses go
    // through raw pointers that are re-read after this call (invariant 20).
    unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) }
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
