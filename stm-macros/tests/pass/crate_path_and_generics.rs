#![forbid(unsafe_code)]
// Generated code contains no `unsafe` of its own (it lives in the runtime's macros), so a
// crate that forbids unsafe code can use the macros.

extern crate stm_runtime as my_stm;
use my_stm::{Gc, Tx};

#[derive(Clone, Copy, Debug, PartialEq, my_stm::Plain)]
#[stm(crate = my_stm)]
enum Dir<T> {
    Left(T),
    Right,
}

#[my_stm::object(crate = my_stm)]
pub struct Tree<K> {
    key: K,
    dir: Dir<u8>,
    left: Option<Gc<Tree<K>>>,
    right: Option<Gc<Tree<K>>>,
}

trait Size {
    fn size(&self, tx: &Tx) -> usize;
}

struct Forest;

#[my_stm::transactional(crate = my_stm)]
impl Size for Forest {
    fn size(&self, tx: &Tx) -> usize {
        let t = Gc::new(Tree::<u32> {
            key: 1,
            dir: Dir::Right,
            left: None,
            right: None,
        });
        t.left = Some(Gc::new(Tree::<u32> {
            key: 0,
            dir: Dir::Left(3),
            left: None,
            right: None,
        }));
        let _ = tx;
        count(t)
    }
}

#[my_stm::transactional(crate = my_stm)]
fn count<K: my_stm::Plain>(t: Gc<Tree<K>>) -> usize {
    1 + t.left.map_or(0, count) + t.right.map_or(0, count)
}

fn main() {
    assert_eq!(my_stm::atomically(|tx| Forest.size(tx)), 2);
    let _ = elided::<u32>;
}

// Every elided-barrier form (which the macro writes with its own `unsafe`), under
// `forbid(unsafe_code)`.
#[my_stm::transactional(crate = my_stm)]
fn elided<K: my_stm::Plain + Copy>(t: Gc<Tree<K>>) -> K {
    let d = t.dir;
    t.dir = d;
    t.dir = Dir::Right;
    let u = std::convert::identity(t);
    let k = u.key;
    u.key = k;
    let _again = u.dir;
    let fresh = Gc::new(Tree::<u8> {
        key: 1,
        dir: Dir::Right,
        left: None,
        right: None,
    });
    fresh.key += fresh.key;
    t.key
}
