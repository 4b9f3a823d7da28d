use stm_runtime as stm;

#[stm::object]
enum State {
    Idle,
    Busy(u32),
}

fn main() {}
