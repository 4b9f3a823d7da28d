// The iterations of a loop with break points run in transactions of their own: they cannot
// jump to a label outside the loop.
use stm_runtime as stm;

#[stm::in_transactions]
fn find(rows: &[Vec<u64>]) -> Option<u64> {
    let mut found = None;
    'rows: for row in rows.iter().cloned() {
        std::thread::sleep(std::time::Duration::from_millis(1)); // an ordinary loop: it blocks
        for x in row {
            if x == 0 {
                continue 'rows;
            }
            found = Some(x);
        }
    }
    found
}

fn main() {}
