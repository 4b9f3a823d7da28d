//! What the commit protocol (`protocol.rs`) sees of the attempt running in a segment: its
//! read set, what it wrote and allocated, the holder mark of its segment, whether it is the
//! inevitable transaction, and the commit count of its last full check of the read set.
//!
//! Plain data with no dependency: `tests/loom_protocol.rs` compiles this file too, so that
//! loom runs the protocol over the very state the runtime gives it. Everything else an
//! attempt keeps (before-images, guards, series, reports, fault injection) is in
//! `SegmentLocal` (`segment.rs`) around it, and the protocol cannot name it.

/// The running attempt's state as the commit protocol sees it (one per segment, touched by
/// the segment's owner only).
pub(crate) struct Footprint {
    /// The segment index + 1, as it appears in the holder bits of a version word.
    pub holder: u64,
    /// The running transaction is the inevitable one.
    pub inevitable: bool,
    /// The committed objects the running attempt has read (or written: a write reads),
    /// in the order of their first read; validated at every import and at commit.
    pub reads: Vec<u32>,
    /// Committed objects written by the running transaction (granules), in barrier order
    /// (an object appears twice when written before and after an `or_else` checkpoint).
    pub modified: Vec<u32>,
    /// Objects allocated by the running transaction.
    pub allocated: Vec<u32>,
    /// At commit: the distinct committed objects of `modified`, which the commit locks.
    pub writes: Vec<u32>,
    /// The sum of every segment's commit count read just before the attempt's last check
    /// of its reads, if no commit was publishing then.
    pub seen: Option<u64>,
}

impl Footprint {
    /// The empty footprint of segment `index`.
    pub(crate) fn new(index: u32) -> Footprint {
        Footprint {
            holder: u64::from(index) + 1,
            inevitable: false,
            reads: Vec::new(),
            modified: Vec::new(),
            allocated: Vec::new(),
            writes: Vec::new(),
            seen: None,
        }
    }
}
