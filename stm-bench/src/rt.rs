//! Our runtime (`stm-runtime`), written the way its users write code: `#[stm::object]` types
//! linked by `Gc` handles, `#[stm::transactional]` accessors, `Stm::atomically`. The same
//! source is the `stm` implementation in a normal build and the `gil` implementation in a
//! build with `--features gil` (stm-runtime's GIL mode).

use stm::{Gc, Root, Stm, Tx};
use stm_runtime as stm;

use crate::ctx::{count_attempt, Ctx, Engine, NodeV, Res, TxFn};
use crate::engines::Layout;

/// A node in the shared heap.
#[stm::object]
pub struct RNode {
    key: u64,
    val: u64,
    left: Option<Gc<RNode>>,
    right: Option<Gc<RNode>>,
    red: bool,
}

/// A slot (root object): a link and a number.
#[stm::object]
pub struct RSlot {
    link: Option<Gc<RNode>>,
    val: i64,
}

#[stm::transactional]
#[inline(always)]
fn rn_get(n: Gc<RNode>) -> NodeV<Gc<RNode>> {
    NodeV {
        key: n.key,
        val: n.val,
        left: n.left,
        right: n.right,
        red: n.red,
    }
}

#[stm::transactional]
#[inline(always)]
fn rn_set(
    n: Gc<RNode>,
    key: u64,
    val: u64,
    left: Option<Gc<RNode>>,
    right: Option<Gc<RNode>>,
    red: bool,
) {
    n.key = key;
    n.val = val;
    n.left = left;
    n.right = right;
    n.red = red;
}

#[stm::transactional]
#[inline(always)]
fn rn_set_left(n: Gc<RNode>, l: Option<Gc<RNode>>) {
    n.left = l;
}

#[stm::transactional]
#[inline(always)]
fn rn_set_right(n: Gc<RNode>, l: Option<Gc<RNode>>) {
    n.right = l;
}

#[stm::transactional]
#[inline(always)]
fn rn_set_red(n: Gc<RNode>, red: bool) {
    n.red = red;
}

#[stm::transactional]
#[inline(always)]
fn rn_set_val(n: Gc<RNode>, val: u64) {
    n.val = val;
}

#[stm::transactional]
#[inline(always)]
fn rn_new(
    tx: &Tx,
    key: u64,
    val: u64,
    left: Option<Gc<RNode>>,
    right: Option<Gc<RNode>>,
    red: bool,
) -> Gc<RNode> {
    let _ = tx;
    Gc::new(RNode {
        key,
        val,
        left,
        right,
        red,
    })
}

#[stm::transactional]
#[inline(always)]
fn slot_link(s: Gc<RSlot>) -> Option<Gc<RNode>> {
    s.link
}

#[stm::transactional]
#[inline(always)]
fn slot_set_link(s: Gc<RSlot>, l: Option<Gc<RNode>>) {
    s.link = l;
}

#[stm::transactional]
#[inline(always)]
fn slot_val(s: Gc<RSlot>) -> i64 {
    s.val
}

#[stm::transactional]
#[inline(always)]
fn slot_set_val(s: Gc<RSlot>, v: i64) {
    s.val = v;
}

#[stm::transactional]
fn slot_new(tx: &Tx) -> Root<RSlot> {
    let s = Gc::new(RSlot { link: None, val: 0 });
    tx.root(s)
}

/// A link in our runtime: a `Gc` handle, compared by identity.
#[derive(Clone, Copy)]
pub struct H<'tx>(Gc<'tx, RNode>);

impl PartialEq for H<'_> {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(other.0)
    }
}
impl Eq for H<'_> {}
impl std::fmt::Debug for H<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[inline(always)]
fn h(l: Option<Gc<'_, RNode>>) -> Option<H<'_>> {
    l.map(H)
}
#[inline(always)]
fn g(l: Option<H<'_>>) -> Option<Gc<'_, RNode>> {
    l.map(|x| x.0)
}

/// The [`Ctx`] of our runtime: handles of one transaction.
pub struct RtCtx<'tx> {
    tx: &'tx Tx,
    slots: &'tx [Root<RSlot>],
}

impl<'tx> RtCtx<'tx> {
    #[inline(always)]
    fn slot(&self, i: usize) -> Gc<'tx, RSlot> {
        self.slots[i].get(self.tx)
    }
}

impl<'tx> Ctx for RtCtx<'tx> {
    type L = H<'tx>;
    #[inline(always)]
    fn node(&mut self, n: Self::L) -> Res<NodeV<Self::L>> {
        let v = rn_get(n.0);
        Ok(NodeV {
            key: v.key,
            val: v.val,
            left: h(v.left),
            right: h(v.right),
            red: v.red,
        })
    }
    #[inline(always)]
    fn set_node(&mut self, n: Self::L, v: NodeV<Self::L>) -> Res<()> {
        rn_set(n.0, v.key, v.val, g(v.left), g(v.right), v.red);
        Ok(())
    }
    #[inline(always)]
    fn alloc(&mut self, v: NodeV<Self::L>) -> Res<Self::L> {
        Ok(H(rn_new(
            self.tx,
            v.key,
            v.val,
            g(v.left),
            g(v.right),
            v.red,
        )))
    }
    #[inline(always)]
    fn link(&mut self, i: usize) -> Res<Option<Self::L>> {
        Ok(h(slot_link(self.slot(i))))
    }
    #[inline(always)]
    fn set_link(&mut self, i: usize, l: Option<Self::L>) -> Res<()> {
        slot_set_link(self.slot(i), g(l));
        Ok(())
    }
    #[inline(always)]
    fn val(&mut self, i: usize) -> Res<i64> {
        Ok(slot_val(self.slot(i)))
    }
    #[inline(always)]
    fn set_val(&mut self, i: usize, v: i64) -> Res<()> {
        slot_set_val(self.slot(i), v);
        Ok(())
    }
    #[inline(always)]
    fn set_left(&mut self, n: Self::L, l: Option<Self::L>) -> Res<()> {
        rn_set_left(n.0, g(l));
        Ok(())
    }
    #[inline(always)]
    fn set_right(&mut self, n: Self::L, l: Option<Self::L>) -> Res<()> {
        rn_set_right(n.0, g(l));
        Ok(())
    }
    #[inline(always)]
    fn set_red(&mut self, n: Self::L, red: bool) -> Res<()> {
        rn_set_red(n.0, red);
        Ok(())
    }
    #[inline(always)]
    fn set_nval(&mut self, n: Self::L, val: u64) -> Res<()> {
        rn_set_val(n.0, val);
        Ok(())
    }
}

/// Our runtime: one `Stm` with one segment per worker thread (and at least a given number).
pub struct Rt {
    stm: Stm,
    slots: Vec<Root<RSlot>>,
}

impl Rt {
    /// A runtime sized for `layout`, with one segment per thread and at least `segments`.
    pub fn new(layout: &Layout, segments: usize) -> Rt {
        // Nodes take 3 granules (48 bytes); leave room for the slots and for rolled-back
        // attempts' chunks.
        let nodes = layout.setup_nodes + layout.threads * layout.thread_nodes;
        let heap = ((nodes + layout.slots) * 64 + (64 << 20)).next_power_of_two();
        let stm = Stm::builder()
            .segments(layout.threads.max(segments).max(1))
            .heap_size(heap)
            .build()
            .expect("runtime");
        let fresh: Vec<Root<RSlot>> =
            stm.atomically(|tx| (0..layout.slots).map(|_| slot_new(tx)).collect());
        // Root the committed objects again: a root taken in the allocating transaction checks
        // a shared "did that transaction commit" cell on every `get` (one more cache miss per
        // slot access, 40% of a bank transfer in a profile); a root of a committed object
        // checks only a revision number.
        let slots = stm.atomically(|tx| fresh.iter().map(|r| tx.root(r.get(tx))).collect());
        Rt { stm, slots }
    }

    /// The runtime's statistics.
    pub fn stats(&self) -> stm::Stats {
        self.stm.stats()
    }
}

impl Engine for Rt {
    #[inline]
    fn atomically<F: TxFn>(&self, f: &F) -> F::Out {
        self.stm.atomically(|tx| {
            count_attempt();
            let mut c = RtCtx {
                tx,
                slots: &self.slots,
            };
            match f.call(&mut c) {
                Ok(r) => r,
                Err(_) => unreachable!("the runtime's accessors never report an abort"),
            }
        })
    }
}
