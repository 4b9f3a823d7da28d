//! `THashMap`: it behaves like a `HashMap` (one thread against a model, through rollbacks and
//! growth; several threads with injected aborts and collections), and transactions on
//! different keys do not conflict while the same key does.

mod common;

use std::collections::BTreeMap;

use common::Rng;
use stm_runtime::{self as stm, Gc, GcHashMap, Stm, THashMap};

#[test]
fn one_thread_matches_a_model_through_rollbacks_and_growth() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(32 << 20)
        .build()
        .unwrap();
    let map = stm.atomically(|tx| tx.root(GcHashMap::<u64, u64>::new(tx).as_gc()));
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    for round in 0..600u64 {
        // Keys from a range that makes the map grow several times, with removes.
        let ops: Vec<(u64, u64)> = (0..rng.next() % 12 + 1)
            .map(|_| (rng.next() % 3, rng.next() % 1500))
            .collect();
        let keep = round % 7 != 3;
        let mut mine = model.clone();
        let got = stm.try_atomically(|tx| {
            let m = GcHashMap::from_root(tx, &map);
            let mut out = Vec::new();
            for &(op, k) in &ops {
                out.push(match op {
                    0 => m.insert(k, k + round),
                    1 => m.remove(&k),
                    _ => m.get(&k),
                });
            }
            if keep {
                Ok(out)
            } else {
                Err(())
            }
        });
        let want: Vec<Option<u64>> = ops
            .iter()
            .map(|&(op, k)| match op {
                0 => mine.insert(k, k + round),
                1 => mine.remove(&k),
                _ => mine.get(&k).copied(),
            })
            .collect();
        if let Ok(out) = got {
            assert_eq!(out, want, "round {round}: {ops:?}");
            model = mine;
        }
        if round % 50 == 0 {
            let (len, mut all) = stm.atomically(|tx| {
                let m = GcHashMap::from_root(tx, &map);
                (m.len(), m.to_vec())
            });
            all.sort_unstable();
            assert_eq!(len, model.len());
            assert_eq!(all, model.iter().map(|(&k, &v)| (k, v)).collect::<Vec<_>>());
        }
    }
    assert!(model.len() > 200, "the map grew past its first table");
}

#[stm::object]
struct Account {
    id: u64,
    balance: i64,
}

#[stm::object]
struct Bank {
    accounts: THashMap<u64, Gc<Account>>,
}

#[stm::transactional]
fn open(bank: Gc<Bank>, id: u64) {
    let a = Gc::new(Account { id, balance: 100 });
    assert!(
        bank.accounts.insert(id, a).is_none(),
        "account {id} opened twice"
    );
}

#[stm::transactional]
fn transfer(bank: Gc<Bank>, from: u64, to: u64) {
    let (Some(a), Some(b)) = (bank.accounts.get(&from), bank.accounts.get(&to)) else {
        return;
    };
    a.balance -= 1;
    b.balance += 1;
}

#[stm::transactional]
fn total(bank: Gc<Bank>) -> (usize, i64, u64) {
    let all = bank.accounts.to_vec();
    let ids: u64 = all
        .iter()
        .map(|(k, a)| {
            assert_eq!(*k, a.id);
            a.id
        })
        .sum();
    (
        bank.accounts.len(),
        all.iter().map(|(_, a)| a.balance).sum(),
        ids,
    )
}

/// Threads open accounts (handles as values) and move money between them while the heap is
/// collected and aborts are injected: every account is there once and no money is lost.
#[test]
fn threads_with_handles_lose_nothing() {
    let stm = Stm::builder()
        .segments(2)
        .heap_size(8 << 20)
        .inject_faults(0.02)
        .build()
        .unwrap();
    let bank = stm.atomically(|tx| {
        let accounts = THashMap::<u64, stm::GcRef<Account>>::new(tx);
        tx.root(stm::alloc!(tx, Bank { accounts: accounts }))
    });
    const PER_THREAD: u64 = 400;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (stm, bank) = (&stm, &bank);
            s.spawn(move || {
                let mut rng = Rng::new(t + 11);
                for i in 0..PER_THREAD {
                    stm.atomically(|tx| open(bank.get(tx), 2 * i + t));
                    let (x, y) = (rng.next() % (2 * i + 1), rng.next() % (2 * i + 1));
                    stm.atomically(|tx| transfer(bank.get(tx), x, y));
                    if i % 100 == 0 {
                        stm.collect();
                    }
                }
            });
        }
    });
    let (n, money, ids) = stm.atomically(|tx| total(bank.get(tx)));
    let accounts = 2 * PER_THREAD;
    assert_eq!(n as u64, accounts);
    assert_eq!(money, 100 * accounts as i64);
    assert_eq!(ids, accounts * (accounts - 1) / 2);
}

/// A transaction updates one key while another thread's transaction updates another key and
/// commits: the first commits without an abort. With the same key it must conflict.
#[test]
fn different_keys_do_not_conflict_the_same_key_does() {
    if !stm_runtime::BARRIERS {
        // GIL mode: one segment and no conflicts; the second transaction would wait for the
        // first's segment.
        return;
    }
    let stm = Stm::builder()
        .segments(2)
        .heap_size(8 << 20)
        .build()
        .unwrap();
    let map = stm.atomically(|tx| {
        let m = GcHashMap::<u64, u64>::new(tx);
        tx.root(m.as_gc())
    });
    let bump = |tx: &stm::Tx, k: u64| {
        let m = GcHashMap::from_root(tx, &map);
        let v = m.get(&k).unwrap_or(0);
        m.insert(k, v + 1);
    };
    let attempts_with = |mine: u64, theirs: u64, new_keys: bool| -> u32 {
        let outer = |tx: &stm::Tx, attempt: u32| {
            bump(
                tx,
                if new_keys {
                    mine + 1000 * u64::from(attempt)
                } else {
                    mine
                },
            )
        };
        common::attempts_around(&stm, outer, |tx| bump(tx, theirs)).0
    };
    // Keys present already: updates of two keys.
    stm.atomically(|tx| {
        let m = GcHashMap::from_root(tx, &map);
        m.insert(1, 0);
        m.insert(2, 0);
    });
    assert_eq!(
        attempts_with(1, 2, false),
        1,
        "updates of two keys conflicted"
    );
    assert_eq!(
        attempts_with(1, 1, false),
        2,
        "updates of one key must conflict"
    );
    // New keys: two inserts (each thread counts in a length counter of its own).
    assert_eq!(
        attempts_with(5, 6, true),
        1,
        "inserts of two new keys conflicted"
    );
    let m = stm.atomically(|tx| {
        let m = GcHashMap::from_root(tx, &map);
        (m.len(), m.get(&1), m.get(&2))
    });
    assert_eq!(m, (4, Some(3), Some(1)));
}

/// A key whose `Hash` only looks at `group`: every key of a group collides. Legal, and what
/// an adversary gets by choosing keys.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, stm::Plain)]
struct Poor {
    group: u8,
    id: u64,
}
impl std::hash::Hash for Poor {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.group.hash(h);
    }
}

/// Colliding keys make long probe paths, not a table that doubles at every insert; insert and
/// remove churn purges removed buckets instead of growing. (Both once exhausted the heap.)
#[test]
fn collisions_and_churn_keep_the_table_small() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(64 << 20)
        .build()
        .unwrap();
    let poor = stm.atomically(|tx| tx.root(GcHashMap::<Poor, u64>::new(tx).as_gc()));
    for id in 0..200 {
        stm.atomically(|tx| GcHashMap::from_root(tx, &poor).insert(Poor { group: 0, id }, id));
    }
    let found = stm.atomically(|tx| {
        let m = GcHashMap::from_root(tx, &poor);
        (0..200).all(|id| m.get(&Poor { group: 0, id }) == Some(id)) && m.len() == 200
    });
    assert!(found);
    let live = stm.collect().live_bytes;
    assert!(live < 1 << 20, "200 colliding keys hold {live} bytes");

    let churn = stm.atomically(|tx| tx.root(GcHashMap::<u64, u64>::new(tx).as_gc()));
    for round in 0..200u64 {
        stm.atomically(|tx| {
            let m = GcHashMap::from_root(tx, &churn);
            for k in round * 100..round * 100 + 100 {
                m.insert(k, k);
                assert_eq!(m.remove(&k), Some(k));
            }
        });
    }
    let (len, live) = (
        stm.atomically(|tx| GcHashMap::from_root(tx, &churn).len()),
        stm.collect().live_bytes,
    );
    assert_eq!(len, 0);
    assert!(
        live < 1 << 20,
        "20 000 inserts and removes left {live} bytes live"
    );
}

thread_local! {
    static AGAIN: std::cell::Cell<Option<stm::Root<stm::MapHead<Sneaky, u64>>>> =
        const { std::cell::Cell::new(None) };
}

/// A key whose `Eq` uses the map it is compared in (through a root kept in a thread local).
#[derive(Clone, Copy, Default, Debug, stm::Plain)]
struct Sneaky(u64);
impl std::hash::Hash for Sneaky {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}
impl PartialEq for Sneaky {
    fn eq(&self, other: &Self) -> bool {
        if let Some(root) = AGAIN.with(std::cell::Cell::take) {
            stm::atomically(|tx| GcHashMap::from_root(tx, &root).remove(&Sneaky(1)));
        }
        self.0 == other.0
    }
}
impl Eq for Sneaky {}

/// A key's `Eq` that changes the map it is being compared in would make the outer operation
/// overwrite the inner one: it is refused with a panic, like a `RefCell` borrowed twice.
#[test]
fn a_key_that_uses_its_own_map_is_refused() {
    let stm = Stm::builder()
        .segments(1)
        .heap_size(8 << 20)
        .build()
        .unwrap();
    let map = stm.atomically(|tx| {
        let m = GcHashMap::<Sneaky, u64>::new(tx);
        m.insert(Sneaky(1), 10);
        tx.root(m.as_gc())
    });
    let again = stm.atomically(|tx| tx.root(GcHashMap::from_root(tx, &map).as_gc()));
    AGAIN.with(|a| a.set(Some(again)));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stm.atomically(|tx| GcHashMap::from_root(tx, &map).get(&Sneaky(1)))
    }));
    let msg = match r {
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
        Ok(v) => panic!("the reentrant use was not refused: {v:?}"),
    };
    assert!(msg.contains("used the map it is in"), "{msg}");
    // The map is intact and usable afterwards.
    let after = stm.atomically(|tx| {
        let m = GcHashMap::from_root(tx, &map);
        (m.get(&Sneaky(1)), m.len())
    });
    assert_eq!(after, (Some(10), 1));
}
