//! Model checking of the commit/validation protocol (`src/commit.rs`) with loom, on a small
//! abstraction: two objects, private per-segment copies, read markers, a commit log whose
//! entries are linked by compare-and-swap and imported by validation, and the inevitable
//! sentinel. loom runs every interleaving (up to a preemption bound) and checks the memory
//! orderings: an entry's contents are written before the Release CAS that links it and read
//! after the Acquire load that finds it.
//!
//! What it checks: transactions are serializable (concurrent increments are never lost), no
//! attempt ever sees a torn snapshot (an invariant across both objects holds in every attempt,
//! including those that abort), and an inevitable transaction never aborts and excludes
//! other commits until it ends.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

/// Objects in the model.
const OBJECTS: usize = 2;
/// Entries each thread may publish.
const PER_THREAD: usize = 3;
/// `next` values: 0 is "none yet", `INEVITABLE` the sentinel, else entry index + 1.
const NONE: usize = 0;
const INEVITABLE: usize = usize::MAX;

/// One log entry: the written object values (None: not written) and the link to the next.
struct Entry {
    writes: UnsafeCell<[Option<u64>; OBJECTS]>,
    next: AtomicUsize,
}

struct Log {
    /// Entry 0 is the initial entry; thread t owns entries 1 + t * PER_THREAD ...
    entries: Vec<Entry>,
}

impl Log {
    fn new(threads: usize) -> Log {
        Log {
            entries: (0..1 + threads * PER_THREAD)
                .map(|_| Entry {
                    writes: UnsafeCell::new([None; OBJECTS]),
                    next: AtomicUsize::new(NONE),
                })
                .collect(),
        }
    }
}

/// A segment: a private copy of the heap, read markers, the last applied entry.
struct Segment {
    heap: [u64; OBJECTS],
    read: [bool; OBJECTS],
    written: [Option<u64>; OBJECTS],
    last: usize,
    next_own: usize,
    inevitable: bool,
}

struct Conflict;

impl Segment {
    fn new(thread: usize, init: [u64; OBJECTS]) -> Segment {
        Segment {
            heap: init,
            read: [false; OBJECTS],
            written: [None; OBJECTS],
            last: 0,
            next_own: 1 + thread * PER_THREAD,
            inevitable: false,
        }
    }

    fn begin(&mut self, log: &Log) {
        self.read = [false; OBJECTS];
        self.written = [None; OBJECTS];
        let r = self.validate(log);
        assert!(r.is_ok(), "nothing is read at the start");
    }

    /// The read barrier + load: the private copy (own writes first).
    fn read(&mut self, o: usize) -> u64 {
        self.read[o] = true;
        self.written[o].unwrap_or(self.heap[o])
    }

    /// A write marks the object read too.
    fn write(&mut self, o: usize, v: u64) {
        self.read[o] = true;
        self.written[o] = Some(v);
    }

    /// Imports newer entries, unless one wrote something this attempt read.
    fn validate(&mut self, log: &Log) -> Result<(), Conflict> {
        loop {
            let next = log.entries[self.last].next.load(Ordering::Acquire);
            if next == NONE || next == INEVITABLE {
                return Ok(());
            }
            let entry = &log.entries[next - 1];
            let writes = entry.writes.with(|w| {
                // SAFETY: the entry is immutable once linked, and we found it through an
                // Acquire load of the link (loom checks exactly this ordering).
                unsafe { *w }
            });
            if writes.iter().zip(self.read).any(|(w, r)| w.is_some() && r) {
                return Err(Conflict);
            }
            for (o, w) in writes.iter().enumerate() {
                if let Some(v) = w {
                    self.heap[o] = *v;
                }
            }
            self.last = next - 1;
        }
    }

    fn become_inevitable(&mut self, log: &Log) -> Result<(), Conflict> {
        loop {
            self.validate(log)?;
            match log.entries[self.last].next.compare_exchange(
                NONE,
                INEVITABLE,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.inevitable = true;
                    return Ok(());
                }
                Err(INEVITABLE) => loom::thread::yield_now(),
                Err(_) => {}
            }
        }
    }

    fn commit(&mut self, log: &Log) -> Result<(), Conflict> {
        if self.written.iter().all(Option::is_none) {
            if self.inevitable {
                log.entries[self.last].next.store(NONE, Ordering::SeqCst);
                self.inevitable = false;
            }
            return Ok(());
        }
        let mine = self.next_own;
        // Fill the entry before publishing it.
        log.entries[mine].writes.with_mut(|w| {
            // SAFETY: entry `mine` belongs to this thread and is not linked yet, so nobody
            // else reads it.
            unsafe { *w = self.written }
        });
        loop {
            if !self.inevitable {
                self.validate(log)?;
            }
            let last = &log.entries[self.last].next;
            if self.inevitable {
                assert_eq!(last.load(Ordering::Acquire), INEVITABLE);
                last.store(mine + 1, Ordering::SeqCst);
                self.inevitable = false;
                break;
            }
            match last.compare_exchange(NONE, mine + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(INEVITABLE) => loom::thread::yield_now(),
                Err(_) => {}
            }
        }
        for (o, w) in self.written.iter().enumerate() {
            if let Some(v) = w {
                self.heap[o] = *v;
            }
        }
        self.last = mine;
        self.next_own += 1;
        Ok(())
    }

    /// Runs `body` until it commits; returns what it returned and the attempts it took.
    fn atomically<R>(&mut self, log: &Log, mut body: impl FnMut(&mut Segment) -> R) -> (R, usize) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.begin(log);
            let r = body(self);
            if self.commit(log).is_ok() {
                return (r, attempts);
            }
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn concurrent_increments_are_never_lost() {
    model(|| {
        let log = Arc::new(Log::new(2));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let log = log.clone();
                loom::thread::spawn(move || {
                    let mut seg = Segment::new(t, [0; OBJECTS]);
                    seg.atomically(&log, |s| {
                        let v = s.read(0);
                        s.write(0, v + 1);
                    });
                    seg
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut check = Segment::new(0, [0; OBJECTS]);
        check.next_own = 1 + 2 * PER_THREAD; // never commits
        check.begin(&log);
        assert_eq!(check.read(0), 2);
    });
}

#[test]
fn no_attempt_sees_a_torn_snapshot() {
    // Invariant: x + y == 10. The writer moves 1 from x to y; the reader checks the sum in
    // every attempt, committed or not.
    model(|| {
        let log = Arc::new(Log::new(2));
        let l2 = log.clone();
        let writer = loom::thread::spawn(move || {
            let mut seg = Segment::new(0, [10, 0]);
            for _ in 0..2 {
                seg.atomically(&l2, |s| {
                    let (x, y) = (s.read(0), s.read(1));
                    s.write(0, x - 1);
                    s.write(1, y + 1);
                });
            }
        });
        let mut seg = Segment::new(1, [10, 0]);
        seg.atomically(&log, |s| {
            let x = s.read(0);
            loom::thread::yield_now();
            let y = s.read(1);
            assert_eq!(x + y, 10, "torn snapshot");
        });
        writer.join().unwrap();
    });
}

#[test]
fn an_inevitable_transaction_never_aborts_and_excludes_commits() {
    model(|| {
        let log = Arc::new(Log::new(2));
        let l2 = log.clone();
        let other = loom::thread::spawn(move || {
            let mut seg = Segment::new(1, [0; OBJECTS]);
            seg.atomically(&l2, |s| {
                let v = s.read(0);
                s.write(0, v + 10);
            });
        });
        let mut seg = Segment::new(0, [0; OBJECTS]);
        let (_, attempts) = seg.atomically(&log, |s| {
            let ok = s.become_inevitable(&log).is_ok();
            if ok {
                // From here nobody can commit: our read stays valid.
                let v = s.read(0);
                s.write(0, v + 1);
            }
            ok
        });
        // Becoming inevitable can fail only by conflict before it succeeded (nothing read
        // yet here, so never): one attempt.
        assert_eq!(attempts, 1);
        other.join().unwrap();
        let mut check = Segment::new(0, [0; OBJECTS]);
        check.next_own = 1 + 2 * PER_THREAD;
        check.begin(&log);
        assert_eq!(check.read(0), 11);
    });
}
