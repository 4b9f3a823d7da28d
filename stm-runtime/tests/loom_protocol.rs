//! Model checking of the runtime's commit protocol with loom, on the protocol's own code.
//!
//! `src/protocol.rs` (imports, the read set's checks and the commit-count filter, commits
//! that lock, check, publish and unlock, inevitability) names nothing but `super::facade`.
//! The runtime compiles it against `src/facade.rs` (std's atomics, the mapped committed heap);
//! this test compiles the same file against the facade below, as crossbeam-epoch swaps in
//! loom's primitives: loom's atomics, a committed heap whose version words and image words
//! are loom atomics (an image is copied word by word with Relaxed loads and stores: weaker in
//! ordering than the runtime's plain copies on x86-64, though never torn inside a word, where
//! the runtime's 16-byte moves may tear at any size; no value of a possibly torn copy is used
//! before the seqlock check but the header's length, the same in every version of a live
//! object and bounds-checked), segments whose images and copy versions are
//! plain arrays owned by their thread, and no `membarrier` (loom cannot model it: the
//! protocol then announces commits with a SeqCst fence, as the runtime does without it).
//!
//! What stands in for the rest of the runtime is the read and write barriers' bookkeeping
//! (`Tx` below, as `commit.rs` does it: a first read compares the version word with the
//! segment's copy and calls `protocol::catch_up` when they differ, then lists the object; a
//! first write saves a before-image and clears the write-barrier flag), and the attempt loop.
//!
//! loom runs every interleaving (up to a preemption bound) and checks the memory orderings,
//! but for the SeqCst of the commit's locks and read-check loads, which it treats as AcqRel
//! (see `locks_before_checks` below: a weakening of those two would go unseen here).
//! What it checks: concurrent increments are never lost (serializability), no attempt ever
//! sees a torn snapshot (an invariant across objects holds in every attempt, including those
//! that abort, with and without the commit-count filter), an object allocated by a commit is
//! published before the object that points to it, and an inevitable transaction never
//! aborts and excludes other commits until it ends.

use loom::sync::Arc;

/// What `protocol.rs` is written against, here: loom's primitives and plain memory.
mod facade {
    use std::cell::UnsafeCell;

    use super::footprint::Footprint;

    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
    pub use loom::thread::yield_now;
    pub use std::sync::atomic::compiler_fence;

    /// A spin loop's pause: under loom, a yield (so that a spinning thread lets the one it
    /// waits for run).
    pub struct Backoff;

    impl Backoff {
        pub fn new() -> Backoff {
            Backoff
        }

        pub fn snooze(&self) {
            yield_now();
        }
    }

    /// loom treats SeqCst loads and read-modify-writes as AcqRel (its documented limit), so
    /// the total order of the commit's SeqCst locks and checks that Dekker's pattern relies
    /// on is stated with the SeqCst fence it does model. (The runtime needs nothing here.)
    pub fn locks_before_checks() {
        fence(Ordering::SeqCst);
    }

    /// loom cannot model `membarrier`.
    pub fn heavy_fence_available() -> bool {
        false
    }

    pub fn heavy_fence() -> bool {
        unreachable!("heavy_fence_available is false under loom")
    }

    pub const FLAG_WRITE_BARRIER: u32 = 0x1;
    pub const FLAG_NEW: u32 = 0x2;
    pub const FLAG_GUARDED: u32 = 0x4;

    /// An object's first word, as in the runtime: the granule count in the upper half.
    #[repr(C)]
    pub struct Header {
        pub flags: u32,
        pub granules: u32,
    }

    /// Words per granule.
    pub const WORDS: usize = 2;

    /// The committed heap: a version word and an image (two words) per granule.
    pub struct CommittedHeap {
        words: Vec<AtomicU64>,
        images: Vec<AtomicU64>,
    }

    impl CommittedHeap {
        pub fn new(images: &[u64], version: u64) -> CommittedHeap {
            CommittedHeap {
                words: (0..images.len() / WORDS)
                    .map(|_| AtomicU64::new(version))
                    .collect(),
                images: images.iter().map(|&w| AtomicU64::new(w)).collect(),
            }
        }

        pub fn word(&self, granule: u32) -> &AtomicU64 {
            &self.words[granule as usize]
        }

        pub fn granules(&self) -> usize {
            self.words.len()
        }

        /// # Safety
        /// None here (the runtime's reads raw memory).
        pub unsafe fn head(&self, granule: u32) -> u64 {
            self.images[granule as usize * WORDS].load(Ordering::Relaxed)
        }

        /// # Safety
        /// `dst` writable for `granules * WORDS` words.
        pub unsafe fn import_image(&self, granule: u32, dst: *mut u64, granules: usize) {
            let at = granule as usize * WORDS;
            for i in 0..granules * WORDS {
                let w = self.images[at + i].load(Ordering::Relaxed);
                // SAFETY: in bounds (caller).
                unsafe { dst.add(i).write(w) };
            }
        }

        /// # Safety
        /// `src` readable for `granules * WORDS` words.
        pub unsafe fn publish_image(&self, src: *const u64, granule: u32, granules: usize) {
            let at = granule as usize * WORDS;
            for i in 0..granules * WORDS {
                // SAFETY: in bounds (caller).
                let w = unsafe { src.add(i).read() };
                self.images[at + i].store(w, Ordering::Relaxed);
            }
        }
    }

    /// What other segments see of a segment.
    pub struct Segment {
        pub index: u32,
        pub commits: AtomicU64,
        pub committing: AtomicBool,
    }

    pub struct Config {
        pub serial_order: bool,
    }

    /// The runtime's `Monitor`, as a spin loop that yields.
    pub struct Monitor;

    impl Monitor {
        pub fn notify(&self) {}

        pub fn wait_until(&self, mut ready: impl FnMut() -> bool) {
            while !ready() {
                yield_now();
            }
        }
    }

    pub struct Shared {
        pub config: Config,
        pub segments: Vec<Segment>,
        pub inevitable: AtomicU64,
        pub order: AtomicU64,
        pub inevitable_done: Monitor,
        pub heap: CommittedHeap,
    }

    pub fn wait_for_inevitable(shared: &Shared, _local: &SegmentLocal) {
        shared
            .inevitable_done
            .wait_until(|| shared.inevitable.load(Ordering::SeqCst) == 0);
    }

    /// A segment's state, as far as the protocol sees it: its images and copy versions
    /// (plain memory, touched by its own thread only) and the running attempt's
    /// [`Footprint`], the runtime's own type (`src/footprint.rs`, compiled here too).
    pub struct SegmentLocal {
        pub fp: Footprint,
        memory: Box<[UnsafeCell<u64>]>,
        copies: Box<[UnsafeCell<u64>]>,
    }

    impl SegmentLocal {
        pub fn new(index: u32, images: &[u64], version: u64) -> SegmentLocal {
            SegmentLocal {
                fp: Footprint::new(index),
                memory: images.iter().map(|&w| UnsafeCell::new(w)).collect(),
                copies: (0..images.len() / WORDS)
                    .map(|_| UnsafeCell::new(version))
                    .collect(),
            }
        }

        pub fn header(&self, granule: u32) -> *mut Header {
            self.memory[granule as usize * WORDS].get().cast()
        }

        pub fn copy(&self, granule: u32) -> *mut u64 {
            self.copies[granule as usize].get()
        }

        /// The value word of the object at `granule` (its second word).
        pub fn value(&self, granule: u32) -> *mut u64 {
            self.memory[granule as usize * WORDS + 1].get()
        }
    }
}

#[path = "../src/footprint.rs"]
mod footprint;
#[path = "../src/protocol.rs"]
mod protocol;

use facade::{
    CommittedHeap, Config, Header, Monitor, Segment, SegmentLocal, Shared, FLAG_NEW,
    FLAG_WRITE_BARRIER, WORDS,
};
use loom::sync::atomic::{AtomicBool, AtomicU64};
use protocol::{Lost, ONE};

/// The images of `values.len()` one-granule objects, plus `spare` granules never used yet.
fn images(values: &[u64], spare: usize) -> Vec<u64> {
    let mut words = Vec::new();
    for &v in values {
        let header = (1u64 << 32) | FLAG_WRITE_BARRIER as u64;
        words.extend([header, v]);
    }
    words.resize(words.len() + spare * WORDS, 0);
    words
}

/// Objects `values` (granules 0, 1, ...) at version `ONE`, `spare` unused granules after them
/// (version word 0, as in a fresh heap), and `segments` segments.
fn shared(segments: u32, values: &[u64], spare: usize) -> Arc<Shared> {
    let image = images(values, spare);
    let heap = CommittedHeap::new(&image, ONE);
    for g in values.len()..values.len() + spare {
        heap.word(g as u32)
            .store(0, loom::sync::atomic::Ordering::Relaxed);
    }
    Arc::new(Shared {
        config: Config {
            serial_order: false,
        },
        segments: (0..segments)
            .map(|index| Segment {
                index,
                commits: AtomicU64::new(0),
                committing: AtomicBool::new(false),
            })
            .collect(),
        inevitable: AtomicU64::new(0),
        order: AtomicU64::new(0),
        inevitable_done: Monitor,
        heap,
    })
}

/// A thread's segment and the attempt running in it: the barriers' bookkeeping, as
/// `commit.rs` does it, around the protocol's calls.
struct Tx {
    sh: Arc<Shared>,
    index: u32,
    local: SegmentLocal,
    /// Objects this attempt has read (the runtime's read markers).
    marked: Vec<bool>,
    /// Before-images of the objects in `modified`, in order (header word, value word).
    backups: Vec<[u64; 2]>,
}

impl Tx {
    fn new(sh: &Arc<Shared>, index: u32, values: &[u64], spare: usize) -> Tx {
        let image = images(values, spare);
        let mut local = SegmentLocal::new(index, &image, ONE);
        for g in values.len()..values.len() + spare {
            // SAFETY: our own segment's copy versions.
            unsafe { *local.copy(g as u32) = 0 };
        }
        local.fp.seen = None;
        Tx {
            sh: sh.clone(),
            index,
            local,
            marked: vec![false; image.len() / WORDS],
            backups: Vec::new(),
        }
    }

    fn begin(&mut self) {
        self.local.fp.reads.clear();
        self.local.fp.seen = None;
        self.marked.iter_mut().for_each(|m| *m = false);
    }

    /// The read barrier and the read of the object at `g`.
    fn read(&mut self, g: u32) -> Result<u64, Lost> {
        if !self.marked[g as usize] {
            let heap = &self.sh.heap;
            // SAFETY: our own segment (the runtime's invariant 1), a live object.
            let have = unsafe { *self.local.copy(g) };
            if heap.word(g).load(loom::sync::atomic::Ordering::Acquire) != have {
                // SAFETY: as above; the attempt has not read this object yet.
                unsafe { protocol::catch_up(&self.sh, heap, &mut self.local, g)? };
            }
            self.local.fp.reads.push(g);
            self.marked[g as usize] = true;
        }
        // SAFETY: our own segment.
        Ok(unsafe { *self.local.value(g) })
    }

    /// The write barrier (a first write reads first and saves a before-image) and the write.
    fn write(&mut self, g: u32, v: u64) -> Result<(), Lost> {
        self.read(g)?;
        let hdr: *mut Header = self.local.header(g);
        // SAFETY: our own segment; header and value are the object's two words.
        unsafe {
            if (*hdr).flags & FLAG_WRITE_BARRIER != 0 {
                self.backups
                    .push([*hdr.cast::<u64>(), *self.local.value(g)]);
                (*hdr).flags &= !FLAG_WRITE_BARRIER;
                self.local.fp.modified.push(g);
            }
            *self.local.value(g) = v;
        }
        Ok(())
    }

    /// Allocates a one-granule object at the spare granule `g` with value `v`.
    fn alloc(&mut self, g: u32, v: u64) {
        let hdr = self.local.header(g);
        // SAFETY: our own segment; a granule no object uses.
        unsafe {
            hdr.write(Header {
                flags: FLAG_NEW,
                granules: 1,
            });
            *self.local.value(g) = v;
        }
        self.local.fp.allocated.push(g);
        self.marked[g as usize] = true;
    }

    fn become_inevitable(&mut self) -> Result<(), Lost> {
        let seg = &self.sh.segments[self.index as usize];
        protocol::become_inevitable(&self.sh, &self.sh.heap, seg, &mut self.local)
    }

    fn commit(&mut self) -> Result<(), Lost> {
        let sh = self.sh.clone();
        if self.local.fp.modified.is_empty() && self.local.fp.allocated.is_empty() {
            if self.local.fp.inevitable {
                protocol::end_inevitable(&sh, &mut self.local);
            }
            return Ok(());
        }
        let seg = &sh.segments[self.index as usize];
        protocol::commit(&sh, &sh.heap, seg, &mut self.local)?;
        self.local.fp.modified.clear();
        self.local.fp.allocated.clear();
        self.backups.clear();
        Ok(())
    }

    fn rollback(&mut self) {
        for (&g, backup) in self.local.fp.modified.iter().zip(&self.backups).rev() {
            // SAFETY: our own segment.
            unsafe {
                *self.local.header(g).cast::<u64>() = backup[0];
                *self.local.value(g) = backup[1];
            }
        }
        self.local.fp.modified.clear();
        self.local.fp.allocated.clear();
        self.backups.clear();
        if self.local.fp.inevitable {
            protocol::end_inevitable(&self.sh.clone(), &mut self.local);
        }
    }

    /// Runs `body` until it commits; returns what it returned and the attempts it took.
    fn atomically<R>(&mut self, mut body: impl FnMut(&mut Tx) -> Result<R, Lost>) -> (R, usize) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.begin();
            if let Ok(r) = body(self) {
                if self.commit().is_ok() {
                    return (r, attempts);
                }
            }
            self.rollback();
        }
    }
}

/// Runs `f` under loom with at most `preemptions` preemptions per execution (more with
/// `LOOM_MAX_PREEMPTIONS`).
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.check(f);
}

#[test]
fn concurrent_increments_are_never_lost() {
    model(3, || {
        let sh = shared(2, &[0], 0);
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let sh = sh.clone();
                loom::thread::spawn(move || {
                    let mut tx = Tx::new(&sh, t, &[0], 0);
                    tx.atomically(|tx| {
                        let v = tx.read(0)?;
                        tx.write(0, v + 1)
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut check = Tx::new(&sh, 0, &[0], 0);
        check.begin();
        assert_eq!(check.read(0), Ok(2));
    });
}

/// The writer moves 1 from `from` to `to`, twice; the reader reads every object in order
/// (letting the writer run after it has read object `yield_after`) and checks the sum in
/// every attempt, committed or not.
fn no_torn_snapshot(
    values: &'static [u64],
    from: u32,
    to: u32,
    yield_after: u32,
    preemptions: usize,
) {
    let sum: u64 = values.iter().sum();
    model(preemptions, move || {
        let sh = shared(2, values, 0);
        let s2 = sh.clone();
        let writer = loom::thread::spawn(move || {
            let mut tx = Tx::new(&s2, 0, values, 0);
            for _ in 0..2 {
                tx.atomically(|tx| {
                    let (x, y) = (tx.read(from)?, tx.read(to)?);
                    tx.write(from, x - 1)?;
                    tx.write(to, y + 1)
                });
            }
        });
        let mut tx = Tx::new(&sh, 1, values, 0);
        tx.atomically(|tx| {
            let mut seen = 0;
            for g in 0..values.len() as u32 {
                seen += tx.read(g)?;
                if g == yield_after {
                    // Let the writer run here: loom does not schedule a thread that yielded
                    // while another can run, and its bounded search may not get here alone.
                    loom::thread::yield_now();
                }
            }
            assert_eq!(seen, sum, "torn snapshot");
            Ok(())
        });
        writer.join().unwrap();
    });
}

#[test]
fn no_attempt_sees_a_torn_snapshot() {
    no_torn_snapshot(&[10, 0], 0, 1, 0, 2);
}

/// Five objects: the reader has read three (more than there are segments) when it imports
/// the fourth and the fifth, so `revalidate` consults the commit counts and may skip the
/// check of the fifth.
#[test]
fn no_attempt_sees_a_torn_snapshot_with_the_count_filter() {
    no_torn_snapshot(&[1, 1, 1, 4, 3], 3, 4, 2, 2);
}

/// Write skew: each transaction reads both objects and, if both are 0, sets its own to 1.
/// Serializable executions end with exactly one of them set; only the commit's check of
/// the read set (each writes what the other only reads) rules out both.
#[test]
fn write_skew_is_ruled_out_by_the_read_check() {
    model(3, || {
        let sh = shared(2, &[0, 0], 0);
        let handles: Vec<_> = (0..2u32)
            .map(|t| {
                let sh = sh.clone();
                loom::thread::spawn(move || {
                    let mut tx = Tx::new(&sh, t, &[0, 0], 0);
                    tx.atomically(|tx| {
                        if tx.read(0)? + tx.read(1)? == 0 {
                            tx.write(t, 1)?;
                        }
                        Ok(())
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut check = Tx::new(&sh, 0, &[0, 0], 0);
        check.begin();
        assert_eq!(check.read(0).unwrap() + check.read(1).unwrap(), 1);
    });
}

/// A commit allocates an object and stores its granule into object 0; a reader that finds
/// the granule there must find the new object's image too.
#[test]
fn a_new_object_is_published_before_what_points_to_it() {
    model(3, || {
        let sh = shared(2, &[0], 1);
        let s2 = sh.clone();
        let writer = loom::thread::spawn(move || {
            let mut tx = Tx::new(&s2, 0, &[0], 1);
            tx.atomically(|tx| {
                tx.alloc(1, 42);
                tx.write(0, 1)
            });
        });
        let mut tx = Tx::new(&sh, 1, &[0], 1);
        loom::thread::yield_now();
        let (got, _) = tx.atomically(|tx| match tx.read(0)? {
            0 => Ok(None),
            g => tx.read(g as u32).map(Some),
        });
        assert!(matches!(got, None | Some(42)), "read {got:?}");
        writer.join().unwrap();
    });
}

#[test]
fn an_inevitable_transaction_never_aborts_and_excludes_commits() {
    model(3, || {
        let sh = shared(2, &[0], 0);
        let s2 = sh.clone();
        let other = loom::thread::spawn(move || {
            let mut tx = Tx::new(&s2, 1, &[0], 0);
            tx.atomically(|tx| {
                let v = tx.read(0)?;
                tx.write(0, v + 10)
            });
        });
        let mut tx = Tx::new(&sh, 0, &[0], 0);
        let (_, attempts) = tx.atomically(|tx| {
            tx.become_inevitable()?;
            // From here nobody can commit: our read stays valid.
            let v = tx.read(0)?;
            tx.write(0, v + 1)
        });
        // Becoming inevitable can fail only by conflict on what was read before it (nothing
        // here): one attempt.
        assert_eq!(attempts, 1);
        other.join().unwrap();
        let mut check = Tx::new(&sh, 0, &[0], 0);
        check.begin();
        assert_eq!(check.read(0), Ok(11));
    });
}
