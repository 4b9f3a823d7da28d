use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Account {
    balance: i64,
}

macro_rules! twice {
    ($e:expr) => {
        $e + $e
    };
}

// The macro does not look inside unknown macros; an access there fails to compile rather
// than run without a barrier.
#[stm::transactional]
fn double(a: Gc<Account>) -> i64 {
    twice!(a.balance)
}

fn main() {}
