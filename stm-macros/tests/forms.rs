//! Every supported syntax form, run by several threads; invariants checked at the end.
//! The same file runs in GIL mode (`--features stm-runtime/gil`) with the same results.

use std::sync::atomic::{AtomicUsize, Ordering};

use stm::{Gc, Root, Tx};
use stm_runtime as stm;

/// A small plain value stored inside objects.
#[derive(Clone, Copy, Debug, PartialEq, stm::Plain)]
struct Point {
    x: i32,
    y: i32,
}

impl Point {
    fn shift(&mut self, d: i32) {
        self.x += d;
        self.y -= d;
    }
}

/// A plain enum stored inside objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, stm::Plain)]
enum Color {
    Red,
    Green,
    Rgb(u8, u8, u8),
}

#[stm::object]
struct Node {
    key: i64,
    next: Option<Gc<Node>>,
}

#[stm::object]
struct List {
    head: Option<Gc<Node>>,
    len: usize,
    sum: i64,
}

#[stm::object]
struct Shape {
    corner: Point,
    color: Color,
    cells: [u32; 8],
    pair: (i16, bool),
    tag: char,
    weight: f64,
    counter: u64,
}

/// A generic object: the parameter must be plain data.
#[stm::object]
struct Cell<T> {
    value: T,
    version: u32,
}

/// A generic object holding handles to any object type.
#[stm::object]
struct Holder<T> {
    item: Option<Gc<T>>,
    uses: u32,
}

#[stm::transactional]
fn hold<T: stm::Object>(tx: &Tx, item: Gc<T>) -> Gc<Holder<T>> {
    let _ = tx;
    Gc::new(Holder {
        item: Some(item),
        uses: 0,
    })
}

#[stm::transactional]
fn take_item<T: stm::Object>(h: Gc<Holder<T>>) -> Option<Gc<T>> {
    h.uses += 1;
    h.item.take()
}

/// An ordinary struct used inside transactional code: keeps ordinary semantics.
#[derive(Debug, Default)]
struct Report {
    name: String,
    items: Vec<i64>,
    count: usize,
}

#[stm::transactional]
fn new_list() -> Root<List> {
    let l = Gc::new(List {
        head: None,
        len: 0,
        sum: 0,
    });
    l.tx().root(l)
}

#[stm::transactional]
fn push_front(list: Gc<List>, key: i64) {
    // Struct-literal allocation storing a handle read from another object.
    let node = Gc::new(Node {
        key,
        next: list.head,
    });
    list.head = Some(node);
    list.len += 1;
    list.sum += key;
}

#[stm::transactional]
fn pop_front(list: Gc<List>) -> Option<i64> {
    // `take()` on a handle field: a mutable place, written back.
    let first = list.head.take()?;
    list.head = first.next;
    list.len -= 1;
    list.sum -= first.key;
    Some(first.key)
}

/// Walks the list: loops over a linked structure, `while let`, unknown-typed bindings.
#[stm::transactional]
fn walk(list: Gc<List>) -> (usize, i64) {
    let mut n = 0;
    let mut sum = 0;
    let mut cur = list.head;
    while let Some(node) = cur {
        n += 1;
        sum += node.key;
        cur = node.next;
    }
    (n, sum)
}

/// Methods on handles: an inherent impl block whose `self: Gc<Self>` methods become the trait
/// `NodeMethods`, implemented for `Gc<Node>`.
#[stm::transactional]
impl Node {
    /// The key, doubled.
    pub fn doubled(self: Gc<Self>) -> i64 {
        Self::twice(self.key)
    }

    fn bump(mut self: Gc<Self>, by: i64) -> Gc<Self> {
        self.key += by;
        if let Some(n) = self.next {
            self = n;
        }
        self
    }

    fn twice(x: i64) -> i64 {
        x * 2
    }
}

/// Handles behind references (iterator closures, `for` over a slice) work too.
#[stm::transactional]
fn keys(list: Gc<List>) -> Vec<i64> {
    let mut nodes: Vec<Gc<Node>> = Vec::new();
    let mut cur = list.head;
    while let Some(n) = cur {
        nodes.push(n);
        cur = n.next;
    }
    for n in nodes.iter() {
        n.key += 0;
    }
    nodes.iter().map(|n| n.key).collect()
}

/// Chains and conditions: `list.head.unwrap().key`, `match`, `if let`, closures, iterators.
#[stm::transactional]
fn first_key(list: Gc<List>) -> i64 {
    if list.head.is_none() {
        return -1;
    }
    let k = list.head.unwrap().key;
    let second = match list.head.unwrap().next {
        Some(n) if n.key > k => n.key,
        Some(n) => -n.key,
        None => 0,
    };
    let add = |x: i64| x + list.len as i64 - list.len as i64;
    add(k) + second - second
}

#[stm::transactional]
fn new_shape() -> Root<Shape> {
    let s = Gc::new(Shape {
        corner: Point { x: 0, y: 0 },
        color: Color::Red,
        cells: [0; 8],
        pair: (0, false),
        tag: 'a',
        weight: 0.0,
        counter: 0,
    });
    s.tx().root(s)
}

/// Arrays, tuples, plain structs and enums in objects; method calls on field values;
/// `&mut` places; index assignment.
#[stm::transactional]
fn touch_shape(s: Gc<Shape>, i: usize) {
    s.cells[i % 8] += 1;
    s.counter += 1;
    if i % 2 == 0 {
        let p = s.corner;
        s.corner = Point {
            x: p.x + 1,
            y: p.y - 1,
        };
    } else {
        // A `&mut self` method on a field: the changed copy is written back.
        s.corner.shift(1);
    }
    s.pair = (s.pair.0 + 1, !s.pair.1);
    s.color = match s.color {
        Color::Red => Color::Green,
        Color::Green => Color::Rgb(1, 2, 3),
        Color::Rgb(..) => Color::Red,
    };
    s.weight += 0.5;
    assert!(!matches!(s.color, Color::Rgb(9, _, _)), "{}", s.tag);
    s.tag = if s.tag == 'a' { 'b' } else { 'a' };
    s.cells.sort();
    s.cells.reverse();
    let mut other = 'z';
    std::mem::swap(&mut s.tag, &mut other);
    assert_eq!(s.tag, 'z');
    s.tag = other;
}

#[stm::transactional]
fn shape_total(s: Gc<Shape>) -> u64 {
    s.cells.iter().map(|&c| c as u64).sum::<u64>() + (s.corner.x - s.corner.x) as u64
}

#[stm::transactional]
fn bump_cell(c: Gc<Cell<u64>>) -> u64 {
    c.value += 1;
    c.version += 1;
    c.value
}

#[stm::transactional]
fn new_cell() -> Root<Cell<u64>> {
    let c = Gc::new(Cell::<u64> {
        value: 0,
        version: 0,
    });
    c.tx().root(c)
}

/// Code that touches no shared object keeps its meaning: moves, borrows, closures, macros,
/// fields of ordinary structs (typed bindings). (With a `&Tx` parameter the body runs once,
/// in the caller's transaction, so it may consume its arguments.)
#[stm::transactional]
fn ordinary(tx: &Tx, mut r: Report, extra: &mut Report) -> Report {
    let _ = tx;
    r.items.push(1);
    r.count += r.items.len();
    let name = r.name; // a move out of an ordinary struct
    r.name = format!("{name}!");
    extra.items.extend_from_slice(&[1, 2]);
    extra.count = extra.items.iter().sum::<i64>() as usize;
    let total: Vec<i64> = r.items.iter().map(|x| x * 2).collect();
    r.items = total;
    r
}

/// Methods and impl blocks: the whole block is transactional.
struct Bank {
    accounts: Vec<Root<List>>,
}

#[stm::transactional]
impl Bank {
    fn deposit(&self, i: usize, key: i64) {
        // No handle parameter: runs in its own transaction (or joins the running one);
        // `stm::tx!()` is that transaction.
        push_front(self.accounts[i].get(stm::tx!()), key);
    }

    fn move_one(&self, tx: &Tx, from: usize, to: usize) -> bool {
        let a = self.accounts[from].get(tx);
        let b = self.accounts[to].get(tx);
        match pop_front(a) {
            Some(k) => {
                push_front(b, k);
                true
            }
            None => false,
        }
    }

    fn total(&self) -> (usize, i64) {
        stm::atomically(|tx| {
            self.accounts
                .iter()
                .map(|r| walk(r.get(tx)))
                .fold((0, 0), |(n, s), (n2, s2)| (n + n2, s + s2))
        })
    }
}

impl List {
    /// An associated function on an object type.
    #[stm::transactional]
    fn check(this: Gc<Self>) -> bool {
        let (n, s) = walk(this);
        n == this.len && s == this.sum
    }
}

static PRINTED: AtomicUsize = AtomicUsize::new(0);

/// An irreversible effect: the transaction becomes inevitable first.
#[stm::transactional]
fn log_len(list: Gc<List>) -> usize {
    let n = list.len;
    if n == usize::MAX {
        println!("list has {} elements", list.len);
    }
    stm::tx_safe!(PRINTED.fetch_add(1, Ordering::Relaxed));
    n
}

#[test]
fn lists_under_contention() {
    let bank = Bank {
        accounts: (0..3).map(|_| new_list()).collect(),
    };
    for i in 0..30 {
        bank.deposit(i % 3, i as i64);
    }
    std::thread::scope(|s| {
        for t in 0..4usize {
            let bank = &bank;
            s.spawn(move || {
                for i in 0..150usize {
                    let (from, to) = ((t + i) % 3, (t + 2 * i + 1) % 3);
                    stm::atomically(|tx| bank.move_one(tx, from, to));
                    if i % 10 == 0 {
                        stm::atomically(|tx| log_len(bank.accounts[to].get(tx)));
                    }
                }
            });
        }
    });
    assert_eq!(bank.total(), (30, (0..30).sum()));
    for a in &bank.accounts {
        assert!(stm::atomically(|tx| List::check(a.get(tx))));
        let _ = stm::atomically(|tx| first_key(a.get(tx)));
    }
    assert!(PRINTED.load(Ordering::Relaxed) >= 60);
}

/// `?` inside a function that runs its own transaction.
#[stm::transactional]
fn parse_and_push(list: &Root<List>, text: &str) -> Result<i64, std::num::ParseIntError> {
    let key: i64 = text.trim().parse()?;
    push_front(list.get(stm::tx!()), key);
    Ok(key)
}

#[test]
fn question_mark_in_a_transaction() {
    let l = new_list();
    assert_eq!(parse_and_push(&l, " 41 "), Ok(41));
    assert!(parse_and_push(&l, "x").is_err());
    assert_eq!(stm::atomically(|tx| walk(l.get(tx))), (1, 41));
}

#[test]
fn pop_push_roundtrip() {
    let l = new_list();
    stm::atomically(|tx| {
        let l = l.get(tx);
        push_front(l, 1);
        push_front(l, 2);
        assert_eq!(first_key(l), 2);
        assert_eq!(keys(l), vec![2, 1]);
        let head = read_head(l).unwrap();
        assert_eq!(head.doubled(), 4);
        let second = head.bump(10);
        assert_eq!((head.doubled(), second.doubled()), (24, 2));
        head.bump(-10);
        let h = hold(tx, head);
        assert!(take_item(h).is_some_and(|n| n.ptr_eq(head)));
        assert!(take_item(h).is_none());
        assert_eq!(pop_front(l), Some(2));
        assert_eq!(pop_front(l), Some(1));
        assert_eq!(pop_front(l), None);
        assert_eq!(walk(l), (0, 0));
    });
}

#[test]
fn shapes_under_contention() {
    let s = new_shape();
    std::thread::scope(|sc| {
        for t in 0..4usize {
            let s = &s;
            sc.spawn(move || {
                for i in 0..100 {
                    stm::atomically(|tx| touch_shape(s.get(tx), t + i));
                }
            });
        }
    });
    stm::atomically(|tx| {
        let g = s.get(tx);
        assert_eq!(shape_total(g), 400);
        assert_eq!(read_counter(g), 400);
        assert_eq!(read_corner(g), Point { x: 400, y: -400 });
    });
}

#[stm::transactional]
fn read_head(l: Gc<List>) -> Option<Gc<Node>> {
    l.head
}

#[stm::transactional]
fn read_counter(s: Gc<Shape>) -> u64 {
    s.counter
}

#[stm::transactional]
fn read_corner(s: Gc<Shape>) -> Point {
    s.corner
}

#[test]
fn generic_object_counts() {
    let c = new_cell();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let c = &c;
            sc.spawn(move || {
                for _ in 0..100 {
                    stm::atomically(|tx| bump_cell(c.get(tx)));
                }
            });
        }
    });
    assert_eq!(stm::atomically(|tx| bump_cell(c.get(tx))), 401);
}

#[test]
fn ordinary_code_keeps_its_meaning() {
    let mut extra = Report::default();
    let r = stm::atomically(|tx| {
        extra = Report::default();
        ordinary(
            tx,
            Report {
                name: "r".into(),
                items: vec![],
                count: 0,
            },
            &mut extra,
        )
    });
    assert_eq!(r.name, "r!");
    assert_eq!(r.items, vec![2]);
    assert_eq!(r.count, 1);
    assert_eq!(extra.count, 3);
}

/// An irreversible call makes the transaction inevitable just before it; `tx_safe!` does not.
#[stm::transactional]
fn effects(list: Gc<List>) -> (bool, bool, bool) {
    let start = stm::tx!().is_inevitable();
    stm::tx_safe!(std::io::Write::write_all(&mut std::io::sink(), b"quiet").unwrap());
    let after_safe = stm::tx!().is_inevitable();
    std::io::Write::write_all(&mut std::io::sink(), b"effect").unwrap();
    let after_effect = stm::tx!().is_inevitable();
    let _ = list.len;
    (start, after_safe, after_effect)
}

#[test]
fn irreversible_calls_make_the_transaction_inevitable() {
    let l = new_list();
    let r = stm::atomically(|tx| effects(l.get(tx)));
    assert_eq!(r, (false, false, true));
}
