//! --all-functions: every function runs in a transaction (PyPy style); `main`, `const fn`
//! and functions that cannot be transactional are left alone with a note.

use stm_runtime as stm;
use stm::Gc;

#[stm::object]
struct Counter {
    hits: u64,
}

#[allow(
    unused_parens,
    unused_braces,
    clippy::needless_lifetimes,
    clippy::deref_addrof,
    clippy::needless_borrow,
    clippy::unnecessary_mut_passed,
    clippy::let_unit_value,
    clippy::unit_arg
)]
fn bump<'tx>(c: Gc<'tx, Counter>) -> u64 {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(c);
    __stm::update(c, __stm::field!(c, hits), |__t| *__t += 1);
    __stm::read_again(c, __stm::field!(c, hits), unsafe { __stm::Again::new() })
}

/// No handle: runs in its own transaction (or joins the caller's).
#[allow(
    unused_parens,
    unused_braces,
    clippy::needless_lifetimes,
    clippy::deref_addrof,
    clippy::needless_borrow,
    clippy::unnecessary_mut_passed,
    clippy::let_unit_value,
    clippy::unit_arg
)]
fn twice(x: u64) -> u64 {
    ::stm_runtime::__private::atomically(|__stm_tx: &::stm_runtime::Tx| -> u64 {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        x * 2
    })
}

const fn limit() -> u64 {
    10
}

struct Config {
    verbose: bool,
}

impl Config {
    #[allow(
        unused_parens,
        unused_braces,
        clippy::needless_lifetimes,
        clippy::deref_addrof,
        clippy::needless_borrow,
        clippy::unnecessary_mut_passed,
        clippy::let_unit_value,
        clippy::unit_arg
    )]
    fn verbose(&self) -> bool {
        ::stm_runtime::__private::atomically(|__stm_tx: &::stm_runtime::Tx| -> bool {
            #[allow(unused_imports)]
            use ::stm_runtime::__private::{
                self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
                PlainWrite as _,
            };
            self.verbose
        })
    }
}

fn spawns() {
    std::thread::spawn(|| {}).join().ok();
}

fn main() {
    let _ = (twice(limit()), Config { verbose: false }.verbose());
    spawns();
}
