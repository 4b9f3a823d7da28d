//! The adversarial suite of the macros (issue 13), written as an attacker writes user code:
//! only safe code (`forbid(unsafe_code)` below) and the documented macros. One test per class
//! whose fix is a run-time behaviour; the classes fixed by a compile error are trybuild cases
//! in `tests/ui`, and the runtime's classes are in `stm-runtime/tests/soundness.rs`.
//!
//! Each test fails on the code before the fix (`f15fdc4`).
#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use stm::{Gc, Root, Stm};
use stm_runtime as stm;

fn two_segments() -> Stm {
    Stm::builder()
        .segments(2)
        .heap_size(8 << 20)
        .build()
        .expect("runtime")
}

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn panics_with(needle: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let msg = message(&*err);
    assert!(msg.contains(needle), "unexpected panic message: {msg}");
}

/// Runs `f` once, on another thread, as its own transaction: a commit that happens while the
/// calling thread is inside a transaction (which keeps its snapshot).
fn commit_elsewhere_once<'a>(
    stm: &'a Stm,
    done: &'a AtomicBool,
    f: impl Fn(&stm::Tx) + Sync + 'a,
) -> impl Fn() + Sync + 'a {
    move || {
        if !done.swap(true, Ordering::SeqCst) {
            std::thread::scope(|s| {
                s.spawn(|| stm.atomically(|tx| f(tx)));
            });
        }
    }
}

// ---- Class 3: `crate = path` must not be trusted by generated `unsafe` ----

/// A module that re-exports the runtime but replaces the one item the old expansion trusted
/// to trace fields: a trace that reports nothing, so the collector would free reachable
/// objects.
mod evil {
    pub use stm_runtime::*;
    pub mod __private {
        pub use stm_runtime::__private::*;
        /// The attacker's replacement: reports no handle (unused now: nothing that holds
        /// `unsafe` reaches it).
        #[allow(dead_code)]
        pub fn trace_field<F>(_field: &F, _tracer: &mut stm_runtime::Tracer) {}
    }
}

#[stm::object(crate = evil)]
struct Holder {
    child: Option<Gc<Leaf>>,
}

#[stm::object(crate = evil)]
struct Leaf {
    value: u64,
}

#[stm::transactional(crate = evil)]
fn adopt(h: Gc<Holder>, value: u64) {
    h.child = Some(Gc::new(Leaf { value }));
}

#[stm::transactional(crate = evil)]
fn child_value(h: Gc<Holder>) -> u64 {
    h.child.map(|c| c.value).unwrap_or(0)
}

#[test]
fn class3_a_crate_path_cannot_redirect_the_collectors_trace() {
    let stm = two_segments();
    let holder = stm.atomically(|tx| {
        let h = tx.alloc(Holder { child: None });
        adopt(h, 42);
        tx.root(h)
    });
    stm.collect();
    // Reuse whatever the collection freed: a freed child would be overwritten.
    stm.atomically(|tx| {
        for _ in 0..1000 {
            tx.alloc(Leaf { value: 999 });
        }
    });
    stm.collect();
    assert_eq!(stm.atomically(|tx| child_value(holder.get(tx))), 42);
    assert_eq!(stm.gc_stats().live_objects, 2, "the holder and its child");
}

// ---- Class 4: no read barrier may be dropped ----

#[stm::object]
struct Cell {
    v: i64,
}

/// The reads of `x.v` here had their barrier elided (the short-circuit operand was taken as
/// always evaluated; `*r = ..` through a `&mut Gc` was not seen as a change of `r`). Between
/// the reads another thread commits `x.v = y.v + 2`; then `y.v = x.v` is written. Serial
/// outcomes: (x, y) = (3, 1) or (2, 2). Without the barrier the commit went undetected and
/// left (2, 1), which no serial order produces.
#[stm::transactional]
#[allow(clippy::needless_ifs)]
fn copy_after_short_circuit(x: Gc<Cell>, y: Gc<Cell>, flag: bool, other: &dyn Fn()) {
    if flag && x.v == 1 {}
    other();
    y.v = x.v;
}

#[stm::transactional]
fn copy_through_mut_ref(r: &mut Gc<Cell>, x: Gc<Cell>, y: Gc<Cell>, other: &dyn Fn()) {
    let _ = r.v;
    *r = x;
    other();
    y.v = r.v;
}

#[stm::transactional]
fn raise(x: Gc<Cell>, y: Gc<Cell>) {
    x.v = y.v + 2;
}

#[stm::transactional]
fn reset(x: Gc<Cell>, y: Gc<Cell>) {
    x.v = 1;
    y.v = 0;
}

#[test]
fn class4_reads_keep_their_barriers_so_concurrent_commits_are_detected() {
    if !stm::BARRIERS {
        return; // GIL mode: the other thread could not commit while we run
    }
    let stm = two_segments();
    let (x, y, z) = stm.atomically(|tx| {
        let c = |v| tx.root(tx.alloc(Cell { v }));
        (c(1), c(0), c(0))
    });
    for shape in 0..2 {
        stm.atomically(|tx| reset(x.get(tx), y.get(tx)));
        let done = AtomicBool::new(false);
        let other = commit_elsewhere_once(&stm, &done, |tx| raise(x.get(tx), y.get(tx)));
        stm.atomically(|tx| {
            let (gx, gy) = (x.get(tx), y.get(tx));
            match shape {
                0 => copy_after_short_circuit(gx, gy, false, &other),
                _ => copy_through_mut_ref(&mut z.get(tx), gx, gy, &other),
            }
        });
        let got = stm.atomically(|tx| (x.get(tx).get_v(), y.get(tx).get_v()));
        assert!(
            got == (3, 1) || got == (2, 2),
            "shape {shape}: {got:?} is the result of no serial order"
        );
    }
}

#[stm::transactional]
impl Cell {
    fn get_v(self: Gc<Self>) -> i64 {
        self.v
    }

    fn v_set(self: Gc<Self>, v: i64) {
        self.v = v;
    }
}

// ---- Class 5: write-back guards must not lose writes ----

#[stm::object]
struct Slots {
    a: [u64; 4],
    opt: Option<u64>,
    n: u64,
}

#[stm::transactional]
fn borrow_then_assign(h: Gc<Slots>) {
    // rustc rejects this on an ordinary struct (E0506); the guard of `&mut h.n` wrote its stale
    // copy over the 7 when the statement ended.
    let _ = (&mut h.n, h.n = 7);
}

#[stm::transactional]
fn take_inside_if_let(h: Gc<Slots>) {
    // The guard of the scrutinee lives through the block and wrote `Some(..)` back over `None`.
    if let Some(v) = h.opt.as_mut() {
        *v += 1;
        h.opt = None;
    }
}

#[stm::transactional]
fn disjoint_fields_inside_if_let(h: Gc<Slots>) {
    if let Some(v) = h.opt.as_mut() {
        *v += 1;
        h.n += 1;
    }
}

#[stm::transactional]
fn set_first(h: Gc<Slots>) {
    h.a[0] = 7;
}

#[stm::transactional]
fn read_slots(h: Gc<Slots>) -> ([u64; 4], Option<u64>, u64) {
    (h.a, h.opt, h.n)
}

/// Writes through a guard from a destructor.
struct OnDrop<'tx>(Gc<'tx, Slots>);
impl Drop for OnDrop<'_> {
    fn drop(&mut self) {
        set_first(self.0);
    }
}

#[test]
fn class5_a_write_to_a_borrowed_field_is_refused_not_lost() {
    let stm = two_segments();
    let h = stm.atomically(|tx| {
        tx.root(tx.alloc(Slots {
            a: [0; 4],
            opt: Some(1),
            n: 0,
        }))
    });
    panics_with("still borrowed mutably", || {
        stm.atomically(|tx| borrow_then_assign(h.get(tx)))
    });
    panics_with("still borrowed mutably", || {
        stm.atomically(|tx| take_inside_if_let(h.get(tx)))
    });
    // Nothing of the refused transactions committed.
    assert_eq!(
        stm.atomically(|tx| read_slots(h.get(tx))),
        ([0; 4], Some(1), 0)
    );
    // Borrowing one field and writing another is fine, as on an ordinary struct.
    stm.atomically(|tx| disjoint_fields_inside_if_let(h.get(tx)));
    assert_eq!(
        stm.atomically(|tx| read_slots(h.get(tx))),
        ([0; 4], Some(2), 1)
    );
}

#[test]
fn class5_a_guard_in_a_destructor_writes_back_during_a_caught_panic() {
    let stm = two_segments();
    let h = stm.atomically(|tx| {
        tx.root(tx.alloc(Slots {
            a: [0; 4],
            opt: None,
            n: 0,
        }))
    });
    stm.atomically(|tx| {
        let g = h.get(tx);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _d = OnDrop(g);
            panic!("a panic caught inside the transaction");
        }));
        assert!(caught.is_err());
    });
    // The transaction committed, so the destructor's write must be in it.
    assert_eq!(stm.atomically(|tx| read_slots(h.get(tx))).0[0], 7);
}

/// A plain type whose `+=` runs user code: it writes through a root to the object whose field
/// is being updated (the attacker's trait impl). An update holds its field while the operator
/// runs, so a write to that field is refused (it would be lost), and one to another field is
/// kept.
#[derive(Clone, Copy, Debug, PartialEq, stm::Plain)]
struct Meter(u64);

static METERS: std::sync::OnceLock<Root<Meters>> = std::sync::OnceLock::new();
static TOUCH_SAME_FIELD: AtomicBool = AtomicBool::new(false);

impl std::ops::AddAssign for Meter {
    fn add_assign(&mut self, other: Meter) {
        self.0 += other.0;
        let root = METERS.get().expect("set by the test");
        if TOUCH_SAME_FIELD.load(Ordering::SeqCst) {
            stm::atomically(|tx| set_meter(root.get(tx), Meter(1000)));
        } else {
            stm::atomically(|tx| bump_count(root.get(tx)));
        }
    }
}

#[stm::object]
struct Meters {
    m: Meter,
    count: u64,
}

#[stm::transactional]
fn set_meter(h: Gc<Meters>, v: Meter) {
    h.m = v;
}

#[stm::transactional]
fn bump_count(h: Gc<Meters>) {
    h.count += 1;
}

#[stm::transactional]
fn add_meter(h: Gc<Meters>) {
    h.m += Meter(5);
}

#[stm::transactional]
fn meters(h: Gc<Meters>) -> (Meter, u64) {
    (h.m, h.count)
}

#[test]
fn class5_an_operator_cannot_write_the_field_it_is_updating() {
    let stm = two_segments();
    let root = stm.atomically(|tx| {
        tx.root(tx.alloc(Meters {
            m: Meter(0),
            count: 0,
        }))
    });
    METERS.set(root.clone()).expect("one test sets it");
    TOUCH_SAME_FIELD.store(false, Ordering::SeqCst);
    stm.atomically(|tx| add_meter(root.get(tx)));
    assert_eq!(stm.atomically(|tx| meters(root.get(tx))), (Meter(5), 1));
    TOUCH_SAME_FIELD.store(true, Ordering::SeqCst);
    panics_with("still borrowed mutably", || {
        stm.atomically(|tx| add_meter(root.get(tx)))
    });
    assert_eq!(stm.atomically(|tx| meters(root.get(tx))), (Meter(5), 1));
}

// ---- Class 6: code that may run again must not change what it cannot restore ----

/// Runs as its own transaction (no handle, no `&Tx`): `n` is changed, and after an abort the
/// body runs again; it must start from the `n` it was called with.
#[stm::transactional]
fn add_from(mut n: u64, cell: &Root<Cell>, other: &(dyn Fn() + Sync)) -> u64 {
    n += 1;
    let v = cell.get(stm::tx!()).v;
    other();
    cell.get(stm::tx!()).v = v + n as i64;
    n
}

#[test]
fn class6_a_self_run_function_reruns_from_its_arguments() {
    if !stm::BARRIERS {
        return; // GIL mode: the other thread could not commit while we run
    }
    let stm = Stm::global();
    let cell = stm.atomically(|tx| tx.root(tx.alloc(Cell { v: 0 })));
    let done = AtomicBool::new(false);
    let other = commit_elsewhere_once(stm, &done, |tx| cell.get(tx).v_set(100));
    let aborts = stm.stats().aborts();
    // The other thread's commit conflicts with the first attempt, which runs again.
    assert_eq!(add_from(10, &cell, &other), 11);
    assert!(
        stm.stats().aborts() > aborts,
        "the first attempt must have aborted"
    );
    assert_eq!(stm.atomically(|tx| cell.get(tx).get_v()), 111);
}

// ---- Found by review ----

#[stm::object]
struct Pair {
    f: u64,
    g: u64,
}

/// `or_else`'s rollback restored whole before-images, headers included: an image saved before
/// a guard began cleared the object's borrowed flag while the guard (made by hand with the
/// public `__private::place` and kept past `first`) was alive, so an overlapping write was
/// accepted and then overwritten by the guard.
#[test]
fn review_a_rollback_inside_or_else_keeps_a_live_guard() {
    use stm::__private;
    let stm = two_segments();
    let r = stm.atomically(|tx| tx.root(tx.alloc(Pair { f: 0, g: 0 })));
    panics_with("still borrowed mutably", || {
        stm.atomically(|tx| {
            let o = r.get(tx);
            __private::write(o, __private::field!(o, g), 1);
            let mut slot = None;
            tx.or_else(
                |tx| {
                    __private::write(o, __private::field!(o, g), 2);
                    let mut wb = __private::place(o, __private::field!(o, f));
                    *wb = 100;
                    slot = Some(wb);
                    tx.retry()
                },
                |_| (),
            );
            __private::write(o, __private::field!(o, f), 7);
            drop(slot);
        })
    });
}

/// An update inside an update set the outer one aside on the list of guards, and the inner
/// one's end took the list's top back, whatever it was: a guard begun inside the inner update
/// (made by hand with `__private::place` and kept past it) came off the list in its place. So
/// the outer update's own write-back was refused as "still borrowed", and once it had ended a
/// write to the field the kept guard borrowed was accepted and then overwritten by the guard.
/// (Found by an attacker review, session 11.)
#[test]
fn review_a_guard_kept_past_a_nested_update_still_borrows_its_field() {
    use stm::__private;
    for segments in [1, 2] {
        let stm = Stm::builder()
            .segments(segments)
            .heap_size(8 << 20)
            .build()
            .expect("runtime");
        let (ra, ro) = stm.atomically(|tx| {
            (
                tx.root(tx.alloc(0u64)),
                tx.root(tx.alloc(Pair { f: 0, g: 0 })),
            )
        });
        let (outer_ok, seven_refused) = stm.atomically(|tx| {
            let a = ra.get(tx);
            let b = tx.alloc(0u64);
            let o = ro.get(tx);
            let mut slot = None;
            let outer_ok = catch_unwind(AssertUnwindSafe(|| {
                a.update(|va| {
                    b.update(|_| {
                        let mut wb = __private::place(o, __private::field!(o, f));
                        *wb = 100;
                        slot = Some(wb);
                    });
                    *va += 1;
                })
            }))
            .is_ok();
            // `o.f` is still borrowed by the guard in `slot`.
            let seven_refused = catch_unwind(AssertUnwindSafe(|| {
                __private::write(o, __private::field!(o, f), 7)
            }))
            .is_err();
            drop(slot);
            (outer_ok, seven_refused)
        });
        assert!(
            outer_ok,
            "{segments} segment(s): the outer update's write-back was refused"
        );
        assert!(
            seven_refused,
            "{segments} segment(s): a write to a field a live guard borrows was accepted"
        );
        let (a, f) = stm.atomically(|tx| {
            let o = ro.get(tx);
            (
                ra.get(tx).get(),
                __private::read(o, __private::field!(o, f)),
            )
        });
        assert_eq!((a, f), (1, 100), "{segments} segment(s)");
    }
}
