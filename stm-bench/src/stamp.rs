//! Two STAMP-style workloads, written from the STAMP suite's descriptions (not its code)
//! against [`Ctx`], so every implementation runs the same program.
//!
//! * **vacation**: a travel reservation manager. Three tables of items (cars, flights, rooms:
//!   each item has a total, a free count and a price) and a table of customers, each with a
//!   chain of reservations. Client tasks: *make a reservation* (look up `QUERIES` random
//!   items, pick the most expensive free one of each kind, reserve them for a customer),
//!   *delete a customer* (release every reservation), *update the tables* (add capacity or
//!   remove unreserved items). STAMP's low-contention mix: 2 queries, 90% of the items
//!   queried, 98% reservations. All tables live in one hash map ([`tables`]), keyed by
//!   a kind tag and an id. Checked: every item's `total - free` equals the reservations that
//!   name it, every reservation is in its customer's chain, and the free counts are never
//!   negative.
//! * **kmeans**: points assigned to the nearest of `CLUSTERS` fixed centres (pure
//!   computation, outside the transaction, as STAMP reads the previous iteration's centres),
//!   then one transaction per point adds it to its cluster's accumulators (`DIMS` sums and a
//!   count). Checked: the accumulators equal the sums the threads computed.

use std::collections::BTreeMap;

use crate::ctx::{Ctx, Res, TxFn};
use crate::structs::Kind;
use crate::workloads::Rng;

/// Items per table (and customers) of a full run.
pub const RELATIONS: u64 = 16_384;
/// Items looked up per reservation.
const QUERIES: usize = 2;
/// Percent of the items that queries draw from.
const QUERY_RANGE: u64 = 90;
/// Percent of tasks that make a reservation (the rest: half delete a customer, half update
/// the tables).
const USER: u64 = 98;
/// Capacity of a new item, and what an update adds.
const CAPACITY: u64 = 100;

/// The map holding every table, for `relations` items per table: four buckets per item of
/// a table.
pub fn tables(relations: u64) -> Kind {
    Kind::Hash {
        buckets: 4 * relations as usize,
    }
}

const CUSTOMER: u64 = 3;
const RESERVATION: u64 = 4;

/// The key of item `id` of kind `kind` (0 car, 1 flight, 2 room).
fn item_key(kind: u64, id: u64) -> u64 {
    (kind + 1) << 56 | id
}
fn customer_key(id: u64) -> u64 {
    (CUSTOMER + 1) << 56 | id
}
/// A reservation of item (`kind`, `id`) by customer `c`.
fn reservation_key(c: u64, kind: u64, id: u64) -> u64 {
    (RESERVATION + 1) << 56 | c << 24 | kind << 20 | id
}
fn reservation_parts(key: u64) -> (u64, u64, u64) {
    ((key >> 24) & 0xFFFF_FFFF, (key >> 20) & 0xF, key & 0xF_FFFF)
}

/// An item's record: total, free and price, 20 bits each.
fn pack(total: u64, free: u64, price: u64) -> u64 {
    total << 40 | free << 20 | price
}
fn unpack(v: u64) -> (u64, u64, u64) {
    (v >> 40, (v >> 20) & 0xF_FFFF, v & 0xF_FFFF)
}

/// Fills the tables (of `relations` items): items `lo..hi` of every kind, and customers
/// `lo..hi` with no reservation; prices from the seed.
pub struct VacationSetup(pub std::ops::Range<u64>, pub u64, pub u64);
impl TxFn for VacationSetup {
    type Out = ();
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        let mut rng = Rng::new(self.1);
        let map = tables(self.2);
        for id in self.0.clone() {
            for kind in 0..3 {
                let price = 50 + rng.below(450);
                map.put(c, item_key(kind, id), pack(CAPACITY, CAPACITY, price))?;
            }
            map.put(c, customer_key(id), 0)?;
        }
        Ok(())
    }
}

/// One client task on tables of `relations` items (the last field of each variant).
pub enum Task {
    /// Customer, and the items (kind, id) to look up.
    Reserve(u64, [(u64, u64); QUERIES], u64),
    /// Customer.
    Delete(u64, u64),
    /// Items (kind, id), and for each whether to add capacity (else remove it if
    /// unreserved), and its price if it is added.
    Update([(u64, u64, bool, u64); QUERIES], u64),
}

impl Task {
    /// A random task, with STAMP's low-contention mix.
    pub fn random(rng: &mut Rng, relations: u64) -> Task {
        let query = relations * QUERY_RANGE / 100;
        let op = rng.below(100);
        if op < USER {
            let c = rng.below(relations);
            let items = std::array::from_fn(|_| (rng.below(3), rng.below(query)));
            Task::Reserve(c, items, relations)
        } else if op < USER + (100 - USER) / 2 {
            Task::Delete(rng.below(relations), relations)
        } else {
            let items = std::array::from_fn(|_| {
                (
                    rng.below(3),
                    rng.below(query),
                    rng.below(2) == 0,
                    50 + rng.below(450),
                )
            });
            Task::Update(items, relations)
        }
    }

    fn relations(&self) -> u64 {
        match *self {
            Task::Reserve(_, _, r) | Task::Delete(_, r) | Task::Update(_, r) => r,
        }
    }
}

impl TxFn for Task {
    /// Reservations made (or released, negative).
    type Out = i64;
    fn call<C: Ctx>(&self, c: &mut C) -> Res<i64> {
        let map = tables(self.relations());
        match self {
            Task::Reserve(customer, queries, _) => {
                // The most expensive free item of each kind among those looked up.
                let mut best: [Option<(u64, u64)>; 3] = [None; 3];
                for &(kind, id) in queries {
                    if let Some(v) = map.get(c, item_key(kind, id))? {
                        let (_, free, price) = unpack(v);
                        let slot = &mut best[kind as usize];
                        if free > 0 && slot.is_none_or(|(_, p)| price > p) {
                            *slot = Some((id, price));
                        }
                    }
                }
                if best.iter().all(Option::is_none) {
                    return Ok(0);
                }
                let ck = customer_key(*customer);
                let mut head = match map.get(c, ck)? {
                    Some(h) => h,
                    None => {
                        map.put(c, ck, 0)?;
                        0
                    }
                };
                let mut made = 0;
                for (kind, b) in best.iter().enumerate() {
                    let Some((id, _)) = *b else { continue };
                    let kind = kind as u64;
                    let rk = reservation_key(*customer, kind, id);
                    if map.get(c, rk)?.is_some() {
                        continue; // this customer holds this item already
                    }
                    let key = item_key(kind, id);
                    let (total, free, price) = unpack(map.get(c, key)?.expect("looked up above"));
                    map.put(c, key, pack(total, free - 1, price))?;
                    map.put(c, rk, head)?;
                    head = rk;
                    made += 1;
                }
                map.put(c, ck, head)?;
                Ok(made)
            }
            Task::Delete(customer, _) => {
                let ck = customer_key(*customer);
                let Some(mut r) = map.get(c, ck)? else {
                    return Ok(0);
                };
                let mut released = 0;
                while r != 0 {
                    let (_, kind, id) = reservation_parts(r);
                    let key = item_key(kind, id);
                    let (total, free, price) =
                        unpack(map.get(c, key)?.expect("a reserved item is never removed"));
                    map.put(c, key, pack(total, free + 1, price))?;
                    r = map.del(c, r)?.expect("a reservation in the chain exists");
                    released += 1;
                }
                map.del(c, ck)?;
                Ok(-released)
            }
            Task::Update(items, _) => {
                for &(kind, id, add, price) in items {
                    let key = item_key(kind, id);
                    match (map.get(c, key)?.map(unpack), add) {
                        (Some((total, free, price)), true) => {
                            map.put(c, key, pack(total + CAPACITY, free + CAPACITY, price))?;
                        }
                        (None, true) => {
                            map.put(c, key, pack(CAPACITY, CAPACITY, price))?;
                        }
                        (Some((total, free, _)), false) if total == free => {
                            map.del(c, key)?;
                        }
                        _ => {}
                    }
                }
                Ok(0)
            }
        }
    }
}

/// Checks the tables' consistency from a dump of the map.
pub fn check_vacation(dump: &[(u64, u64)], made: i64) -> Result<String, String> {
    let tag = |k: u64| (k >> 56) - 1;
    let mut reserved: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut reservations = BTreeMap::new();
    let mut customers = BTreeMap::new();
    let mut items = BTreeMap::new();
    for &(k, v) in dump {
        match tag(k) {
            0..=2 => {
                items.insert((tag(k), k & 0xFF_FFFF_FFFF), v);
            }
            CUSTOMER => {
                customers.insert(k & 0xFF_FFFF_FFFF, v);
            }
            RESERVATION => {
                reservations.insert(k, v);
                let (_, kind, id) = reservation_parts(k);
                *reserved.entry((kind, id)).or_default() += 1;
            }
            t => return Err(format!("a key of unknown kind {t}")),
        }
    }
    for (&(kind, id), &v) in &items {
        let (total, free, _) = unpack(v);
        let held = reserved.get(&(kind, id)).copied().unwrap_or(0);
        if free > total || total - free != held {
            return Err(format!(
                "item {kind}/{id}: total {total}, free {free}, but {held} reservations"
            ));
        }
    }
    // Every reservation is in exactly one chain: its customer's.
    let mut in_chains = 0u64;
    for (&c, &head) in &customers {
        let mut r = head;
        while r != 0 {
            let (owner, _, _) = reservation_parts(r);
            if owner != c {
                return Err(format!(
                    "customer {c}'s chain holds a reservation of {owner}"
                ));
            }
            r = *reservations
                .get(&r)
                .ok_or_else(|| format!("customer {c}'s chain names a missing reservation"))?;
            in_chains += 1;
        }
    }
    if in_chains != reservations.len() as u64 {
        return Err(format!(
            "{} reservations, {in_chains} in customers' chains",
            reservations.len()
        ));
    }
    if made != reservations.len() as i64 {
        return Err(format!(
            "the tasks made {made} reservations net, the tables hold {}",
            reservations.len()
        ));
    }
    Ok(format!(
        "{} items, {} customers, {} reservations: every count consistent",
        items.len(),
        customers.len(),
        reservations.len()
    ))
}

/// Clusters.
pub const CLUSTERS: usize = 40;
/// Dimensions of a point.
pub const DIMS: usize = 8;

/// The fixed centres (the previous iteration's, in STAMP), integer coordinates.
pub fn centres() -> Vec<[i64; DIMS]> {
    let mut rng = Rng::new(4242);
    (0..CLUSTERS)
        .map(|_| std::array::from_fn(|_| rng.below(1000) as i64))
        .collect()
}

/// A random point and its nearest centre.
pub fn point(rng: &mut Rng, centres: &[[i64; DIMS]]) -> ([i64; DIMS], usize) {
    let p: [i64; DIMS] = std::array::from_fn(|_| rng.below(1000) as i64);
    let nearest = centres
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| {
            c.iter()
                .zip(&p)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<i64>()
        })
        .map_or(0, |(k, _)| k);
    (p, nearest)
}

/// Adds a point to its cluster's accumulators: slots `k * (DIMS + 1) ..`: the sums, then the
/// count.
pub struct AddPoint(pub [i64; DIMS], pub usize);
impl TxFn for AddPoint {
    type Out = ();
    fn call<C: Ctx>(&self, c: &mut C) -> Res<()> {
        let base = self.1 * (DIMS + 1);
        for (d, &x) in self.0.iter().enumerate() {
            let v = c.val(base + d)?;
            c.set_val(base + d, v + x)?;
        }
        let n = c.val(base + DIMS)?;
        c.set_val(base + DIMS, n + 1)
    }
}

/// Every accumulator.
pub struct ReadClusters;
impl TxFn for ReadClusters {
    type Out = Vec<i64>;
    fn read_only(&self) -> bool {
        true
    }
    fn call<C: Ctx>(&self, c: &mut C) -> Res<Vec<i64>> {
        (0..CLUSTERS * (DIMS + 1)).map(|i| c.val(i)).collect()
    }
}
