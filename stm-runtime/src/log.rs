//! The commit log: a singly linked list of committed write sets, oldest first.
//!
//! Each [`Entry`] holds, for every object its transaction wrote or allocated, the object's
//! whole new image (header included). A segment remembers the last entry it applied; to catch
//! up it walks the newer entries and copies their images into its own mapping ("import").
//! Entries are immutable once linked, except for their `next` pointer, which is written once
//! (by the compare-and-swap that appends the following entry).
//!
//! The protocol that appends and applies entries is in `commit.rs`; this file only holds the
//! data structure and its memory management (trimming entries every segment has passed).

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::heap::GRANULE;
use crate::report::WriteSite;

/// Stands in the `next` field of the newest entry while an inevitable transaction runs:
/// nobody else can append until the inevitable transaction replaces it with its own entry
/// (or with null if it wrote nothing). Never dereferenced.
pub(crate) const INEVITABLE: *mut Entry = ptr::dangling_mut::<Entry>();

/// One committed transaction's write set.
pub(crate) struct Entry {
    /// The following entry, null while this is the newest, or [`INEVITABLE`].
    pub next: AtomicPtr<Entry>,
    /// Position in the log: the initial entry is 0, each commit adds one.
    pub rev: u64,
    /// The segment that committed it (for conflict reports).
    pub segment: u32,
    /// Records: one word `granule | (granules << 32)`, then `2 * granules` words of image.
    /// `MaybeUninit` because images contain padding bytes, which are copied but never read.
    pub data: Vec<MaybeUninit<u64>>,
    /// Where each record's object was written, when the committer was reporting conflicts
    /// (parallel to the records; empty otherwise).
    pub sites: Vec<WriteSite>,
}

/// One record of an entry: an object and its committed image.
pub(crate) struct Record<'a> {
    pub granule: u32,
    pub image: &'a [MaybeUninit<u64>],
}

impl Entry {
    /// An unlinked entry with no records.
    pub(crate) fn empty() -> Entry {
        Entry {
            next: AtomicPtr::new(ptr::null_mut()),
            rev: 0,
            segment: u32::MAX,
            data: Vec::new(),
            sites: Vec::new(),
        }
    }

    /// The initial entry every segment starts from.
    pub(crate) fn initial() -> *mut Entry {
        Box::into_raw(Box::new(Entry::empty()))
    }

    /// Appends the image of the object at `granule` (`granules` long) read from `src`.
    ///
    /// # Safety
    /// `src` must be valid for reads of `granules * 16` bytes.
    #[inline]
    pub(crate) unsafe fn push_record(
        data: &mut Vec<MaybeUninit<u64>>,
        granule: u32,
        granules: u32,
        src: *const u8,
    ) {
        let words = granules as usize * (GRANULE / 8);
        data.reserve(words + 1);
        let len = data.len();
        // SAFETY: `reserve` made room for `words + 1` more elements after `len`; the caller
        // guarantees `src` is readable for `words * 8` bytes; a Vec buffer never overlaps a
        // heap mapping. MaybeUninit<u64> may hold any bytes, padding included.
        unsafe {
            let at = data.as_mut_ptr().add(len);
            at.write(MaybeUninit::new(
                u64::from(granule) | (u64::from(granules) << 32),
            ));
            copy_words(src.cast(), at.add(1), words);
            data.set_len(len + 1 + words);
        }
    }

    /// The records of this entry, in the order they were pushed.
    pub(crate) fn records(&self) -> Records<'_> {
        Records { data: &self.data }
    }
}

/// Iterator over an entry's records.
pub(crate) struct Records<'a> {
    data: &'a [MaybeUninit<u64>],
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let (head, rest) = self.data.split_first()?;
        // SAFETY: every record starts with a header word written by `push_record` with
        // `MaybeUninit::new`, so it is initialized.
        let head = unsafe { head.assume_init() };
        let granule = head as u32;
        let granules = (head >> 32) as u32;
        let (image, rest) = rest.split_at(granules as usize * (GRANULE / 8));
        self.data = rest;
        Some(Record { granule, image })
    }
}

/// Unlinks the entries from `*head` up to (not including) the first one whose revision is
/// at least `keep_from`, hands each to `recycle`, and moves `*head` there.
///
/// # Safety
/// Every entry before revision `keep_from` must be unreachable by every segment (each
/// segment's last applied entry has revision `>= keep_from`, invariant 4), and `*head` must be
/// the oldest entry still allocated, owned by the caller.
pub(crate) unsafe fn free_before(
    head: &mut *mut Entry,
    keep_from: u64,
    mut recycle: impl FnMut(Box<Entry>),
) {
    loop {
        // SAFETY: `*head` is allocated (caller) and only freed here (invariant 17).
        let entry = unsafe { &**head };
        if entry.rev >= keep_from {
            return;
        }
        let next = entry.next.load(Ordering::Acquire);
        // An entry older than some segment's last applied entry always has a real successor.
        debug_assert!(!next.is_null() && next != INEVITABLE);
        // SAFETY: the entry was made by Box::into_raw and no segment can reach it any more
        // (caller, invariant 4); we advance the head before anyone could look at it again.
        recycle(unsafe { Box::from_raw(*head) });
        *head = next;
    }
}

/// Copies `words` 8-byte words; small objects (one or two granules, the common case) are
/// copied inline instead of through a `memcpy` call.
///
/// # Safety
/// `src` readable and `dst` writable for `words * 8` bytes, not overlapping, both 8-aligned.
#[inline(always)]
pub(crate) unsafe fn copy_words(
    src: *const MaybeUninit<u64>,
    dst: *mut MaybeUninit<u64>,
    words: usize,
) {
    // SAFETY: forwarded from the caller; each branch copies exactly `words` words.
    unsafe {
        match words {
            2 => dst
                .cast::<[MaybeUninit<u64>; 2]>()
                .write(src.cast::<[MaybeUninit<u64>; 2]>().read()),
            4 => dst
                .cast::<[MaybeUninit<u64>; 4]>()
                .write(src.cast::<[MaybeUninit<u64>; 4]>().read()),
            _ => ptr::copy_nonoverlapping(src, dst, words),
        }
    }
}

/// Copies `granules` granules (16 bytes each) with a loop of 16-byte moves: no call, for
/// the small objects of the write barrier's fast path.
///
/// # Safety
/// As [`copy_words`] with `words = 2 * granules`.
#[inline(always)]
pub(crate) unsafe fn copy_granules(
    src: *const MaybeUninit<u64>,
    dst: *mut MaybeUninit<u64>,
    granules: usize,
) {
    for i in 0..granules {
        // SAFETY: forwarded from the caller: granule `i` lies within both ranges.
        unsafe {
            dst.add(2 * i)
                .cast::<[MaybeUninit<u64>; 2]>()
                .write(src.add(2 * i).cast::<[MaybeUninit<u64>; 2]>().read());
        }
    }
}

/// Frees every entry from `head` to the end of the list.
///
/// # Safety
/// No segment or thread may reach any of these entries any more, and the caller owns them.
pub(crate) unsafe fn free_all(mut head: *mut Entry) {
    while !head.is_null() && head != INEVITABLE {
        // SAFETY: `head` is a live entry made by Box::into_raw, owned by the caller.
        let next = unsafe { (*head).next.load(Ordering::Acquire) };
        // SAFETY: as above; nothing reaches it any more.
        drop(unsafe { Box::from_raw(head) });
        head = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let a = [7u8; 32];
        let b = [9u8; 48];
        let mut data = Vec::new();
        // SAFETY: the sources are arrays of exactly the sizes given.
        unsafe {
            Entry::push_record(&mut data, 300, 2, a.as_ptr());
            Entry::push_record(&mut data, 500, 3, b.as_ptr());
        }
        let entry = Entry {
            next: AtomicPtr::new(ptr::null_mut()),
            rev: 1,
            segment: 0,
            data,
            sites: Vec::new(),
        };
        let recs: Vec<_> = entry.records().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].granule, recs[0].image.len()), (300, 4));
        assert_eq!((recs[1].granule, recs[1].image.len()), (500, 6));
        // SAFETY: these words were copied from initialized arrays.
        let word = unsafe { recs[1].image[5].assume_init() };
        assert_eq!(word, u64::from_ne_bytes([9; 8]));
    }

    #[test]
    fn free_before_stops_at_the_kept_revision() {
        let first = Entry::initial();
        let mut last = first;
        for rev in 1..=5 {
            let e = Box::into_raw(Box::new(Entry {
                next: AtomicPtr::new(ptr::null_mut()),
                rev,
                segment: 0,
                data: Vec::new(),
                sites: Vec::new(),
            }));
            // SAFETY: `last` is a live entry made above.
            unsafe { (*last).next.store(e, Ordering::Release) };
            last = e;
        }
        let mut head = first;
        // SAFETY: no segment exists (invariant 4 holds trivially); entries 0..3 are ours to free.
        unsafe { free_before(&mut head, 3, drop) };
        // SAFETY: head is live.
        assert_eq!(unsafe { (*head).rev }, 3);
        // SAFETY: free the rest.
        unsafe { free_before(&mut head, 5, drop) };
        // SAFETY: the last one is still allocated.
        unsafe { drop(Box::from_raw(head)) };
    }
}
