//! Call frames: a chain of bindings, each with a value slot and a function slot.

use std::ptr::addr_of_mut;

use stm::{Gc, Tx};
use stm_runtime as stm;

use super::{Obj, Value, A_INT, HAS_FUNC, HAS_VALUE};

/// One binding of a call frame.
#[stm::object]
pub struct Entry {
    /// The bound symbol.
    pub sym: Gc<Obj>,
    /// [`HAS_VALUE`], [`HAS_FUNC`], [`A_INT`] (the value is an int).
    pub tags: u8,
    /// The value's int.
    pub vi: i32,
    /// The value's object.
    pub v: Option<Gc<Obj>>,
    /// The function (`(params . body)`).
    pub f: Option<Gc<Obj>>,
    /// The next binding.
    pub next: Option<Gc<Entry>>,
}

/// A call frame (the global frame is the symbols' own slots).
#[stm::object]
pub struct Frame {
    /// The newest binding.
    pub first: Option<Gc<Entry>>,
}

/// A new empty frame.
#[stm::transactional]
pub fn new_frame(tx: &Tx) -> Gc<Frame> {
    let _ = tx;
    Gc::new(Frame { first: None })
}

/// The binding of `sym` in `frame`, if any.
#[stm::transactional]
pub fn find_entry(frame: Gc<Frame>, sym: Gc<Obj>) -> Option<Gc<Entry>> {
    let mut cur = frame.first;
    while let Some(e) = cur {
        if e.sym.ptr_eq(sym) {
            return Some(e);
        }
        cur = e.next;
    }
    None
}

/// The binding of `sym` in `frame`, created (unbound) if missing.
#[stm::transactional]
fn entry_for(frame: Gc<Frame>, sym: Gc<Obj>) -> Gc<Entry> {
    if let Some(e) = find_entry(frame, sym) {
        return e;
    }
    let e = Gc::new(Entry {
        sym,
        tags: 0,
        vi: 0,
        v: None,
        f: None,
        next: frame.first,
    });
    frame.first = Some(e);
    e
}

/// Adds a binding in front of `frame`'s others.
#[stm::transactional]
fn new_entry(frame: Gc<Frame>, sym: Gc<Obj>, tags: u8, vi: i32, v: Option<Gc<Obj>>) {
    let e = Gc::new(Entry {
        sym,
        tags,
        vi,
        v,
        f: None,
        next: frame.first,
    });
    frame.first = Some(e);
}

/// Defines the function `sym` in `frame`.
#[stm::transactional]
pub fn set_frame_function(frame: Gc<Frame>, sym: Gc<Obj>, f: Gc<Obj>) {
    let e = entry_for(frame, sym);
    e.tags |= HAS_FUNC;
    e.f = Some(f);
}

/// Frames and entries of the running attempt whose calls have returned, ready for reuse:
/// a call then costs no allocation, and the attempt commits (copies out) fewer objects.
#[derive(Default)]
pub struct Spare<'tx> {
    frames: std::cell::RefCell<Vec<Gc<'tx, Frame>>>,
    entries: std::cell::RefCell<Vec<Gc<'tx, Entry>>>,
}

/// A frame as the evaluator holds it.
///
/// **Frames are private**: a frame is only ever used by one transaction at a time. A call
/// frame belongs to the attempt that made it; the frame of a queued call, made by the
/// parent before it committed, is used only by the one task that runs the call (attempts
/// of a task run one after the other); the main program's frames only by the main
/// program, which runs alone. So no transaction can commit a write to a frame or entry
/// another one is reading: frames are read untracked (not in the read set). Writes still run the
/// write barrier, so an aborted attempt's frame changes are rolled back.
#[derive(Clone, Copy, Debug)]
pub struct Fr<'tx> {
    /// The frame object.
    pub gc: Gc<'tx, Frame>,
}

/// Reads a field of a frame or entry, without listing it in the read set (see [`Fr`]).
macro_rules! rd {
    ($h:expr, $f:ident) => {
        // SAFETY: the projection names a field of the object; untracked because frames
        // and their entries are private to one transaction at a time (see `Fr`).
        unsafe { $h.read_field_untracked(|p| addr_of_mut!((*p).$f)) }
    };
}

impl<'tx> Fr<'tx> {
    /// A new empty frame, allocated by the running attempt (a spare one if there is one).
    pub fn new(tx: &'tx Tx, spare: &Spare<'tx>) -> Fr<'tx> {
        let gc = spare
            .frames
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| new_frame(tx));
        Fr { gc }
    }

    /// Gives a frame that [`Fr::new`] made for a call that has returned, and its entries,
    /// to `spare` for reuse by later calls of this attempt. Nothing refers to a returned
    /// call's frame: frames are not values, and queued calls get frames of their own.
    pub fn recycle(self, spare: &Spare<'tx>) {
        let mut entries = spare.entries.borrow_mut();
        let mut cur = rd!(self.gc, first);
        while let Some(e) = cur {
            entries.push(e);
            cur = rd!(e, next);
        }
        // SAFETY: the projection names the `first` field of the frame.
        unsafe { self.gc.write_field(|p| addr_of_mut!((*p).first), None) };
        spare.frames.borrow_mut().push(self.gc);
    }

    /// The binding of `sym`, if any.
    #[inline]
    pub fn find(self, sym: Gc<'tx, Obj>) -> Option<Gc<'tx, Entry>> {
        let mut cur = rd!(self.gc, first);
        while let Some(e) = cur {
            if rd!(e, sym).ptr_eq(sym) {
                return Some(e);
            }
            cur = rd!(e, next);
        }
        None
    }

    /// The variable `sym`, if bound here.
    #[inline]
    pub fn value(self, sym: Gc<'tx, Obj>) -> Option<Value<'tx>> {
        let e = self.find(sym)?;
        let tags = rd!(e, tags);
        if tags & HAS_VALUE == 0 {
            return None;
        }
        Some(Value::from_slot(tags & A_INT != 0, rd!(e, vi), rd!(e, v)))
    }

    /// The function binding of `sym`: `Some(None)` when `sym` has an entry here (even one
    /// holding only a value, which hides the global function), `None` when it has none.
    #[inline]
    pub fn function(self, sym: Gc<'tx, Obj>) -> Option<Option<Gc<'tx, Obj>>> {
        let e = self.find(sym)?;
        if rd!(e, tags) & HAS_FUNC == 0 {
            return Some(None);
        }
        Some(rd!(e, f))
    }

    /// Binds the variable `sym` (in a spare entry if there is one).
    #[inline]
    pub fn set_value(self, sym: Gc<'tx, Obj>, v: Value<'tx>, spare: &Spare<'tx>) {
        let (is_int, i, o) = v.to_slot();
        let tags = HAS_VALUE | if is_int { A_INT } else { 0 };
        match self.find(sym) {
            Some(e) => {
                let tags = (rd!(e, tags) & HAS_FUNC) | tags;
                // SAFETY: the projections name fields of the entry.
                unsafe {
                    e.write_field(|p| addr_of_mut!((*p).tags), tags);
                    e.write_field(|p| addr_of_mut!((*p).vi), i);
                    e.write_field(|p| addr_of_mut!((*p).v), o);
                }
            }
            None => match spare.entries.borrow_mut().pop() {
                Some(e) => {
                    let first = rd!(self.gc, first);
                    // SAFETY: the projections name fields of the entry (a spare one of this
                    // attempt, no longer part of any frame) and of the frame.
                    unsafe {
                        e.write_field(|p| addr_of_mut!((*p).sym), sym);
                        e.write_field(|p| addr_of_mut!((*p).tags), tags);
                        e.write_field(|p| addr_of_mut!((*p).vi), i);
                        e.write_field(|p| addr_of_mut!((*p).v), o);
                        e.write_field(|p| addr_of_mut!((*p).f), None);
                        e.write_field(|p| addr_of_mut!((*p).next), first);
                        self.gc.write_field(|p| addr_of_mut!((*p).first), Some(e));
                    }
                }
                None => new_entry(self.gc, sym, tags, i, o),
            },
        }
    }

    /// Defines the function `sym`.
    pub fn set_function(self, sym: Gc<'tx, Obj>, f: Gc<'tx, Obj>) {
        set_frame_function(self.gc, sym, f)
    }
}
