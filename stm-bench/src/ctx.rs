//! The one interface every workload is written against.
//!
//! A workload sees a transaction as a [`Ctx`]: a fixed array of *slots* (roots: a list
//! head, hash buckets, bank accounts, counters), each a link and an `i64`, and *nodes* of
//! one shape ([`NodeV`]: key, value, two links, a colour) reached through links. Lists chain
//! nodes through `right`, hash buckets too, the red-black tree uses both links.
//!
//! Every implementation provides the same operations, so the workload code is literally the
//! same for all of them: our runtime links nodes with `Gc` handles, the others keep nodes in
//! an arena of transactional cells (one cell per node) linked by index.

/// A transaction found a conflict (only the Rust STM crates report one during the run of
/// the closure); the engine rolls back and runs the operation again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort;

/// The result of an operation inside a transaction.
pub type Res<T> = Result<T, Abort>;

/// The value of a node: a key, a value, two links and a colour (for the red-black tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeV<L> {
    /// The key.
    pub key: u64,
    /// The value (the map's value; the long workload's payload).
    pub val: u64,
    /// Left child (tree).
    pub left: Option<L>,
    /// Right child (tree) or next node (list, hash chain).
    pub right: Option<L>,
    /// Red (tree).
    pub red: bool,
}

impl<L> NodeV<L> {
    /// A fresh node with no links.
    pub fn leaf(key: u64, val: u64, red: bool) -> Self {
        NodeV {
            key,
            val,
            left: None,
            right: None,
            red,
        }
    }
}

/// A running transaction, as the workloads see it.
pub trait Ctx {
    /// A link to a node.
    type L: Copy + Eq + std::fmt::Debug;

    /// Reads a whole node.
    fn node(&mut self, n: Self::L) -> Res<NodeV<Self::L>>;
    /// Replaces a whole node.
    fn set_node(&mut self, n: Self::L, v: NodeV<Self::L>) -> Res<()>;
    /// Allocates a node.
    fn alloc(&mut self, v: NodeV<Self::L>) -> Res<Self::L>;
    /// The link held by slot `i`.
    fn link(&mut self, i: usize) -> Res<Option<Self::L>>;
    /// Replaces the link held by slot `i`.
    fn set_link(&mut self, i: usize, l: Option<Self::L>) -> Res<()>;
    /// The number held by slot `i`.
    fn val(&mut self, i: usize) -> Res<i64>;
    /// Replaces the number held by slot `i`.
    fn set_val(&mut self, i: usize, v: i64) -> Res<()>;

    /// Replaces the `left` link of a node (engines with field access override it).
    fn set_left(&mut self, n: Self::L, l: Option<Self::L>) -> Res<()> {
        let v = self.node(n)?;
        self.set_node(n, NodeV { left: l, ..v })
    }
    /// Replaces the `right` link of a node.
    fn set_right(&mut self, n: Self::L, l: Option<Self::L>) -> Res<()> {
        let v = self.node(n)?;
        self.set_node(n, NodeV { right: l, ..v })
    }
    /// Replaces the colour of a node.
    fn set_red(&mut self, n: Self::L, red: bool) -> Res<()> {
        let v = self.node(n)?;
        self.set_node(n, NodeV { red, ..v })
    }
    /// Replaces the value of a node.
    fn set_nval(&mut self, n: Self::L, val: u64) -> Res<()> {
        let v = self.node(n)?;
        self.set_node(n, NodeV { val, ..v })
    }
}

/// One operation, run as a transaction by an [`Engine`].
pub trait TxFn: Sync {
    /// What the operation returns.
    type Out: Send;
    /// Whether the operation only reads (the `RwLock` engine takes the read lock for it).
    fn read_only(&self) -> bool {
        false
    }
    /// The body of the transaction. It may run several times (after an abort).
    fn call<C: Ctx>(&self, c: &mut C) -> Res<Self::Out>;
}

/// An implementation under test: runs operations as transactions on one shared heap of
/// `slots` slots and nodes.
pub trait Engine: Sync {
    /// Runs `f` as one transaction, again and again until it commits.
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out;
    /// Called by each worker thread before its first operation (`thread` is its index).
    fn enter(&self, _thread: usize) {}
}

thread_local! {
    static ATTEMPTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one transaction attempt on this thread (every engine calls it once per run of the
/// closure, so aborts = attempts - commits).
#[inline(always)]
pub fn count_attempt() {
    ATTEMPTS.with(|a| a.set(a.get() + 1));
}

/// The attempts counted on this thread so far.
pub fn attempts() -> u64 {
    ATTEMPTS.with(|a| a.get())
}
