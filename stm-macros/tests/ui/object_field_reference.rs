use stm_runtime as stm;

#[stm::object]
struct Label {
    text: &'static str,
}

fn main() {}
