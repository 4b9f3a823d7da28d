use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Node {
    key: i64,
}

// On a single method, `self: Gc<Self>` would need an unstable feature; on the impl block it
// is supported (the method moves to the trait `NodeMethods`, implemented for `Gc<Node>`), as
// long as the name is not one of `Gc`'s own methods.
impl Node {
    #[stm::transactional]
    fn key(self: Gc<Self>) -> i64 {
        self.key
    }
}

#[stm::transactional]
impl Node {
    fn get(self: Gc<Self>) -> i64 {
        self.key
    }
}

fn main() {}
