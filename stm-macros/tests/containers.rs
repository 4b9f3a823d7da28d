//! Objects holding the runtime's transactional growable array (`TVec`), used through
//! ordinary method syntax on the field.

use stm::{Gc, GcVec, Root, TVec};
use stm_runtime as stm;

#[stm::object]
struct Log {
    entries: TVec<i64>,
    total: i64,
}

// Allocating the vector needs the transaction: take it as `&Tx` (or from a handle: `h.tx()`).
#[stm::transactional]
fn new_log_in(tx: &stm::Tx) -> Gc<Log> {
    Gc::new(Log {
        entries: GcVec::new(tx),
        total: 0,
    })
}

#[stm::transactional]
fn new_log() -> Root<Log> {
    let log = Gc::new(Log {
        entries: GcVec::new(stm::tx!()),
        total: 0,
    });
    stm::tx!().root(log)
}

#[stm::transactional]
fn append(log: Gc<Log>, v: i64) {
    log.entries.push(v);
    log.total += v;
}

#[stm::transactional]
fn check(log: Gc<Log>) -> (usize, i64, i64) {
    let n = log.entries.len();
    let mut sum = 0;
    for i in 0..n {
        sum += log.entries.get(i);
    }
    (n, sum, log.total)
}

#[test]
fn appends_from_several_threads() {
    let root: Root<Log> = stm::atomically(|tx| tx.root(new_log_in(tx)));
    let other = new_log();
    stm::atomically(|tx| append(other.get(tx), 5));
    assert_eq!(stm::atomically(|tx| check(other.get(tx))), (1, 5, 5));
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let root = &root;
            s.spawn(move || {
                for i in 0..50 {
                    stm::atomically(|tx| append(root.get(tx), t * 100 + i));
                }
            });
        }
    });
    let (n, sum, total) = stm::atomically(|tx| check(root.get(tx)));
    assert_eq!(n, 200);
    assert_eq!(sum, total);
}

// ---- What a newcomer writes: handle vectors, text, identity, literals in closures ----

#[stm::object]
struct Person {
    name: stm::TString,
    age: u32,
    friends: TVec<Gc<Person>>,
}

#[stm::transactional]
fn person(tx: &stm::Tx, name: &str, age: u32) -> Gc<Person> {
    Gc::new(Person {
        name: stm::TString::from_str(tx, name),
        age,
        friends: TVec::new(tx),
    })
}

#[stm::transactional]
fn befriend(a: Gc<Person>, b: Gc<Person>) {
    if !a.friends.iter().any(|f| f == b) {
        a.friends.push(b);
    }
}

#[stm::transactional]
fn friend_names(p: Gc<Person>) -> Vec<String> {
    p.friends.iter().map(|f| f.name.to_string()).collect()
}

#[stm::transactional]
fn rename(p: Gc<Person>, suffix: &str) {
    p.name.push_str(suffix);
}

#[test]
fn a_vector_of_handles_text_and_identity() {
    let stm = stm::Stm::builder()
        .segments(2)
        .heap_size(8 << 20)
        .build()
        .unwrap();
    let root = stm.atomically(|tx| {
        let ann = person(tx, "Ann", 31);
        let bob = person(tx, "Bob", 27);
        let cyd = person(tx, "Cyd", 40);
        befriend(ann, bob);
        befriend(ann, cyd);
        befriend(ann, bob); // already a friend: `==` on handles is identity
        rename(bob, "by");
        assert!(ann != bob && ann == ann);
        tx.root(ann)
    });
    stm.collect(); // the friends are reachable through the vector: traced, kept
    let names = stm.atomically(|tx| friend_names(root.get(tx)));
    assert_eq!(names, ["Bobby", "Cyd"]);
}

#[test]
fn bulk_copies_go_a_card_at_a_time_and_keep_order() {
    let stm = stm::Stm::builder()
        .segments(1)
        .heap_size(8 << 20)
        .build()
        .unwrap();
    let data: Vec<u64> = (0..1000).collect();
    let v = stm.atomically(|tx| {
        let v = TVec::<u64>::new(tx);
        v.push(7);
        v.extend_from_slice(&data); // starts mid-card, crosses cards and tree levels
        v.extend([1, 2, 3]);
        tx.root(v.as_gc())
    });
    let (all, via_iter, len) = stm.atomically(|tx| {
        let v = GcVec::<u64>::from_root(tx, &v);
        (v.to_vec(), v.iter().collect::<Vec<_>>(), v.len())
    });
    let mut expected = vec![7];
    expected.extend(&data);
    expected.extend([1, 2, 3]);
    assert_eq!(len, expected.len());
    assert_eq!(all, expected);
    assert_eq!(via_iter, expected);
    // Text: a long string round-trips (bulk copies both ways).
    let long: String = (0..500)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let s = stm.atomically(|tx| {
        let s = stm::GcString::from_str(tx, &long);
        s.push('é');
        tx.root(s.as_vec().as_gc())
    });
    let back = stm.atomically(|tx| stm::GcString::from_root(tx, &s).to_string());
    assert_eq!(back, format!("{long}é"));
}
