//! Model checking of the commit protocol (`src/commit.rs`) with loom, on a small abstraction
//! of it: two objects in a committed heap (an image word and a version word each), segments
//! that are private caches of it (their own image and the version it is), the read set,
//! imports that copy an image between two looks at its version word (seqlock-style), the
//! check of the read set after an import (with or without the commit-count filter of
//! `revalidate`), commits that lock the written objects' version words by compare-and-swap,
//! check the read set, publish and unlock, and inevitability (the `inevitable` flag and the
//! committers' `committing` announcements, in the form the runtime uses when `membarrier` is
//! not available, SeqCst fences on both sides: loom cannot model `membarrier`).
//!
//! loom runs every interleaving (up to a preemption bound) and checks the memory orderings.
//! What it checks: concurrent increments are never lost (serializability), no attempt ever
//! sees a torn snapshot (an invariant across both objects holds in every attempt, including
//! those that abort), and an inevitable transaction never aborts and excludes other commits
//! until it ends.
//!
//! It is a model, not the runtime's code: the runtime's atomics live next to raw memory
//! (mappings, assembly copies) that loom cannot run.

use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;

/// Objects in the model.
const OBJECTS: usize = 2;
/// Low bits of a version word: the holder (segment index + 1), 0 when unlocked.
const HOLDER: u64 = 0xff;
/// One commit, in version-word units.
const ONE: u64 = 0x100;

/// The committed heap and the runtime's shared flags.
struct Shared {
    words: [AtomicU64; OBJECTS],
    images: [AtomicU64; OBJECTS],
    /// Per segment: twice its commits, plus one while publishing.
    commits: Vec<AtomicU64>,
    committing: Vec<AtomicBool>,
    inevitable: AtomicU64,
}

impl Shared {
    fn new(segments: usize, init: [u64; OBJECTS]) -> Shared {
        Shared {
            words: std::array::from_fn(|_| AtomicU64::new(ONE)),
            images: init.map(AtomicU64::new),
            commits: (0..segments).map(|_| AtomicU64::new(0)).collect(),
            committing: (0..segments).map(|_| AtomicBool::new(false)).collect(),
            inevitable: AtomicU64::new(0),
        }
    }

    fn settled_count(&self) -> Option<u64> {
        let mut sum = 0;
        for c in &self.commits {
            let c = c.load(Ordering::Acquire);
            if c & 1 != 0 {
                return None;
            }
            sum += c;
        }
        Some(sum)
    }
}

struct Conflict;

/// A segment and the attempt running in it.
struct Segment {
    index: usize,
    holder: u64,
    /// The segment's image of each object and the version word it is.
    image: [u64; OBJECTS],
    copy: [u64; OBJECTS],
    reads: Vec<usize>,
    written: [Option<u64>; OBJECTS],
    seen: Option<u64>,
    /// Use the commit-count filter after imports (the runtime does for read sets larger
    /// than the number of segments).
    filter: bool,
    inevitable: bool,
}

impl Segment {
    fn new(index: usize, init: [u64; OBJECTS], filter: bool) -> Segment {
        Segment {
            index,
            holder: index as u64 + 1,
            image: init,
            copy: [ONE; OBJECTS],
            reads: Vec::new(),
            written: [None; OBJECTS],
            seen: None,
            filter,
            inevitable: false,
        }
    }

    fn begin(&mut self) {
        self.reads.clear();
        self.written = [None; OBJECTS];
        self.seen = None;
    }

    /// The read barrier and the read.
    fn read(&mut self, sh: &Shared, o: usize) -> Result<u64, Conflict> {
        if let Some(v) = self.written[o] {
            return Ok(v);
        }
        if !self.reads.contains(&o) {
            loop {
                let now = sh.words[o].load(Ordering::Acquire);
                if now == self.copy[o] {
                    break;
                }
                if now & HOLDER != 0 {
                    loom::thread::yield_now();
                    continue;
                }
                self.copy[o] = self.import(sh, o);
                self.revalidate(sh, o)?;
                break;
            }
            self.reads.push(o);
        }
        Ok(self.image[o])
    }

    fn import(&mut self, sh: &Shared, o: usize) -> u64 {
        loop {
            let before = sh.words[o].load(Ordering::Acquire);
            if before & HOLDER != 0 {
                loom::thread::yield_now();
                continue;
            }
            let v = sh.images[o].load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if sh.words[o].load(Ordering::Relaxed) == before {
                self.image[o] = v;
                return before;
            }
            loom::thread::yield_now();
        }
    }

    /// After importing `imported`: the counts (read after the import), then, unless they are
    /// the ones of the last check, a check of every earlier read and of `imported` itself.
    fn revalidate(&mut self, sh: &Shared, imported: usize) -> Result<(), Conflict> {
        let count = if self.filter {
            sh.settled_count()
        } else {
            None
        };
        if count.is_some() && count == self.seen {
            return Ok(());
        }
        self.check(sh, self.reads.iter().copied().chain([imported]))?;
        self.seen = count;
        Ok(())
    }

    fn reads_current(&self, sh: &Shared) -> Result<(), Conflict> {
        self.check(sh, self.reads.iter().copied())
    }

    fn check(&self, sh: &Shared, objects: impl Iterator<Item = usize>) -> Result<(), Conflict> {
        for o in objects {
            loop {
                let now = sh.words[o].load(Ordering::Acquire);
                if now & HOLDER != 0 && now & HOLDER != self.holder {
                    loom::thread::yield_now();
                    continue;
                }
                if now & !HOLDER != self.copy[o] {
                    return Err(Conflict);
                }
                break;
            }
        }
        Ok(())
    }

    /// The write barrier: a write reads first.
    fn write(&mut self, sh: &Shared, o: usize, v: u64) -> Result<(), Conflict> {
        self.read(sh, o)?;
        self.written[o] = Some(v);
        Ok(())
    }

    fn become_inevitable(&mut self, sh: &Shared) -> Result<(), Conflict> {
        while sh
            .inevitable
            .compare_exchange(0, self.holder, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            loom::thread::yield_now();
        }
        fence(Ordering::SeqCst);
        for (i, c) in sh.committing.iter().enumerate() {
            if i != self.index {
                while c.load(Ordering::SeqCst) {
                    loom::thread::yield_now();
                }
            }
        }
        if self.reads_current(sh).is_err() {
            sh.inevitable.store(0, Ordering::SeqCst);
            return Err(Conflict);
        }
        self.inevitable = true;
        Ok(())
    }

    fn end_inevitable(&mut self, sh: &Shared) {
        if self.inevitable {
            sh.inevitable.store(0, Ordering::SeqCst);
            self.inevitable = false;
        }
    }

    fn commit(&mut self, sh: &Shared) -> Result<(), Conflict> {
        let writes: Vec<usize> = (0..OBJECTS)
            .filter(|&o| self.written[o].is_some())
            .collect();
        if writes.is_empty() {
            self.end_inevitable(sh);
            return Ok(());
        }
        loop {
            sh.committing[self.index].store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.inevitable || sh.inevitable.load(Ordering::Relaxed) == 0 {
                break;
            }
            sh.committing[self.index].store(false, Ordering::Release);
            while sh.inevitable.load(Ordering::SeqCst) != 0 {
                loom::thread::yield_now();
            }
        }
        let unlock = |upto: usize, me: &Segment| {
            for &o in &writes[..upto] {
                sh.words[o].store(me.copy[o], Ordering::Release);
            }
        };
        for (i, &o) in writes.iter().enumerate() {
            let have = self.copy[o];
            if sh.words[o]
                .compare_exchange(
                    have,
                    have | self.holder,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                assert!(!self.inevitable, "an inevitable transaction lost a lock");
                unlock(i, self);
                sh.committing[self.index].store(false, Ordering::Release);
                return Err(Conflict);
            }
        }
        if !self.inevitable {
            for &o in &self.reads {
                let now = sh.words[o].load(Ordering::Acquire);
                if now & !HOLDER != self.copy[o]
                    || (now & HOLDER != 0 && now & HOLDER != self.holder)
                {
                    unlock(writes.len(), self);
                    sh.committing[self.index].store(false, Ordering::Release);
                    return Err(Conflict);
                }
            }
        }
        let c = &sh.commits[self.index];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for &o in &writes {
            let v = self.written[o].unwrap();
            sh.images[o].store(v, Ordering::Relaxed);
            let next = self.copy[o] + ONE;
            sh.words[o].store(next, Ordering::Release);
            self.copy[o] = next;
            self.image[o] = v;
        }
        sh.committing[self.index].store(false, Ordering::Release);
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
        self.end_inevitable(sh);
        Ok(())
    }

    /// Runs `body` until it commits; returns what it returned and the attempts it took.
    fn atomically<R>(
        &mut self,
        sh: &Shared,
        mut body: impl FnMut(&mut Segment) -> Result<R, Conflict>,
    ) -> (R, usize) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.begin();
            if let Ok(r) = body(self) {
                if self.commit(sh).is_ok() {
                    return (r, attempts);
                }
            }
            self.end_inevitable(sh);
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn increments_are_never_lost(filter: bool) {
    model(move || {
        let sh = Arc::new(Shared::new(2, [0; OBJECTS]));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let sh = sh.clone();
                loom::thread::spawn(move || {
                    let mut seg = Segment::new(t, [0; OBJECTS], filter);
                    seg.atomically(&sh, |s| {
                        let v = s.read(&sh, 0)?;
                        s.write(&sh, 0, v + 1)
                    });
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut check = Segment::new(0, [0; OBJECTS], filter);
        check.begin();
        assert_eq!(check.read(&sh, 0).ok(), Some(2));
    });
}

#[test]
fn concurrent_increments_are_never_lost() {
    increments_are_never_lost(false);
}

#[test]
fn concurrent_increments_are_never_lost_with_the_count_filter() {
    increments_are_never_lost(true);
}

fn no_torn_snapshot(filter: bool) {
    // Invariant: x + y == 10. The writer moves 1 from x to y; the reader checks the sum in
    // every attempt, committed or not, and has read x (and maybe imported it) before y.
    model(move || {
        let sh = Arc::new(Shared::new(2, [10, 0]));
        let s2 = sh.clone();
        let writer = loom::thread::spawn(move || {
            let mut seg = Segment::new(0, [10, 0], filter);
            for _ in 0..2 {
                seg.atomically(&s2, |s| {
                    let (x, y) = (s.read(&s2, 0)?, s.read(&s2, 1)?);
                    s.write(&s2, 0, x - 1)?;
                    s.write(&s2, 1, y + 1)
                });
            }
        });
        let mut seg = Segment::new(1, [10, 0], filter);
        seg.atomically(&sh, |s| {
            let x = s.read(&sh, 0)?;
            loom::thread::yield_now();
            let y = s.read(&sh, 1)?;
            assert_eq!(x + y, 10, "torn snapshot");
            Ok(())
        });
        writer.join().unwrap();
    });
}

#[test]
fn no_attempt_sees_a_torn_snapshot() {
    no_torn_snapshot(false);
}

#[test]
fn no_attempt_sees_a_torn_snapshot_with_the_count_filter() {
    no_torn_snapshot(true);
}

#[test]
fn an_inevitable_transaction_never_aborts_and_excludes_commits() {
    model(|| {
        let sh = Arc::new(Shared::new(2, [0; OBJECTS]));
        let s2 = sh.clone();
        let other = loom::thread::spawn(move || {
            let mut seg = Segment::new(1, [0; OBJECTS], false);
            seg.atomically(&s2, |s| {
                let v = s.read(&s2, 0)?;
                s.write(&s2, 0, v + 10)
            });
        });
        let mut seg = Segment::new(0, [0; OBJECTS], false);
        let (_, attempts) = seg.atomically(&sh, |s| {
            s.become_inevitable(&sh)?;
            // From here nobody can commit: our read stays valid.
            let v = s.read(&sh, 0)?;
            s.write(&sh, 0, v + 1)
        });
        // Becoming inevitable can fail only by conflict on what was read before it (nothing
        // here): one attempt.
        assert_eq!(attempts, 1);
        other.join().unwrap();
        let mut check = Segment::new(0, [0; OBJECTS], false);
        check.begin();
        assert_eq!(check.read(&sh, 0).ok(), Some(11));
    });
}
