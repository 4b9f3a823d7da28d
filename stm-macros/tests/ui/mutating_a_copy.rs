use stm_runtime as stm;
use stm::Gc;

#[derive(Clone, Copy, stm::Plain)]
struct Stat {
    n: u64,
}

impl Stat {
    fn bump(&mut self) {
        self.n += 1;
    }
}

#[stm::object]
struct Page {
    stat: Stat,
}

// A binding whose type the macro cannot see: a `&mut self` method it does not know, on a
// field that may be read through a handle, would change a copy: a compile error instead of a
// lost write. (On a binding known to be a handle, such as `p`, it works.)
#[stm::transactional]
fn visit(p: Gc<Page>) {
    p.stat.bump();
    let q = Some(p).unwrap();
    q.stat.bump();
}

fn main() {}
