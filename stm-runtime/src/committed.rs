//! The committed heap: the newest committed image of every object, and one *version word*
//! per granule that says which version of the object that image is and whether a committer
//! holds the object locked.
//!
//! Segments are private caches of this heap. A segment remembers, per granule, the version
//! word of the image it holds (`View::copies_ptr`, `segment.rs`); the read barrier's slow path compares
//! it with the object's version word here and imports the newer image when they differ. A
//! committer locks the version words of the objects it wrote, copies their new images here,
//! and unlocks them with the next version (`commit.rs`). Nothing else is shared between
//! segments: a commit writes only the lines of the objects it wrote, and a segment reads only
//! the lines of the objects it reads, so threads working on disjoint data exchange no cache
//! line at all.
//!
//! A version word is `version | holder` (`protocol.rs` has the encoding): the low
//! `HOLDER_BITS` bits are 0 when the object is unlocked, else the index + 1 of the segment
//! whose committer holds it; the rest counts the object's commits (in units of `ONE`), so it
//! only grows, across frees and reuses of
//! the granule too. 55 bits of count outlast any program (a hundred million commits a second
//! to one object for eleven years).
//!
//! Images are copied in and out with [`copy_racy`]: a committer may overwrite an image while
//! an importer copies it (the importer then sees the version word change and copies again,
//! as in a seqlock), so these copies are written in assembly, where a racing access is the
//! hardware's business (x86-64's ordered loads and stores), not a data race of the Rust
//! abstract machine.

use std::sync::atomic::AtomicU64;

use memmap2::MmapMut;

use crate::heap::GRANULE;
use crate::sys;

/// The newest committed image of every object, and the objects' version words.
pub(crate) struct CommittedHeap {
    /// The images, at the same offsets as in the segments (kept for its lifetime).
    _images: MmapMut,
    /// One `AtomicU64` version word per granule (kept for its lifetime).
    _versions: MmapMut,
    images: *mut u64,
    versions: *const AtomicU64,
    granules: usize,
    /// The processor has `prefetchw` ([`CommittedHeap::prefetch_for_commit`]).
    prefetchw: bool,
}

// SAFETY: the mappings are owned by the runtime, not by a thread; the version words are only
// accessed as atomics, and the images only through `copy_racy` (by committers holding the
// object's lock and importers that check its version word around the copy) or while the
// collector owns every segment (no commit or import runs then, invariant 7).
unsafe impl Send for CommittedHeap {}
// SAFETY: as for Send.
unsafe impl Sync for CommittedHeap {}

impl CommittedHeap {
    /// A committed heap of `heap_size` bytes: every image zero, every version word 0.
    pub(crate) fn new(heap_size: usize) -> std::io::Result<CommittedHeap> {
        let mut images = sys::map_segment(heap_size)?;
        let granules = heap_size / GRANULE;
        let mut versions = sys::map_zeroed(granules * 8)?;
        Ok(CommittedHeap {
            images: images.as_mut_ptr().cast(),
            versions: versions.as_mut_ptr().cast::<AtomicU64>().cast_const(),
            _images: images,
            _versions: versions,
            granules,
            #[cfg(target_arch = "x86_64")]
            prefetchw: has_prefetchw(),
            #[cfg(not(target_arch = "x86_64"))]
            prefetchw: false,
        })
    }

    /// The version word of the object at `granule`.
    #[inline(always)]
    pub(crate) fn word(&self, granule: u32) -> &AtomicU64 {
        debug_assert!((granule as usize) < self.granules);
        // SAFETY: granules of objects are below heap_size / 16 (invariant 3), so the word is
        // inside the mapping, which is zero-initialized (a valid AtomicU64) and lives as long
        // as `self`.
        unsafe { &*self.versions.add(granule as usize) }
    }

    /// Where the image of the object at `granule` starts (8-aligned).
    #[inline(always)]
    pub(crate) fn image(&self, granule: u32) -> *mut u64 {
        self.images.wrapping_add(granule as usize * (GRANULE / 8))
    }

    /// Asks the processor to bring the version word and the first line of the image of the
    /// object at `granule` into this core's cache for writing (`prefetchw` on x86-64, where
    /// the processor has it; nothing elsewhere): a hint, which reads and writes nothing.
    /// The write barrier gives it at an attempt's first write of an object, so that the
    /// commit's compare-and-swap of the version word and its copy of the image find their
    /// lines owned, instead of waiting for each in turn.
    #[inline(always)]
    pub(crate) fn prefetch_for_commit(&self, granule: u32) {
        if self.prefetchw {
            prefetch_for_write(self.versions.wrapping_add(granule as usize).cast());
            prefetch_for_write(self.image(granule).cast_const().cast());
        }
    }

    /// The version words and the images, as side arrays of the heap to fault in for fresh
    /// ranges (`ChunkAllocator::set_prefault`).
    pub(crate) fn side_arrays(&self) -> Vec<crate::heap::SideArray> {
        vec![
            crate::heap::SideArray {
                base: self.versions as usize,
                per_granule: 8,
            },
            crate::heap::SideArray {
                base: self.images as usize,
                per_granule: GRANULE,
            },
        ]
    }

    /// The number of granules of the heap.
    pub(crate) fn granules(&self) -> usize {
        self.granules
    }

    /// The first word of the committed image at `granule` (its header, `Header`), read while
    /// a committer may be writing it ([`load_racy`]).
    ///
    /// # Safety
    /// `granule` is below [`CommittedHeap::granules`].
    #[inline(always)]
    pub(crate) unsafe fn head(&self, granule: u32) -> u64 {
        // SAFETY: the image starts inside the mapping (caller), 8-aligned.
        unsafe { load_racy(self.image(granule)) }
    }

    /// Copies the committed image of `granules` granules at `granule` to `dst` (an importer's
    /// copy, [`copy_racy`]: a committer may be writing it, the importer checks the version
    /// word around the copy).
    ///
    /// # Safety
    /// `granule + granules` is at most [`CommittedHeap::granules`]; `dst` is writable for
    /// `granules * 16` bytes, 8-aligned, with no Rust reference to those bytes alive.
    #[inline(always)]
    pub(crate) unsafe fn import_image(&self, granule: u32, dst: *mut u64, granules: usize) {
        // SAFETY: the source lies inside the mapping (caller); `dst` from the caller; the
        // two do not overlap (the mapping is the committed heap's own).
        unsafe { copy_racy(self.image(granule), dst, granules) }
    }

    /// Copies `granules` granules from `src` into the committed image at `granule` (a
    /// committer's copy, [`copy_racy`]: importers may be copying it).
    ///
    /// # Safety
    /// `granule + granules` is at most [`CommittedHeap::granules`]; `src` is readable for
    /// `granules * 16` bytes, 8-aligned; the caller holds the object's version word locked,
    /// or owns the object exclusively (nobody else writes that image).
    #[inline(always)]
    pub(crate) unsafe fn publish_image(&self, src: *const u64, granule: u32, granules: usize) {
        // SAFETY: the destination lies inside the mapping (caller); `src` from the caller;
        // the two do not overlap.
        unsafe { copy_racy(src, self.image(granule), granules) }
    }
}

// The copy below moves a granule as one 16-byte move (x86-64) or a pair of 8-byte words
// (aarch64).
const _: () = assert!(GRANULE == 16);
// An importer reads an image's length as the high half of its header word (`protocol.rs`,
// `import`), which is where a little-endian machine keeps `Header::granules`.
#[cfg(target_endian = "big")]
compile_error!(
    "stm-runtime reads object headers as little-endian words: big-endian targets are not supported"
);

/// Copies `granules` granules (16 bytes each) from `src` to `dst`, a granule per loop
/// iteration (one unaligned 16-byte move on x86-64, a pair of words on aarch64), with plain
/// loads and stores in order, as the hardware does them: a concurrent writer of `src` or
/// reader of `dst` is not a data race of the Rust abstract machine (the copy is an `asm!`
/// block), and padding bytes are copied as they are. Images are whole granules. A copy that
/// races with a writer may mix old and new bytes (at any size, not only whole words): its
/// reader checks the version word around it and throws such a copy away.
///
/// # Safety
/// `src` readable and `dst` writable for `granules * 16` bytes, both 8-aligned, not
/// overlapping, and no Rust reference to the bytes of `dst` alive.
#[inline(always)]
pub(crate) unsafe fn copy_racy(src: *const u64, dst: *mut u64, granules: usize) {
    if granules == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the loop reads `2 * granules` words from `src` and writes them to `dst`, both
    // valid for that many (caller); it touches no other memory and no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            "movups {t}, xmmword ptr [{src} + {i}]",
            "movups xmmword ptr [{dst} + {i}], {t}",
            "add {i}, 16",
            "cmp {i}, {end}",
            "jne 2b",
            src = in(reg) src,
            dst = in(reg) dst,
            i = inout(reg) 0usize => _,
            end = in(reg) granules * 16,
            t = out(xmm_reg) _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!(
            "2:",
            "ldp {t}, {u}, [{src}], #16",
            "stp {t}, {u}, [{dst}], #16",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) granules => _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack),
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!(
        "stm-runtime's committed heap copies images in assembly: x86-64 and aarch64 only"
    );
}

/// Loads one 8-byte word that a committer may be writing, as [`copy_racy`] copies (a plain
/// load in an `asm!` block): the importer's first look at an image's header.
///
/// # Safety
/// `src` readable for 8 bytes and 8-aligned.
#[inline(always)]
pub(crate) unsafe fn load_racy(src: *const u64) -> u64 {
    let value: u64;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: one load of the word at `src` (caller: readable); no other memory, no stack.
    unsafe {
        std::arch::asm!(
            "mov {v}, qword ptr [{src}]",
            src = in(reg) src,
            v = lateout(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        std::arch::asm!(
            "ldr {v}, [{src}]",
            src = in(reg) src,
            v = lateout(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    value
}

/// Copies `words` 8-byte words; small objects (one or two granules, the common case) are
/// copied inline instead of through a `memcpy` call. For memory no other thread touches.
///
/// # Safety
/// `src` readable and `dst` writable for `words * 8` bytes, not overlapping, both 8-aligned.
#[inline(always)]
pub(crate) unsafe fn copy_words(
    src: *const std::mem::MaybeUninit<u64>,
    dst: *mut std::mem::MaybeUninit<u64>,
    words: usize,
) {
    use std::mem::MaybeUninit;
    // SAFETY: forwarded from the caller; each branch copies exactly `words` words.
    unsafe {
        match words {
            2 => dst
                .cast::<[MaybeUninit<u64>; 2]>()
                .write(src.cast::<[MaybeUninit<u64>; 2]>().read()),
            4 => dst
                .cast::<[MaybeUninit<u64>; 4]>()
                .write(src.cast::<[MaybeUninit<u64>; 4]>().read()),
            _ => std::ptr::copy_nonoverlapping(src, dst, words),
        }
    }
}

/// Copies `granules` granules (16 bytes each, 1 to `MAX`) with 16-byte moves and no call,
/// for the small objects of the write barrier's fast path. The loop has a constant bound, so
/// the compiler unrolls it into a chain of moves, each followed by a test for the end: an
/// object of one granule costs one move and one test.
///
/// # Safety
/// As [`copy_words`] with `words = 2 * granules`, and `1 <= granules <= MAX`.
#[inline(always)]
pub(crate) unsafe fn copy_granules<const MAX: usize>(
    src: *const std::mem::MaybeUninit<u64>,
    dst: *mut std::mem::MaybeUninit<u64>,
    granules: usize,
) {
    use std::mem::MaybeUninit;
    debug_assert!((1..=MAX).contains(&granules));
    for i in 0..MAX {
        // SAFETY: forwarded from the caller: `i < granules`, so granule `i` lies within both
        // ranges (the loop ends after granule `granules - 1`).
        unsafe {
            dst.add(2 * i)
                .cast::<[MaybeUninit<u64>; 2]>()
                .write(src.add(2 * i).cast::<[MaybeUninit<u64>; 2]>().read());
        }
        if i + 1 == granules {
            break;
        }
    }
}

/// Whether this processor has `prefetchw` (CPUID 8000_0001h, ECX bit 8).
#[cfg(target_arch = "x86_64")]
fn has_prefetchw() -> bool {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: `cpuid` exists on every x86-64 processor and only reads identification
    // registers; leaf 8000_0001h is asked only if the processor says it has it.
    unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
    }
}

/// A hint that this core will soon write the cache line of `p`: `prefetchw`, which fetches
/// the line in the exclusive state without waiting for it. A prefetch never faults and
/// changes no memory, so any address will do. Only where the processor has it
/// (`CommittedHeap::prefetchw`).
#[inline(always)]
fn prefetch_for_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `prefetchw` is a hint: it does not fault (on any address), reads nothing
        // into registers and writes no memory; the caller checked that the processor has it.
        unsafe {
            std::arch::asm!(
                "prefetchw byte ptr [{p}]",
                p = in(reg) p,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_racy_copies_every_granule() {
        for n in [1usize, 2, 3, 8] {
            let src: Vec<u64> = (0..2 * n as u64).map(|i| i * 0x0101_0101 + 7).collect();
            let mut dst = vec![0u64; 2 * n + 1];
            // SAFETY: both buffers hold at least `2 * n` words; they do not overlap.
            unsafe { copy_racy(src.as_ptr(), dst.as_mut_ptr(), n) };
            assert_eq!(&dst[..2 * n], &src[..]);
            assert_eq!(dst[2 * n], 0, "nothing past the end");
        }
        let word = 0x1234_5678_9abc_def0u64;
        // SAFETY: one readable, aligned word.
        let loaded = unsafe { load_racy(&word) };
        assert_eq!(loaded, word);
    }

    #[test]
    fn version_words_split_into_version_and_holder() {
        use crate::protocol::{holder, version, ONE};
        let w = (5 * ONE) | 3;
        assert_eq!((version(w), holder(w)), (5 * ONE, 3));
        let heap = CommittedHeap::new(1 << 20).unwrap();
        assert_eq!(heap.granules(), (1 << 20) / GRANULE);
        assert_eq!(heap.word(300).load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
