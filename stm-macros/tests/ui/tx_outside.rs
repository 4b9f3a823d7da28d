use stm_runtime as stm;

fn main() {
    let _ = stm::tx!();
}
