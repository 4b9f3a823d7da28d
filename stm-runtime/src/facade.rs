//! What the commit protocol (`protocol.rs`) is written against, in the runtime: std's
//! atomics, the mapped committed heap, the runtime's shared state and segments, and a wait
//! for the inevitable transaction that reports the time it lost.
//!
//! `tests/loom_protocol.rs` compiles `protocol.rs` against a facade of its own with the same
//! names (loom's atomics, a committed heap of loom atomics, segments of plain arrays), as
//! crossbeam-epoch swaps in loom's primitives: so loom checks the protocol's own code. A
//! name added here must be added there too.

pub(crate) use std::sync::atomic::{compiler_fence, fence, Ordering};
pub(crate) use std::thread::yield_now;
use std::time::Instant;

pub(crate) use crossbeam_utils::Backoff;

pub(crate) use crate::committed::CommittedHeap;
pub(crate) use crate::heap::{Header, FLAG_GUARDED, FLAG_NEW, FLAG_WRITE_BARRIER};
pub(crate) use crate::pool::Shared;
use crate::report::{ConflictKind, ConflictSite};
pub(crate) use crate::segment::{Segment, SegmentLocal};
pub(crate) use crate::sys::{heavy_fence, heavy_fence_available};

// The holder bits of a version word name any segment (index + 1).
const _: () = assert!(
    crate::config::MAX_SEGMENTS < crate::protocol::HOLDER_MASK as usize,
    "too many segments for the holder bits of a version word"
);

/// Between a commit's locks and its read check: nothing. The locks are SeqCst
/// compare-and-swaps and the check's loads SeqCst loads, all in one total order, which is
/// what Dekker's pattern between two committers needs (each reads what the other writes:
/// one of them sees the other's lock). loom treats SeqCst accesses as AcqRel and would report
/// write skew that cannot happen, so its facade puts a SeqCst fence here, which it models.
#[inline(always)]
pub(crate) fn locks_before_checks() {}

/// Waits until no transaction is inevitable (one that wants to commit or become inevitable
/// itself waits here); with conflict reports on, records the time lost.
pub(crate) fn wait_for_inevitable(shared: &Shared, local: &SegmentLocal) {
    let start = local.report.on.then(Instant::now);
    shared
        .inevitable_done
        .wait_until(|| shared.inevitable.load(Ordering::SeqCst) == 0);
    if let Some(start) = start {
        shared.recorder.record(ConflictSite {
            kind: ConflictKind::Inevitable,
            object_type: None,
            this_side: local.report.tx_site,
            other_side: None,
            count: 1,
            time_lost: start.elapsed(),
            between_breaks: local.in_series(),
        });
    }
}
