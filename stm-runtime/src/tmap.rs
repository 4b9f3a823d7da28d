//! `THashMap`: a hash map in the shared heap that conflicts per key, not per table (stmgc-c8's
//! hashtable gave PyPy the same property).
//!
//! A map built as one object, or as buckets in a card-marked vector, makes transactions on
//! different keys conflict: they write the same length field, or the same card of buckets.
//! Here every bucket is an object of its own (open addressing, linear probing, so a lookup
//! reads the buckets from the key's home to the first empty one), the bucket index (a
//! [`TVec`] of bucket handles) and the head are written only when the table is rehashed, and
//! the counts (keys, removed buckets) are kept in [`MAP_SHARDS`] counters, one per thread
//! number modulo their count. So two transactions conflict only when they touch the same
//! bucket: the same key, or keys whose probe paths meet, or when one rehashes the table.
//! Reading [`GcHashMap::len`] reads every counter (it conflicts with every insert and remove
//! committed meanwhile, as it must).
//!
//! The table is rehashed when an insert's probe path is longer than 16 buckets *and* keys and
//! removed buckets fill more than half of it: into a table with room for the keys at a load
//! of at most 1/2, leaving the removed buckets behind (so insert/remove churn does not grow
//! it). Keys whose hashes collide (a poor `Hash`, or keys chosen by an adversary: the hash is
//! SipHash with fixed keys, so a key's home bucket is the same in every run) make long probe
//! paths, slow but bounded in memory.
//!
//! Keys are plain data that hash (`u64`, tuples, your `#[derive(stm::Plain)]` types); values
//! are what a [`TVec`] holds (plain data with a `Default`, handles, optional handles). The
//! key's `Hash`, `Eq` and `Default` run in the middle of an operation: one that uses the same
//! map panics (as a `RefCell` borrowed twice), since the outer operation would overwrite it.

use std::cell::RefCell;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::marker::PhantomData;
use std::num::NonZeroU32;

use crate::handle::{Field, Gc, GcRef, Object, Plain, Tracer};
use crate::tqueue::thread_number;
use crate::tvec::{Element, GcVec, TVec};
use crate::tx::Tx;

/// Length counters per map: the most threads that insert and remove without meeting.
pub const MAP_SHARDS: usize = 16;

/// Buckets a new map starts with.
const START_BUCKETS: usize = 64;

/// A bucket's state.
const EMPTY: u32 = 0;
const FULL: u32 = 1;
const DELETED: u32 = 2;

/// The hash of a key: SipHash with fixed keys, so that a key's home bucket is the same in
/// every run (and no thread needs a random state).
fn hash<K: Hash>(key: &K) -> u64 {
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(key)
}

/// One bucket: a key and its value (`state` FULL), a key that was removed (DELETED, probes go
/// on past it), or nothing yet (EMPTY, probes stop).
#[repr(C)]
struct Bucket<K, S> {
    state: u32,
    key: K,
    value: S,
}

impl<K: Copy, S: Copy> Clone for Bucket<K, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: Copy, S: Copy> Copy for Bucket<K, S> {}

// SAFETY: Copy, 'static, fields are `Field`s whose alignment `alloc` checks (invariant 6); the
// value is reported (the key is plain data; invariant 8). A bucket that is not FULL holds the
// slot's default value, so nothing stale is kept alive or read.
unsafe impl<K: Plain, S: Field + Default> Object for Bucket<K, S> {
    fn trace(&self, tracer: &mut Tracer) {
        self.value.trace(tracer);
    }
}

type BucketOf<K, V> = Bucket<K, <V as Element>::Slot>;

/// A map's head object: the bucket index and its size, and the length counters. Written only
/// when the table grows.
#[repr(C)]
pub struct MapHead<K, V: Element> {
    buckets: TVec<GcRef<BucketOf<K, V>>>,
    /// Buckets - 1 (a power of two minus one).
    mask: u32,
    /// Granules of the counters, `[keys, removed buckets]` (`[i64; 2]`): one per thread
    /// number modulo their count.
    shards: [u32; MAP_SHARDS],
}

impl<K: Plain, V: Element> Clone for MapHead<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: Plain, V: Element> Copy for MapHead<K, V> {}

// SAFETY: Copy, 'static, aligned to 4 (invariant 6); the bucket index and every counter are
// reported, and through the index every bucket (invariant 8).
unsafe impl<K: Plain + Default, V: Element> Object for MapHead<K, V> {
    fn trace(&self, tracer: &mut Tracer) {
        self.buckets.trace(tracer);
        for &s in &self.shards {
            tracer.visit_granule(s);
        }
    }
}

/// The stored form of a map field: a handle to its head object.
#[repr(transparent)]
pub struct THashMap<K, V> {
    head: NonZeroU32,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for THashMap<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for THashMap<K, V> {}
impl<K, V> fmt::Debug for THashMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "THashMap@{:#x}", self.head)
    }
}

/// What a key of a [`THashMap`] must be: plain data that hashes and compares.
pub trait MapKey: Plain + Default + Hash + Eq {}
impl<K: Plain + Default + Hash + Eq> MapKey for K {}

// SAFETY: a stored map becomes a map of the transaction that read it, naming the same head
// object (invariant 3), which every snapshot containing the field's object also contains
// (invariant 8).
unsafe impl<K: MapKey, V: Element> Field for THashMap<K, V> {
    type Loaded<'tx> = GcHashMap<'tx, K, V>;
    #[inline]
    unsafe fn load(self, tx: &Tx) -> GcHashMap<'_, K, V> {
        GcHashMap {
            head: Gc::new(tx, self.head.get()),
        }
    }
    #[inline]
    unsafe fn store(m: GcHashMap<'_, K, V>) -> Self {
        THashMap {
            head: m.head.to_ref().granule(),
            _t: PhantomData,
        }
    }
    fn trace(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}

// SAFETY: reports the head object, through which every bucket and counter is reached
// (invariant 8).
unsafe impl<K: MapKey, V: Element> crate::macro_support::TraceField for THashMap<K, V> {
    fn trace_field(&self, tracer: &mut Tracer) {
        tracer.visit_granule(self.head.get());
    }
}

impl<K: MapKey, V: Element> THashMap<K, V> {
    /// A new, empty map allocated by `tx` (the same as [`GcHashMap::new`]): in an object
    /// literal, `Gc::new(Store { items: THashMap::new(tx), .. })`.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)] // the stored form is made by storing the loaded one
    pub fn new(tx: &Tx) -> GcHashMap<'_, K, V> {
        GcHashMap::new(tx)
    }
}

/// A hash map from `K` to `V` in the shared heap, as seen by the transaction `'tx`: `get`,
/// `insert`, `remove`, `contains_key`, `len`, `to_vec`. Transactions on different keys do not
/// conflict (see [`THashMap`](crate::THashMap)).
///
/// ```
/// use stm_runtime::{GcHashMap, Stm};
///
/// let stm = Stm::builder().segments(2).heap_size(16 << 20).build().unwrap();
/// let map = stm.atomically(|tx| tx.root(GcHashMap::<u64, u64>::new(tx).as_gc()));
/// std::thread::scope(|s| {
///     for t in 0..2u64 {
///         let (stm, map) = (&stm, &map);
///         // Each thread its own keys: their transactions do not conflict.
///         s.spawn(move || {
///             for k in 0..500 {
///                 stm.atomically(|tx| GcHashMap::from_root(tx, map).insert(2 * k + t, k));
///             }
///         });
///     }
/// });
/// stm.atomically(|tx| {
///     let m = GcHashMap::from_root(tx, &map);
///     assert_eq!(m.len(), 1000);
///     assert_eq!(m.get(&7), Some(3));
///     assert_eq!(m.remove(&7), Some(3));
///     assert!(!m.contains_key(&7));
/// });
/// ```
pub struct GcHashMap<'tx, K, V: Element> {
    head: Gc<'tx, MapHead<K, V>>,
}

impl<K, V: Element> Clone for GcHashMap<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V: Element> Copy for GcHashMap<'_, K, V> {}
impl<K, V: Element> fmt::Debug for GcHashMap<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcHashMap@{:#x}", self.head.granule)
    }
}

/// Where a probe ended.
enum Probe<'tx, K, S> {
    /// The key's bucket.
    Found(Gc<'tx, Bucket<K, S>>),
    /// The key is absent; it would go into this bucket (the first removed one on its probe
    /// path, or the empty one that ended it), after `probes` buckets read.
    Absent(Option<Gc<'tx, Bucket<K, S>>>, usize),
}

impl<'tx, K: MapKey, V: Element> GcHashMap<'tx, K, V> {
    /// A new, empty map allocated by `tx`.
    #[track_caller]
    pub fn new(tx: &'tx Tx) -> Self {
        let buckets = new_buckets::<K, V>(tx, START_BUCKETS, (K::default(), V::Slot::default()));
        let mut shards = [0u32; MAP_SHARDS];
        for s in &mut shards {
            *s = tx.alloc([0i64; 2]).granule;
        }
        let head = tx.alloc(MapHead {
            // SAFETY: the vector is this transaction's and goes straight into the head object
            // it allocates (invariant 8).
            buckets: unsafe { <TVec<_> as Field>::store(buckets) },
            mask: (START_BUCKETS - 1) as u32,
            shards,
        });
        GcHashMap { head }
    }

    /// The map's head object, to root it (`tx.root(m.as_gc())`) or compare identities.
    pub fn as_gc(self) -> Gc<'tx, MapHead<K, V>> {
        self.head
    }

    /// The map a root refers to.
    pub fn from_root(tx: &'tx Tx, root: &crate::Root<MapHead<K, V>>) -> Self {
        GcHashMap { head: root.get(tx) }
    }

    /// Whether two handles name the same map.
    pub fn ptr_eq(self, other: GcHashMap<'_, K, V>) -> bool {
        self.head.ptr_eq(other.head)
    }

    fn tx(self) -> &'tx Tx {
        self.head.tx()
    }

    fn index(self) -> (GcVec<'tx, GcRef<BucketOf<K, V>>>, usize) {
        // SAFETY: the projections point at fields of the head (invariant 19).
        unsafe {
            (
                self.head
                    .read_field(|p| std::ptr::addr_of_mut!((*p).buckets)),
                self.head.read_field(|p| std::ptr::addr_of_mut!((*p).mask)) as usize,
            )
        }
    }

    /// Refuses an operation on this map while another is running on this thread: the key
    /// type's `Hash`, `Eq` or `Default` (user code, called in the middle of an operation)
    /// used the map it is in. Like a `RefCell` borrow, the outer operation's view would go
    /// stale and its writes would overwrite the inner one's; a panic says so instead.
    fn enter(self) -> InUse {
        let me = self.head.granule;
        let reentered = BUSY.with(|b| {
            let mut b = b.borrow_mut();
            let reentered = b.contains(&me);
            if !reentered {
                b.push(me);
            }
            reentered
        });
        if reentered {
            panic!(
                "THashMap: the key type's `Hash`, `Eq` or `Default` used the map it is in, \
                 in the middle of an operation on it"
            );
        }
        InUse
    }

    /// Finds `key`'s bucket, or where it would go.
    fn probe(self, key: &K) -> Probe<'tx, K, V::Slot> {
        let (buckets, mask) = self.index();
        let mut i = hash(key) as usize & mask;
        let mut free = None;
        for probes in 1..=mask + 1 {
            let b = buckets.get(i);
            // SAFETY: the projections point at fields of the bucket (invariant 19).
            let state = unsafe { b.read_field(|p| std::ptr::addr_of_mut!((*p).state)) };
            match state {
                EMPTY => return Probe::Absent(free.or(Some(b)), probes),
                // SAFETY: as above.
                FULL if unsafe { b.read_field(|p| std::ptr::addr_of_mut!((*p).key)) } == *key => {
                    return Probe::Found(b)
                }
                DELETED if free.is_none() => free = Some(b),
                _ => {}
            }
            i = (i + 1) & mask;
        }
        Probe::Absent(free, mask + 1)
    }

    /// The value of `key`, if it is in the map.
    pub fn get(self, key: &K) -> Option<V::Loaded<'tx>> {
        let _busy = self.enter();
        match self.probe(key) {
            // SAFETY: the projection points at the bucket's value (invariant 19).
            Probe::Found(b) => Some(V::from_slot(unsafe {
                b.read_field(|p| std::ptr::addr_of_mut!((*p).value))
            })),
            Probe::Absent(..) => None,
        }
    }

    /// Whether `key` is in the map.
    pub fn contains_key(self, key: &K) -> bool {
        let _busy = self.enter();
        matches!(self.probe(key), Probe::Found(_))
    }

    /// Sets `key` to `value`; returns the value it had.
    ///
    /// # Panics
    /// If the heap is full, or if the key type's `Hash`, `Eq` or `Default` uses this map.
    #[track_caller]
    pub fn insert(self, key: K, value: V::Loaded<'tx>) -> Option<V::Loaded<'tx>> {
        let blank = (K::default(), V::Slot::default());
        let _busy = self.enter();
        self.insert_in(key, value, blank)
    }

    #[track_caller]
    fn insert_in(
        self,
        key: K,
        value: V::Loaded<'tx>,
        blank: (K, V::Slot),
    ) -> Option<V::Loaded<'tx>> {
        match self.probe(&key) {
            Probe::Found(b) => {
                // SAFETY: the projection points at the bucket's value (invariant 19).
                let old = unsafe { b.read_field(|p| std::ptr::addr_of_mut!((*p).value)) };
                // SAFETY: as above; `value` belongs to this transaction (same 'tx, invariant 9).
                unsafe {
                    b.write_field(|p| std::ptr::addr_of_mut!((*p).value), V::into_slot(value))
                };
                Some(V::from_slot(old))
            }
            Probe::Absent(Some(b), probes) => {
                // SAFETY: the projection points at the bucket's state (invariant 19).
                let reused = unsafe { b.read_field(|p| std::ptr::addr_of_mut!((*p).state)) };
                // SAFETY: the projections point at the bucket's fields (invariant 19); `value`
                // belongs to this transaction (invariant 9).
                unsafe {
                    b.write_field(|p| std::ptr::addr_of_mut!((*p).key), key);
                    b.write_field(|p| std::ptr::addr_of_mut!((*p).value), V::into_slot(value));
                    b.write_field(|p| std::ptr::addr_of_mut!((*p).state), FULL);
                }
                self.count(1, if reused == DELETED { -1 } else { 0 });
                // A long probe path means a table crowded with keys and removed keys, or
                // keys whose hashes collide. Rehash (purging the removed ones, growing if
                // the keys need it) only in the first case: a poor hash gets long paths, not
                // a table that doubles at every insert.
                if probes > REHASH_AFTER_PROBES {
                    let (keys, removed) = self.counts();
                    if 2 * (keys + removed) > self.size() {
                        self.rehash(keys, blank);
                    }
                }
                None
            }
            Probe::Absent(None, _) => {
                // Every bucket is full or removed.
                let (keys, _) = self.counts();
                self.rehash(keys + 1, blank);
                self.insert_in(key, value, blank)
            }
        }
    }

    /// Removes `key`; returns the value it had.
    ///
    /// # Panics
    /// If the key type's `Hash`, `Eq` or `Default` uses this map.
    #[track_caller]
    pub fn remove(self, key: &K) -> Option<V::Loaded<'tx>> {
        let (blank_key, blank_value) = (K::default(), V::Slot::default());
        let _busy = self.enter();
        let Probe::Found(b) = self.probe(key) else {
            return None;
        };
        // SAFETY: the projection points at the bucket's value (invariant 19).
        let old = unsafe { b.read_field(|p| std::ptr::addr_of_mut!((*p).value)) };
        // The bucket keeps nothing alive: its value becomes the slot's default (no handle).
        b.set_object(Bucket {
            state: DELETED,
            key: blank_key,
            value: blank_value,
        });
        self.count(-1, 1);
        Some(V::from_slot(old))
    }

    fn size(self) -> usize {
        self.index().1 + 1
    }

    fn shards(self) -> [u32; MAP_SHARDS] {
        // SAFETY: the projection points at the head's counters (invariant 19).
        unsafe {
            self.head
                .read_field(|p| std::ptr::addr_of_mut!((*p).shards))
        }
    }

    /// The keys and the removed buckets, over every counter.
    fn counts(self) -> (usize, usize) {
        let mut sum = [0i64; 2];
        for s in self.shards() {
            let [k, r] = Gc::<[i64; 2]>::new(self.tx(), s).get();
            sum[0] += k;
            sum[1] += r;
        }
        let n = |x: i64| usize::try_from(x).expect("a map's counters sum to its contents");
        (n(sum[0]), n(sum[1]))
    }

    /// Adds to this thread's counters of keys and removed buckets.
    #[track_caller]
    fn count(self, keys: i64, removed: i64) {
        let c = Gc::<[i64; 2]>::new(self.tx(), self.shards()[thread_number() % MAP_SHARDS]);
        c.update(|[k, r]| {
            *k += keys;
            *r += removed;
        });
    }

    /// The number of keys. (It reads every counter: it conflicts with every insert of a new
    /// key and every remove that commits meanwhile.)
    pub fn len(self) -> usize {
        self.counts().0
    }

    /// Whether the map has no key. (Like [`GcHashMap::len`], it reads every counter.)
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Every key and value, in no particular order. (It reads every bucket.)
    pub fn to_vec(self) -> Vec<(K, V::Loaded<'tx>)> {
        let _busy = self.enter();
        self.entries()
    }

    fn entries(self) -> Vec<(K, V::Loaded<'tx>)> {
        let (buckets, _) = self.index();
        let mut out = Vec::new();
        for b in buckets.iter() {
            // SAFETY: the projections point at the bucket's fields (invariant 19).
            unsafe {
                if b.read_field(|p| std::ptr::addr_of_mut!((*p).state)) == FULL {
                    out.push((
                        b.read_field(|p| std::ptr::addr_of_mut!((*p).key)),
                        V::from_slot(b.read_field(|p| std::ptr::addr_of_mut!((*p).value))),
                    ));
                }
            }
        }
        out
    }

    /// Moves every key into a new table with room for `keys` keys at a load of at most 1/2
    /// (never smaller than the current one), leaving the removed buckets behind. It writes the
    /// head and every counter: it conflicts with every transaction on the map.
    #[track_caller]
    fn rehash(self, keys: usize, blank: (K, V::Slot)) {
        let entries = self.entries();
        let size = (2 * keys.max(1))
            .checked_next_power_of_two()
            .filter(|&n| n <= 1 << 31)
            .expect("THashMap: too many keys")
            .max(self.size());
        let buckets = new_buckets::<K, V>(self.tx(), size, blank);
        let mask = size - 1;
        for (key, value) in entries {
            let mut i = hash(&key) as usize & mask;
            loop {
                let b = buckets.get(i);
                // SAFETY: the projections point at the bucket's fields (invariant 19); the
                // buckets are new, so only this transaction can see them.
                unsafe {
                    if b.read_field(|p| std::ptr::addr_of_mut!((*p).state)) == EMPTY {
                        b.write_field(|p| std::ptr::addr_of_mut!((*p).key), key);
                        b.write_field(|p| std::ptr::addr_of_mut!((*p).value), V::into_slot(value));
                        b.write_field(|p| std::ptr::addr_of_mut!((*p).state), FULL);
                        break;
                    }
                }
                i = (i + 1) & mask;
            }
        }
        // SAFETY: the projections point at the head's fields (invariant 19); the vector is
        // this transaction's (invariant 9).
        unsafe {
            self.head
                .write_field(|p| std::ptr::addr_of_mut!((*p).buckets), buckets);
            self.head
                .write_field(|p| std::ptr::addr_of_mut!((*p).mask), mask as u32);
        }
        // No removed bucket is left.
        for s in self.shards() {
            Gc::<[i64; 2]>::new(self.tx(), s).update(|[_, r]| *r = 0);
        }
    }
}

/// Buckets read by an insert past which the map looks at its load: with linear probing below
/// a load of 1/2, longer paths are rare.
const REHASH_AFTER_PROBES: usize = 16;

thread_local! {
    /// The head granules of the maps operations are running on, on this thread, innermost
    /// last (a key's `Eq` may use another map).
    static BUSY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// An operation running on a map: takes it off the thread's list when it ends (unwinding
/// included).
struct InUse;

impl Drop for InUse {
    fn drop(&mut self) {
        BUSY.with(|b| b.borrow_mut().pop());
    }
}

/// `n` empty buckets, in a new index; `blank` is the key's and value's defaults (made before
/// the caller read the map).
#[track_caller]
fn new_buckets<K: MapKey, V: Element>(
    tx: &Tx,
    n: usize,
    blank: (K, V::Slot),
) -> GcVec<'_, GcRef<BucketOf<K, V>>> {
    let v = GcVec::new(tx);
    let empty: Vec<Gc<'_, BucketOf<K, V>>> = (0..n)
        .map(|_| {
            tx.alloc(Bucket {
                state: EMPTY,
                key: blank.0,
                value: blank.1,
            })
        })
        .collect();
    v.extend_from_slice(&empty);
    v
}
