use stm_runtime as stm;

fn main() {
    stm::tx_safe!(println!("hello"));
}
