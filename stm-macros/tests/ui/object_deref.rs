use stm_runtime as stm;

#[stm::object]
struct Wrapper {
    id: u64,
}

#[derive(Clone, Copy, stm::Plain)]
struct Inner {
    secret: u64,
}

// Field syntax through a handle must name the object's own fields, never reach another
// type through `Deref`: an object type cannot implement `Deref`.
impl std::ops::Deref for Wrapper {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        unimplemented!()
    }
}

fn main() {}
