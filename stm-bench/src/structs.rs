//! The shared data structures, written once against [`Ctx`]: a sorted linked list, a hash
//! map with separate chaining, a left-leaning red-black tree. All three are maps from `u64`
//! to `u64` with the same three operations (`get`, `put`, `del`) and a `dump` that walks the
//! whole structure and checks its invariants.

use crate::ctx::{Abort, Ctx, NodeV, Res};

/// Which structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sorted singly linked list (slot 0 holds the head; nodes chain through `right`).
    List,
    /// A hash map: `buckets` slots, chains through `right`.
    Hash {
        /// Number of buckets (slots `0..buckets`).
        buckets: usize,
    },
    /// A left-leaning red-black tree (slot 0 holds the root).
    Tree,
}

/// Longer than any chain of the workloads (a list holds at most its key range): only a
/// zombie transaction of an STM without opacity can walk this far (through a cycle).
const MAX_CHAIN: u32 = 1 << 20;

/// The bucket of `key`.
pub fn bucket(key: u64, buckets: usize) -> usize {
    ((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) % buckets as u64) as usize
}

// ---- list / hash chains ---------------------------------------------------------------

/// What [`chain_find`] found: the predecessor, and the node at or after the key with its value.
type Found<C> = (
    Option<<C as Ctx>::L>,
    Option<(<C as Ctx>::L, NodeV<<C as Ctx>::L>)>,
);

/// In the chain starting at slot `s`: the last node with a key below `key` and the node
/// after it.
fn chain_find<C: Ctx>(c: &mut C, s: usize, key: u64) -> Res<Found<C>> {
    let mut prev = None;
    let mut cur = c.link(s)?;
    let mut steps = 0u32;
    while let Some(n) = cur {
        steps += 1;
        if steps > MAX_CHAIN {
            return Err(Abort);
        }
        let v = c.node(n)?;
        if v.key >= key {
            return Ok((prev, Some((n, v))));
        }
        prev = Some(n);
        cur = v.right;
    }
    Ok((prev, None))
}

fn chain_get<C: Ctx>(c: &mut C, s: usize, key: u64) -> Res<Option<u64>> {
    match chain_find(c, s, key)? {
        (_, Some((_, v))) if v.key == key => Ok(Some(v.val)),
        _ => Ok(None),
    }
}

fn chain_put<C: Ctx>(c: &mut C, s: usize, key: u64, val: u64) -> Res<Option<u64>> {
    let (prev, cur) = chain_find(c, s, key)?;
    let next = match cur {
        Some((n, v)) if v.key == key => {
            c.set_nval(n, val)?;
            return Ok(Some(v.val));
        }
        Some((n, _)) => Some(n),
        None => None,
    };
    let fresh = c.alloc(NodeV {
        right: next,
        ..NodeV::leaf(key, val, false)
    })?;
    match prev {
        Some(p) => c.set_right(p, Some(fresh))?,
        None => c.set_link(s, Some(fresh))?,
    }
    Ok(None)
}

fn chain_del<C: Ctx>(c: &mut C, s: usize, key: u64) -> Res<Option<u64>> {
    let (prev, cur) = chain_find(c, s, key)?;
    match cur {
        Some((_, v)) if v.key == key => {
            match prev {
                Some(p) => c.set_right(p, v.right)?,
                None => c.set_link(s, v.right)?,
            }
            Ok(Some(v.val))
        }
        _ => Ok(None),
    }
}

fn chain_dump<C: Ctx>(c: &mut C, s: usize, out: &mut Vec<(u64, u64)>) -> Res<Result<(), String>> {
    let mut cur = c.link(s)?;
    let mut last = None;
    let mut steps = 0u32;
    while let Some(n) = cur {
        steps += 1;
        if steps > MAX_CHAIN {
            return Err(Abort);
        }
        let v = c.node(n)?;
        if last.is_some_and(|k| k >= v.key) {
            return Ok(Err(format!("chain {s} not sorted at key {}", v.key)));
        }
        last = Some(v.key);
        out.push((v.key, v.val));
        cur = v.right;
    }
    Ok(Ok(()))
}

// ---- left-leaning red-black tree (Sedgewick) ------------------------------------------

fn is_red<C: Ctx>(c: &mut C, n: Option<C::L>) -> Res<bool> {
    match n {
        Some(n) => Ok(c.node(n)?.red),
        None => Ok(false),
    }
}

fn left_of<C: Ctx>(c: &mut C, n: Option<C::L>) -> Res<Option<C::L>> {
    match n {
        Some(n) => Ok(c.node(n)?.left),
        None => Ok(None),
    }
}

fn rotate_left<C: Ctx>(c: &mut C, h: C::L) -> Res<C::L> {
    let hv = c.node(h)?;
    let x = hv.right.expect("rotate_left needs a right child");
    let xv = c.node(x)?;
    c.set_node(
        h,
        NodeV {
            right: xv.left,
            red: true,
            ..hv
        },
    )?;
    c.set_node(
        x,
        NodeV {
            left: Some(h),
            red: hv.red,
            ..xv
        },
    )?;
    Ok(x)
}

fn rotate_right<C: Ctx>(c: &mut C, h: C::L) -> Res<C::L> {
    let hv = c.node(h)?;
    let x = hv.left.expect("rotate_right needs a left child");
    let xv = c.node(x)?;
    c.set_node(
        h,
        NodeV {
            left: xv.right,
            red: true,
            ..hv
        },
    )?;
    c.set_node(
        x,
        NodeV {
            right: Some(h),
            red: hv.red,
            ..xv
        },
    )?;
    Ok(x)
}

fn flip_colors<C: Ctx>(c: &mut C, h: C::L) -> Res<()> {
    let hv = c.node(h)?;
    c.set_red(h, !hv.red)?;
    for k in [hv.left, hv.right].into_iter().flatten() {
        let kr = c.node(k)?.red;
        c.set_red(k, !kr)?;
    }
    Ok(())
}

fn balance<C: Ctx>(c: &mut C, mut h: C::L) -> Res<C::L> {
    let hv = c.node(h)?;
    if is_red(c, hv.right)? && !is_red(c, hv.left)? {
        h = rotate_left(c, h)?;
    }
    let hv = c.node(h)?;
    if is_red(c, hv.left)? {
        let ll = left_of(c, hv.left)?;
        if is_red(c, ll)? {
            h = rotate_right(c, h)?;
        }
    }
    let hv = c.node(h)?;
    if is_red(c, hv.left)? && is_red(c, hv.right)? {
        flip_colors(c, h)?;
    }
    Ok(h)
}

/// Sets `h.left` (or `h.right`) to `new`, writing only if it changed.
fn relink<C: Ctx>(c: &mut C, h: C::L, left: bool, new: Option<C::L>) -> Res<()> {
    let hv = c.node(h)?;
    if left && hv.left != new {
        c.set_left(h, new)?;
    } else if !left && hv.right != new {
        c.set_right(h, new)?;
    }
    Ok(())
}

/// Deeper than any balanced tree of `u64` keys: only an inconsistent snapshot (a zombie
/// transaction of an STM without opacity) can see a path this long, or a cycle.
const MAX_DEPTH: u32 = 160;

/// Gives up an attempt that sees an impossible shape (see [`MAX_DEPTH`]).
fn deeper(depth: u32) -> Res<u32> {
    if depth > MAX_DEPTH {
        Err(Abort)
    } else {
        Ok(depth + 1)
    }
}

fn tree_put_at<C: Ctx>(
    c: &mut C,
    depth: u32,
    h: Option<C::L>,
    key: u64,
    val: u64,
    old: &mut Option<u64>,
) -> Res<C::L> {
    let depth = deeper(depth)?;
    let Some(h) = h else {
        return c.alloc(NodeV::leaf(key, val, true));
    };
    let hv = c.node(h)?;
    if key < hv.key {
        let l = tree_put_at(c, depth, hv.left, key, val, old)?;
        relink(c, h, true, Some(l))?;
    } else if key > hv.key {
        let r = tree_put_at(c, depth, hv.right, key, val, old)?;
        relink(c, h, false, Some(r))?;
    } else {
        *old = Some(hv.val);
        c.set_nval(h, val)?;
        return Ok(h);
    }
    if old.is_some() {
        return Ok(h); // a replacement does not change the shape
    }
    balance(c, h)
}

fn move_red_left<C: Ctx>(c: &mut C, mut h: C::L) -> Res<C::L> {
    flip_colors(c, h)?;
    let hv = c.node(h)?;
    let rl = left_of(c, hv.right)?;
    if is_red(c, rl)? {
        let r = rotate_right(c, hv.right.expect("right child"))?;
        relink(c, h, false, Some(r))?;
        h = rotate_left(c, h)?;
        flip_colors(c, h)?;
    }
    Ok(h)
}

fn move_red_right<C: Ctx>(c: &mut C, mut h: C::L) -> Res<C::L> {
    flip_colors(c, h)?;
    let hv = c.node(h)?;
    let ll = left_of(c, hv.left)?;
    if is_red(c, ll)? {
        h = rotate_right(c, h)?;
        flip_colors(c, h)?;
    }
    Ok(h)
}

fn delete_min<C: Ctx>(c: &mut C, depth: u32, mut h: C::L) -> Res<Option<C::L>> {
    let depth = deeper(depth)?;
    let hv = c.node(h)?;
    let Some(l) = hv.left else {
        return Ok(None);
    };
    let ll = left_of(c, Some(l))?;
    if !is_red(c, Some(l))? && !is_red(c, ll)? {
        h = move_red_left(c, h)?;
    }
    let hl = c.node(h)?.left.expect("left child");
    let nl = delete_min(c, depth, hl)?;
    relink(c, h, true, nl)?;
    Ok(Some(balance(c, h)?))
}

/// Deletes `key`, which is in the subtree `h`.
fn tree_del_at<C: Ctx>(c: &mut C, depth: u32, mut h: C::L, key: u64) -> Res<Option<C::L>> {
    let depth = deeper(depth)?;
    let hv = c.node(h)?;
    if key < hv.key {
        let ll = left_of(c, hv.left)?;
        if !is_red(c, hv.left)? && !is_red(c, ll)? {
            h = move_red_left(c, h)?;
        }
        let hl = c.node(h)?.left.expect("key is in the left subtree");
        let nl = tree_del_at(c, depth, hl, key)?;
        relink(c, h, true, nl)?;
    } else {
        if is_red(c, hv.left)? {
            h = rotate_right(c, h)?;
        }
        let hv = c.node(h)?;
        if key == hv.key && hv.right.is_none() {
            return Ok(None);
        }
        let rl = left_of(c, hv.right)?;
        if !is_red(c, hv.right)? && !is_red(c, rl)? {
            h = move_red_right(c, h)?;
        }
        let hv = c.node(h)?;
        let hr = hv.right.expect("right child");
        if key == hv.key {
            // Replace h's entry by its successor's, then delete the successor.
            let mut m = hr;
            let mut d = depth;
            while let Some(l) = c.node(m)?.left {
                d = deeper(d)?;
                m = l;
            }
            let mv = c.node(m)?;
            let nr = delete_min(c, depth, hr)?;
            let hv = c.node(h)?;
            c.set_node(
                h,
                NodeV {
                    key: mv.key,
                    val: mv.val,
                    right: nr,
                    ..hv
                },
            )?;
        } else {
            let nr = tree_del_at(c, depth, hr, key)?;
            relink(c, h, false, nr)?;
        }
    }
    Ok(Some(balance(c, h)?))
}

fn tree_get<C: Ctx>(c: &mut C, key: u64) -> Res<Option<u64>> {
    let mut cur = c.link(0)?;
    let mut depth = 0;
    while let Some(n) = cur {
        depth = deeper(depth)?;
        let v = c.node(n)?;
        if key < v.key {
            cur = v.left;
        } else if key > v.key {
            cur = v.right;
        } else {
            return Ok(Some(v.val));
        }
    }
    Ok(None)
}

fn tree_put<C: Ctx>(c: &mut C, key: u64, val: u64) -> Res<Option<u64>> {
    let root = c.link(0)?;
    let mut old = None;
    let r = tree_put_at(c, 0, root, key, val, &mut old)?;
    if Some(r) != root {
        c.set_link(0, Some(r))?;
    }
    if c.node(r)?.red {
        c.set_red(r, false)?;
    }
    Ok(old)
}

fn tree_del<C: Ctx>(c: &mut C, key: u64) -> Res<Option<u64>> {
    let Some(old) = tree_get(c, key)? else {
        return Ok(None);
    };
    let root = c.link(0)?.expect("the key is in the tree");
    let rv = c.node(root)?;
    if !is_red(c, rv.left)? && !is_red(c, rv.right)? {
        c.set_red(root, true)?;
    }
    let r = tree_del_at(c, 0, root, key)?;
    if r != Some(root) {
        c.set_link(0, r)?;
    }
    if let Some(r) = r {
        if c.node(r)?.red {
            c.set_red(r, false)?;
        }
    }
    Ok(Some(old))
}

/// Walks the subtree `n` in order; returns its black height or an invariant violation.
fn tree_walk<C: Ctx>(
    c: &mut C,
    depth: u32,
    n: Option<C::L>,
    parent_red: bool,
    out: &mut Vec<(u64, u64)>,
) -> Res<Result<u32, String>> {
    let depth = deeper(depth)?;
    let Some(n) = n else { return Ok(Ok(1)) };
    let v = c.node(n)?;
    if v.red && parent_red {
        return Ok(Err(format!("two red nodes in a row at key {}", v.key)));
    }
    if is_red(c, v.right)? {
        return Ok(Err(format!("red right link at key {}", v.key)));
    }
    let lh = match tree_walk(c, depth, v.left, v.red, out)? {
        Ok(h) => h,
        e => return Ok(e),
    };
    if out.last().is_some_and(|&(k, _)| k >= v.key) {
        return Ok(Err(format!("keys out of order at {}", v.key)));
    }
    out.push((v.key, v.val));
    let rh = match tree_walk(c, depth, v.right, v.red, out)? {
        Ok(h) => h,
        e => return Ok(e),
    };
    if lh != rh {
        return Ok(Err(format!("unequal black heights under key {}", v.key)));
    }
    Ok(Ok(lh + u32::from(!v.red)))
}

// ---- the three operations --------------------------------------------------------------

impl Kind {
    /// The slots the structure uses: its buckets (a hash map), or the one root.
    pub fn buckets(self) -> usize {
        match self {
            Kind::Hash { buckets } => buckets,
            Kind::List | Kind::Tree => 1,
        }
    }

    /// The value of `key`.
    pub fn get<C: Ctx>(self, c: &mut C, key: u64) -> Res<Option<u64>> {
        match self {
            Kind::List => chain_get(c, 0, key),
            Kind::Hash { buckets } => chain_get(c, bucket(key, buckets), key),
            Kind::Tree => tree_get(c, key),
        }
    }
    /// Sets the value of `key`; returns the previous one.
    pub fn put<C: Ctx>(self, c: &mut C, key: u64, val: u64) -> Res<Option<u64>> {
        match self {
            Kind::List => chain_put(c, 0, key, val),
            Kind::Hash { buckets } => chain_put(c, bucket(key, buckets), key, val),
            Kind::Tree => tree_put(c, key, val),
        }
    }
    /// Removes `key`; returns its value.
    pub fn del<C: Ctx>(self, c: &mut C, key: u64) -> Res<Option<u64>> {
        match self {
            Kind::List => chain_del(c, 0, key),
            Kind::Hash { buckets } => chain_del(c, bucket(key, buckets), key),
            Kind::Tree => tree_del(c, key),
        }
    }
    /// Every entry in key order, after checking the structure's invariants.
    pub fn dump<C: Ctx>(self, c: &mut C) -> Res<Result<Vec<(u64, u64)>, String>> {
        let mut out = Vec::new();
        match self {
            Kind::List => {
                if let Err(e) = chain_dump(c, 0, &mut out)? {
                    return Ok(Err(e));
                }
            }
            Kind::Hash { buckets } => {
                for b in 0..buckets {
                    let start = out.len();
                    if let Err(e) = chain_dump(c, b, &mut out)? {
                        return Ok(Err(e));
                    }
                    if let Some(&(k, _)) =
                        out[start..].iter().find(|&&(k, _)| bucket(k, buckets) != b)
                    {
                        return Ok(Err(format!("key {k} in the wrong bucket {b}")));
                    }
                }
                out.sort_unstable();
            }
            Kind::Tree => {
                let root = c.link(0)?;
                if is_red(c, root)? {
                    return Ok(Err("red root".into()));
                }
                if let Err(e) = tree_walk(c, 0, root, false, &mut out)? {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(out))
    }
}
