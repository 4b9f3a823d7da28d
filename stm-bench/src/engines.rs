//! The implementations that keep nodes in an arena of cells linked by index: the plain
//! sequential program, a global `Mutex`, a global `RwLock`, and the Rust STM crates
//! (`stm` 0.4, `fast-stm`, `kovan-stm`, `xstm`). One cell per node and one per slot, so each
//! STM crate tracks conflicts per node, as our runtime does per object.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::sync::{Mutex, RwLock};

use crate::ctx::{count_attempt, Abort, Ctx, Engine, NodeV, Res, TxFn};

/// How many slots and nodes a run needs (the arena is allocated up front).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Slots (roots, accounts, buckets, counters).
    pub slots: usize,
    /// Nodes the single-threaded setup may allocate.
    pub setup_nodes: usize,
    /// Nodes each worker thread may allocate.
    pub thread_nodes: usize,
    /// Worker threads.
    pub threads: usize,
}

/// The thread index that [`Engine::enter`] gets for the setup phase.
pub const SETUP: usize = usize::MAX;

impl Layout {
    /// The range of arena indices thread `t` allocates from (node 0 is never used).
    pub fn range(&self, t: usize) -> (u32, u32) {
        let base = 1 + self.setup_nodes;
        if t == SETUP {
            (1, base as u32)
        } else {
            let lo = base + t * self.thread_nodes;
            (lo as u32, (lo + self.thread_nodes) as u32)
        }
    }
    /// Nodes in the arena.
    pub fn nodes(&self) -> usize {
        1 + self.setup_nodes + self.threads * self.thread_nodes
    }
}

/// A slot's value in an arena engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotV {
    /// The link.
    pub link: Option<u32>,
    /// The number.
    pub val: i64,
}

/// What a cell can hold.
pub trait Cellable: Copy + Send + Sync + Any + 'static {}
impl Cellable for NodeV<u32> {}
impl Cellable for SlotV {}

thread_local! {
    /// Next free arena index of this thread and the end of its range.
    static NEXT: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    /// The cursor a successful attempt ended with (published after the commit).
    static PENDING: Cell<u32> = const { Cell::new(0) };
}

/// A transaction of one backend, over cells of type `Var<T>` borrowed for `'a`.
pub trait CellTx<'a> {
    /// The cell type.
    type Var<T: Cellable>: 'a;
    /// Reads a cell.
    fn rd<T: Cellable>(&mut self, v: &'a Self::Var<T>) -> Res<T>;
    /// Writes a cell.
    fn wr<T: Cellable>(&mut self, v: &'a Self::Var<T>, x: T) -> Res<()>;
}

/// The [`Ctx`] of every arena engine.
pub struct ArenaCtx<'a, X: CellTx<'a>> {
    tx: X,
    nodes: &'a [X::Var<NodeV<u32>>],
    slots: &'a [X::Var<SlotV>],
    cur: u32,
    end: u32,
}

impl<'a, X: CellTx<'a>> ArenaCtx<'a, X> {
    fn new(tx: X, nodes: &'a [X::Var<NodeV<u32>>], slots: &'a [X::Var<SlotV>]) -> Self {
        let (cur, end) = NEXT.with(|n| n.get());
        ArenaCtx {
            tx,
            nodes,
            slots,
            cur,
            end,
        }
    }
    /// Runs the operation; on success remembers the allocation cursor for [`publish`].
    fn run<F: TxFn>(&mut self, f: &F) -> Res<F::Out> {
        count_attempt();
        let r = f.call(self)?;
        PENDING.with(|p| p.set(self.cur));
        Ok(r)
    }
}

/// Makes the allocations of the committed attempt permanent on this thread.
fn publish() {
    let cur = PENDING.with(|p| p.get());
    NEXT.with(|n| n.set((cur, n.get().1)));
}

impl<'a, X: CellTx<'a>> Ctx for ArenaCtx<'a, X> {
    type L = u32;
    #[inline]
    fn node(&mut self, n: u32) -> Res<NodeV<u32>> {
        self.tx.rd(&self.nodes[n as usize])
    }
    #[inline]
    fn set_node(&mut self, n: u32, v: NodeV<u32>) -> Res<()> {
        self.tx.wr(&self.nodes[n as usize], v)
    }
    #[inline]
    fn alloc(&mut self, v: NodeV<u32>) -> Res<u32> {
        assert!(self.cur < self.end, "arena range exhausted (sizing bug)");
        let n = self.cur;
        self.cur += 1;
        self.tx.wr(&self.nodes[n as usize], v)?;
        Ok(n)
    }
    #[inline]
    fn link(&mut self, i: usize) -> Res<Option<u32>> {
        Ok(self.tx.rd(&self.slots[i])?.link)
    }
    #[inline]
    fn set_link(&mut self, i: usize, l: Option<u32>) -> Res<()> {
        let s = self.tx.rd(&self.slots[i])?;
        self.tx.wr(&self.slots[i], SlotV { link: l, ..s })
    }
    #[inline]
    fn val(&mut self, i: usize) -> Res<i64> {
        Ok(self.tx.rd(&self.slots[i])?.val)
    }
    #[inline]
    fn set_val(&mut self, i: usize, v: i64) -> Res<()> {
        let s = self.tx.rd(&self.slots[i])?;
        self.tx.wr(&self.slots[i], SlotV { val: v, ..s })
    }
}

fn enter_arena(layout: &Layout, t: usize) {
    NEXT.with(|n| n.set(layout.range(t)));
}

// ---------------------------------------------------------------------------------------
// Plain cells: sequential, Mutex, RwLock.

/// A cell with no synchronisation; the engine that owns it provides the exclusion.
pub struct RawCell<T>(UnsafeCell<T>);
// SAFETY: RawCells are only accessed by the engines below, which either run on one thread
// (Seq: the runner refuses more) or hold a lock that excludes writers for every access.
unsafe impl<T: Send> Sync for RawCell<T> {}

/// The transaction of the plain-cell engines: nothing.
pub struct RawTx<'a>(PhantomData<&'a ()>);

impl<'a> CellTx<'a> for RawTx<'a> {
    type Var<T: Cellable> = RawCell<T>;
    #[inline(always)]
    fn rd<T: Cellable>(&mut self, v: &'a RawCell<T>) -> Res<T> {
        // SAFETY: see `RawCell`: no other thread writes while we hold the engine's exclusion.
        Ok(unsafe { *v.0.get() })
    }
    #[inline(always)]
    fn wr<T: Cellable>(&mut self, v: &'a RawCell<T>, x: T) -> Res<()> {
        // SAFETY: see `RawCell`: we hold exclusive access.
        unsafe { *v.0.get() = x };
        Ok(())
    }
}

fn raw_arena(layout: &Layout) -> (Vec<RawCell<NodeV<u32>>>, Vec<RawCell<SlotV>>) {
    (
        (0..layout.nodes())
            .map(|_| RawCell(UnsafeCell::new(NodeV::leaf(0, 0, false))))
            .collect(),
        (0..layout.slots)
            .map(|_| RawCell(UnsafeCell::new(SlotV::default())))
            .collect(),
    )
}

fn never_aborts<T>(r: Res<T>) -> T {
    r.unwrap_or_else(|_| unreachable!("plain cells never abort"))
}

/// The plain sequential program: no STM, no locks. Single thread only.
pub struct Seq {
    nodes: Vec<RawCell<NodeV<u32>>>,
    slots: Vec<RawCell<SlotV>>,
    layout: Layout,
}

impl Seq {
    /// An arena for `layout`.
    ///
    /// # Panics
    /// If `layout.threads > 1`: the sequential program has no synchronisation.
    pub fn new(layout: &Layout) -> Seq {
        assert_eq!(
            layout.threads, 1,
            "the sequential program runs on one thread"
        );
        let (nodes, slots) = raw_arena(layout);
        Seq {
            nodes,
            slots,
            layout: *layout,
        }
    }
}

impl Engine for Seq {
    #[inline]
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let mut c = ArenaCtx::new(RawTx(PhantomData), &self.nodes, &self.slots);
        let r = never_aborts(c.run(f));
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.layout, t)
    }
}

/// One global `std::sync::Mutex` around the whole heap.
pub struct MutexEngine {
    lock: Mutex<()>,
    nodes: Vec<RawCell<NodeV<u32>>>,
    slots: Vec<RawCell<SlotV>>,
    layout: Layout,
}

impl MutexEngine {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        let (nodes, slots) = raw_arena(layout);
        MutexEngine {
            lock: Mutex::new(()),
            nodes,
            slots,
            layout: *layout,
        }
    }
}

impl Engine for MutexEngine {
    #[inline]
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let _g = self.lock.lock().unwrap();
        let mut c = ArenaCtx::new(RawTx(PhantomData), &self.nodes, &self.slots);
        let r = never_aborts(c.run(f));
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.layout, t)
    }
}

/// One global `std::sync::RwLock`: read-only operations share it.
pub struct RwLockEngine {
    lock: RwLock<()>,
    nodes: Vec<RawCell<NodeV<u32>>>,
    slots: Vec<RawCell<SlotV>>,
    layout: Layout,
}

impl RwLockEngine {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        let (nodes, slots) = raw_arena(layout);
        RwLockEngine {
            lock: RwLock::new(()),
            nodes,
            slots,
            layout: *layout,
        }
    }
}

impl Engine for RwLockEngine {
    #[inline]
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        // A read-only operation never writes a cell (the workloads' contract), so sharing the
        // lock with other readers keeps RawCell's exclusion rule.
        let r = if f.read_only() {
            let _g = self.lock.read().unwrap();
            let mut c = ArenaCtx::new(RawTx(PhantomData), &self.nodes, &self.slots);
            never_aborts(c.run(f))
        } else {
            let _g = self.lock.write().unwrap();
            let mut c = ArenaCtx::new(RawTx(PhantomData), &self.nodes, &self.slots);
            never_aborts(c.run(f))
        };
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.layout, t)
    }
}

// ---------------------------------------------------------------------------------------
// stm 0.4

/// A transaction of the `stm` 0.4 crate.
pub struct Stm04Tx<'t>(&'t mut stm::Transaction);

impl<'a> CellTx<'a> for Stm04Tx<'_> {
    type Var<T: Cellable> = stm::TVar<T>;
    #[inline]
    fn rd<T: Cellable>(&mut self, v: &'a stm::TVar<T>) -> Res<T> {
        v.read(self.0).map_err(|_| Abort)
    }
    #[inline]
    fn wr<T: Cellable>(&mut self, v: &'a stm::TVar<T>, x: T) -> Res<()> {
        v.write(self.0, x).map_err(|_| Abort)
    }
}

/// The `stm` crate, version 0.4 (a TVar per node; `stm::atomically`).
pub struct Stm04(Layout, Vec<stm::TVar<NodeV<u32>>>, Vec<stm::TVar<SlotV>>);

impl Stm04 {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        Stm04(
            *layout,
            (0..layout.nodes())
                .map(|_| stm::TVar::new(NodeV::leaf(0, 0, false)))
                .collect(),
            (0..layout.slots)
                .map(|_| stm::TVar::new(SlotV::default()))
                .collect(),
        )
    }
}

impl Engine for Stm04 {
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let r = stm::atomically(|t| {
            let mut c = ArenaCtx::new(Stm04Tx(t), &self.1, &self.2);
            c.run(f).map_err(|_| stm::StmError::Failure)
        });
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.0, t)
    }
}

// ---------------------------------------------------------------------------------------
// fast-stm

/// A transaction of the `fast-stm` crate.
pub struct FastTx<'t>(&'t mut fast_stm::Transaction);

impl<'a> CellTx<'a> for FastTx<'_> {
    type Var<T: Cellable> = fast_stm::TVar<T>;
    #[inline]
    fn rd<T: Cellable>(&mut self, v: &'a fast_stm::TVar<T>) -> Res<T> {
        v.read(self.0).map_err(|_| Abort)
    }
    #[inline]
    fn wr<T: Cellable>(&mut self, v: &'a fast_stm::TVar<T>, x: T) -> Res<()> {
        v.write(self.0, x).map_err(|_| Abort)
    }
}

/// The `fast-stm` crate (the maintained fork of `stm`).
pub struct FastStm(
    Layout,
    Vec<fast_stm::TVar<NodeV<u32>>>,
    Vec<fast_stm::TVar<SlotV>>,
);

impl FastStm {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        FastStm(
            *layout,
            (0..layout.nodes())
                .map(|_| fast_stm::TVar::new(NodeV::leaf(0, 0, false)))
                .collect(),
            (0..layout.slots)
                .map(|_| fast_stm::TVar::new(SlotV::default()))
                .collect(),
        )
    }
}

impl Engine for FastStm {
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let r = fast_stm::atomically(|t| {
            let mut c = ArenaCtx::new(FastTx(t), &self.1, &self.2);
            c.run(f).map_err(|_| fast_stm::StmError::Failure)
        });
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.0, t)
    }
}

// ---------------------------------------------------------------------------------------
// kovan-stm

/// A transaction of the `kovan-stm` crate.
pub struct KovanTx<'t, 'g>(&'t mut kovan_stm::Transaction<'g>);

impl<'a> CellTx<'a> for KovanTx<'_, '_> {
    type Var<T: Cellable> = kovan_stm::TVar<T>;
    #[inline]
    fn rd<T: Cellable>(&mut self, v: &'a kovan_stm::TVar<T>) -> Res<T> {
        self.0.load(v).map_err(|_| Abort)
    }
    #[inline]
    fn wr<T: Cellable>(&mut self, v: &'a kovan_stm::TVar<T>, x: T) -> Res<()> {
        self.0.store(v, x).map_err(|_| Abort)
    }
}

/// The `kovan-stm` crate, version 0.2.0 (TL2 with a global version clock).
pub struct Kovan(
    Layout,
    kovan_stm::Stm,
    Vec<kovan_stm::TVar<NodeV<u32>>>,
    Vec<kovan_stm::TVar<SlotV>>,
);

impl Kovan {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        let stm = kovan_stm::Stm::new();
        let nodes = (0..layout.nodes())
            .map(|_| stm.tvar(NodeV::leaf(0, 0, false)))
            .collect();
        let slots = (0..layout.slots)
            .map(|_| stm.tvar(SlotV::default()))
            .collect();
        Kovan(*layout, stm, nodes, slots)
    }
}

impl Engine for Kovan {
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let r = self.1.atomically(|t| {
            let mut c = ArenaCtx::new(KovanTx(t), &self.2, &self.3);
            c.run(f).map_err(|_| kovan_stm::StmError::Retry)
        });
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.0, t)
    }
}

// ---------------------------------------------------------------------------------------
// xstm

/// A transaction of the `xstm` crate.
pub struct XTx<'t, 'a>(&'t mut xstm::Context<'a>);

impl<'a> CellTx<'a> for XTx<'_, 'a> {
    type Var<T: Cellable> = xstm::TVar<T>;
    #[inline]
    fn rd<T: Cellable>(&mut self, v: &'a xstm::TVar<T>) -> Res<T> {
        self.0.read(v).map_err(|_| Abort)
    }
    #[inline]
    fn wr<T: Cellable>(&mut self, v: &'a xstm::TVar<T>, x: T) -> Res<()> {
        self.0.write(v, x).map_err(|_| Abort)
    }
}

/// `xstm`'s transactions are values of a trait; this one runs a closure.
struct XRun<'a, F>(F, PhantomData<&'a ()>);

impl<'a, R, F> xstm::Transaction for XRun<'a, F>
where
    F: Fn(&mut xstm::Context<'a>) -> Result<R, xstm::StmError>,
{
    type Output = R;
    fn atomically<'this: 'var, 'context, 'var>(
        &'this self,
        context: &'context mut xstm::Context<'var>,
    ) -> Result<R, xstm::StmError> {
        // SAFETY: `'a: 'this: 'var` (self borrows for 'this and holds 'a), so every cell the
        // closure hands to the context (borrowed for 'a) outlives the context's 'var; values
        // come out by copy, never as references, so no reference outlives its borrow.
        let context: &mut xstm::Context<'a> =
            unsafe { &mut *(context as *mut xstm::Context<'var>).cast::<xstm::Context<'a>>() };
        (self.0)(context)
    }
}

fn xrun<'a, R, G>(g: G) -> XRun<'a, G>
where
    G: Fn(&mut xstm::Context<'a>) -> Result<R, xstm::StmError>,
{
    XRun(g, PhantomData)
}

/// The `xstm` crate (TL2; cells hold `Copy` values).
pub struct Xstm(
    Layout,
    xstm::Stm,
    Vec<xstm::TVar<NodeV<u32>>>,
    Vec<xstm::TVar<SlotV>>,
);

impl Xstm {
    /// An arena for `layout`.
    pub fn new(layout: &Layout) -> Self {
        Xstm(
            *layout,
            xstm::Stm::new(),
            (0..layout.nodes())
                .map(|_| xstm::TVar::new(NodeV::leaf(0, 0, false)))
                .collect(),
            (0..layout.slots)
                .map(|_| xstm::TVar::new(SlotV::default()))
                .collect(),
        )
    }
}

impl Engine for Xstm {
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        let r = self.1.atomically(xrun(|t| {
            let mut c = ArenaCtx::new(XTx(t), &self.2, &self.3);
            c.run(f).map_err(|_| xstm::StmError::Retry)
        }));
        publish();
        r
    }
    fn enter(&self, t: usize) {
        enter_arena(&self.0, t)
    }
}
