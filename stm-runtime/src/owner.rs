//! Who may use a segment: its ownership word, and *biased* ownership, with which a thread that
//! keeps using one segment takes it and gives it back without a locked instruction.
//!
//! [`Segment::state`](crate::segment::Segment::state) holds one of
//!
//! * [`FREE`]: nobody uses the segment;
//! * [`OWNED`]: a thread took it by compare-and-swap and runs a transaction in it (or the
//!   collector holds it);
//! * [`REVOKING`]: a thief is taking a biased segment back (below);
//! * the address of a [`BiasSlot`]: the segment is *biased* to the thread that holds that
//!   slot. It is free for that thread, which takes it by writing the segment's address into
//!   its own slot ([`take_biased`]) and gives it back by writing zero; nobody else may use it
//!   until they revoke the bias ([`try_take`]).
//!
//! A thread whose release finds that it used the same segment [`BIAS_AFTER`] times in a row
//! leaves it biased to itself instead of `FREE`. A thief (another thread wanting a segment,
//! the collector) moves the state from the slot's address to `REVOKING` by CAS,
//! runs [`heavy_fence`](crate::sys::heavy_fence) and reads the slot: if the slot names the
//! segment, its owner is using it and the thief puts the bias back; otherwise the segment is
//! the thief's. A release that sees threads waiting for a segment gives the bias up, so a
//! biased segment cannot starve them.
//!
//! **Why it is exclusive (invariant 1).** It is Dekker's protocol with an asymmetric fence:
//! the owner stores into its slot, then (after a compiler fence) loads the state; the thief
//! writes the state (a locked CAS), runs `membarrier`, then loads the slot. `membarrier`
//! makes every running thread of the process execute a full barrier at some point during the
//! call, so either the owner's store was visible before the thief's load (the thief sees the
//! slot naming the segment and backs off), or the owner's load came after the barrier and
//! sees `REVOKING` (the owner backs off). Both cannot proceed. Slots are written only by the
//! thread that holds them and are never freed (a slot goes back to a free list when its
//! thread exits and serves a later thread), so a thief may always read one.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};
use std::sync::Mutex;

/// No thread owns the segment.
pub(crate) const FREE: usize = 0;
/// A thread (or the collector) took the segment by compare-and-swap.
pub(crate) const OWNED: usize = 1;
/// A thief is revoking the segment's bias.
pub(crate) const REVOKING: usize = 3;

/// Consecutive uses of a segment by one thread after which its release leaves it biased.
pub(crate) const BIAS_AFTER: u32 = 8;

/// A thread's announcement of the biased segment it is using: the segment's address, or 0.
/// Written only by the thread holding the slot; read by thieves. On a cache line of its own.
#[repr(align(128))]
pub(crate) struct BiasSlot {
    using: AtomicUsize,
}

/// Slots of threads that have exited, for reuse (slots are never freed: a segment's state may
/// name one at any time).
static FREE_SLOTS: Mutex<Vec<&'static BiasSlot>> = Mutex::new(Vec::new());

/// This thread's slot, taken on first use and given back to [`FREE_SLOTS`] at exit.
struct ThreadSlot(Cell<Option<&'static BiasSlot>>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            // From now on this thread has no slot (transactions that thread-local destructors
            // run later take segments by compare-and-swap only).
            let _ = CACHED.try_with(|c| c.set(std::ptr::null()));
            // The thread uses no segment any more (it runs no transaction while its
            // thread-locals are destroyed), so its next holder starts clean. (The slot already
            // reads 0 unless a segment taken through it was never given back, which only
            // tests do; clearing it frees that segment for thieves.) Release: whatever this
            // thread did to a segment happens before a thief's Acquire load of the slot.
            slot.using.store(0, Ordering::Release);
            FREE_SLOTS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(slot);
        }
    }
}

thread_local! {
    /// Owns the slot (its destructor gives it back).
    static SLOT: ThreadSlot = const { ThreadSlot(Cell::new(None)) };
    /// The same slot, for the fast path: a thread-local without a destructor costs one load.
    static CACHED: Cell<*const BiasSlot> = const { Cell::new(std::ptr::null()) };
}

/// Whether a state value names a bias slot.
#[inline]
fn is_bias(state: usize) -> bool {
    state > REVOKING
}

/// This thread's slot if it has one already (none once its thread-locals are destroyed).
#[inline]
pub(crate) fn my_slot() -> Option<&'static BiasSlot> {
    let p = CACHED.with(Cell::get);
    // SAFETY: CACHED is null or the address of this thread's slot, a leaked box that is never
    // freed (FREE_SLOTS); it is cleared before the slot is given back.
    unsafe { p.as_ref() }
}

/// This thread's slot, taken now if it has none (none while its thread-locals are destroyed).
pub(crate) fn my_slot_or_new() -> Option<&'static BiasSlot> {
    SLOT.try_with(|s| {
        if s.0.get().is_none() {
            let reused = FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let slot = reused.unwrap_or_else(|| {
                Box::leak(Box::new(BiasSlot {
                    using: AtomicUsize::new(0),
                }))
            });
            s.0.set(Some(slot));
            CACHED.with(|c| c.set(slot));
        }
        s.0.get()
    })
    .ok()
    .flatten()
}

/// The state value that biases a segment to `slot`'s thread.
#[inline]
pub(crate) fn bias_of(slot: &'static BiasSlot) -> usize {
    slot as *const BiasSlot as usize
}

/// The bias owner's side: takes the segment whose ownership word is `state` and whose
/// identity is `seg` if it is biased to `slot`'s thread (the caller's own slot), with plain
/// stores and loads only.
#[inline]
pub(crate) fn take_biased(state: &AtomicUsize, seg: usize, slot: &'static BiasSlot) -> bool {
    let me = bias_of(slot);
    // A thread uses one biased segment at a time (its slot names only one).
    if state.load(Ordering::Relaxed) != me || slot.using.load(Ordering::Relaxed) != 0 {
        return false;
    }
    // Release: a thief that reads this value also sees our earlier release of any segment.
    slot.using.store(seg, Ordering::Release);
    // The light side of the asymmetric fence (see the module documentation).
    compiler_fence(Ordering::SeqCst);
    // Acquire: see what a thief that restored the bias, or our own earlier use, did.
    if state.load(Ordering::Acquire) == me {
        return true;
    }
    slot.using.store(0, Ordering::Release);
    false
}

/// Gives back a segment held through its bias. If `give_up`, the bias is dropped too (the
/// segment becomes `FREE`, for threads that wait for one).
#[inline]
pub(crate) fn release_biased(state: &AtomicUsize, slot: &'static BiasSlot, give_up: bool) {
    // Release: our accesses to the segment happen before a thief's Acquire load of the slot.
    slot.using.store(0, Ordering::Release);
    if give_up {
        // Fails only if a thief is revoking the bias right now: then it is theirs anyway.
        let _ = state.compare_exchange(bias_of(slot), FREE, Ordering::Release, Ordering::Relaxed);
    }
}

/// A thief's side: takes the segment whose ownership word is `state` and whose identity is
/// `seg`, moving the state to `to` (`OWNED`), if it is free, or biased to a
/// thread that is not using it (the bias is revoked). `None` if someone uses it; else
/// whether it was taken through the caller's own bias (`Some(Some(slot))`: give it back with
/// [`release_biased`]) or not (`Some(None)`).
pub(crate) fn try_take(
    state: &AtomicUsize,
    seg: usize,
    to: usize,
) -> Option<Option<&'static BiasSlot>> {
    // Acquire: see everything the previous owner did to the segment.
    let s = match state.compare_exchange(FREE, to, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => return Some(None),
        Err(s) if is_bias(s) => s,
        Err(_) => return None,
    };
    // SAFETY: a state above REVOKING is the address of a `BiasSlot`, and slots are leaked
    // boxes that are never freed (see FREE_SLOTS), so the reference is valid forever.
    let slot = unsafe { &*(s as *const BiasSlot) };
    if let Some(mine) = my_slot() {
        if std::ptr::eq(mine, slot) {
            // Biased to us (a slot we inherited, or a segment we did not prefer): no thief.
            if take_biased(state, seg, slot) {
                return Some(Some(slot));
            }
        }
    }
    // Cheap test first: revoking a bias costs a system call.
    if slot.using.load(Ordering::Relaxed) == seg {
        return None;
    }
    if state
        .compare_exchange(s, REVOKING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // Without the fence (the kernel refused) we cannot know whether the owner saw REVOKING:
    // put the bias back, as when the owner uses the segment.
    let fenced = crate::sys::heavy_fence();
    // Acquire: pairs with the owner's Release stores into its slot, so its use of the
    // segment happens before ours.
    if !fenced || slot.using.load(Ordering::Acquire) == seg {
        // The owner is using it: the bias stays (only we can change REVOKING).
        state.store(s, Ordering::Release);
        return None;
    }
    state.store(to, Ordering::Relaxed);
    Some(None)
}

/// Whether a segment held by compare-and-swap (`OWNED`) should be left biased to the
/// releasing thread: `streak` counts that thread's consecutive uses of the segment.
#[inline]
pub(crate) fn should_bias(streak: u32) -> bool {
    streak >= BIAS_AFTER && crate::sys::heavy_fence_available()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Holds the "segment" for a while: fails if someone else is inside too.
    fn inside_alone(inside: &AtomicBool, who: &str) {
        assert!(!inside.swap(true, Ordering::SeqCst), "{who}: not alone");
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        assert!(inside.swap(false, Ordering::SeqCst), "{who}: not alone");
    }

    /// The exclusion itself: an owner taking and giving back a biased word in a loop, and a
    /// thief revoking it whenever it can; inside, each checks that it is alone.
    #[test]
    fn owner_and_thief_never_hold_the_segment_together() {
        crate::sys::start_heavy_fence_registration();
        while !crate::sys::heavy_fence_settled() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !crate::sys::heavy_fence_available() {
            eprintln!("membarrier(PRIVATE_EXPEDITED) is not available: no biasing to test");
            return;
        }
        const SEG: usize = 0x1000;
        let state = Arc::new(AtomicUsize::new(FREE));
        let inside = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thefts = Arc::new(AtomicUsize::new(0));
        let (ready, is_ready) = std::sync::mpsc::channel();
        let owner = {
            let (state, inside, stop) = (state.clone(), inside.clone(), stop.clone());
            std::thread::spawn(move || {
                let slot = my_slot_or_new().unwrap();
                // Biased before the thief starts.
                state.store(bias_of(slot), Ordering::Release);
                ready.send(()).unwrap();
                let mut held = 0u64;
                let mut round = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    round = round.wrapping_add(1);
                    if round % 64 == 0 {
                        // Idle now and then, as a thread between transactions is.
                        for _ in 0..2000 {
                            std::hint::spin_loop();
                        }
                    }
                    if take_biased(&state, SEG, slot) {
                        inside_alone(&inside, "owner");
                        held += 1;
                        release_biased(&state, slot, false);
                    } else if state
                        .compare_exchange(FREE, OWNED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        inside_alone(&inside, "owner");
                        held += 1;
                        // Re-bias, as a release after a streak does.
                        state.store(bias_of(slot), Ordering::Release);
                    }
                }
                held
            })
        };
        is_ready.recv().unwrap();
        let thief = {
            let (state, inside, stop, thefts) =
                (state.clone(), inside.clone(), stop.clone(), thefts.clone());
            std::thread::spawn(move || {
                // Until 3,000 biases were revoked (the owner idles now and then, so this ends).
                while thefts.load(Ordering::Relaxed) < 3_000 {
                    let biased = is_bias(state.load(Ordering::Relaxed));
                    if try_take(&state, SEG, OWNED).is_some() {
                        inside_alone(&inside, "thief");
                        if biased {
                            thefts.fetch_add(1, Ordering::Relaxed);
                        }
                        state.store(FREE, Ordering::Release);
                    }
                    std::hint::spin_loop();
                }
                stop.store(true, Ordering::Relaxed);
            })
        };
        thief.join().unwrap();
        let held = owner.join().unwrap();
        assert!(held > 0, "the owner never took its segment");
    }
}
