use stm_runtime as stm;

// A user type must be declared plain with #[derive(stm::Plain)].
#[derive(Clone, Copy)]
struct Point {
    x: i32,
    y: i32,
}

#[stm::object]
struct Shape {
    corner: Point,
}

fn main() {}
