//! --all-functions: every function that can reach the shared heap runs in a transaction
//! (PyPy style), or in transactions cut at break points when it starts its own and has a loop
//! (`main` included); `const fn` and functions that cannot be transactional are left alone
//! with a note, and so are functions that cannot reach the heap (counted, noted with -v).

use stm_runtime as stm;
use stm::{Gc, Root};

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
    __stm::read(c, __stm::field!(c, hits))
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
fn bump_twice(c: &Root<Counter>) -> u64 {
    ::stm_runtime::__private::atomically_fn(|__stm_tx: &::stm_runtime::Tx| -> u64 {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        bump(c.get(__stm_tx));
        bump(c.get(__stm_tx))
    })
}

/// Takes a handle: runs in its caller's transaction, loop included.
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
fn bump_n<'tx>(c: Gc<'tx, Counter>, n: u64) {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(c);
    for _ in 0..n {
        __stm::update(c, __stm::field!(c, hits), |__t| *__t += 1);
    }
}

/// No handle and a loop: runs in transactions, one iteration each, cut at break points.
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
fn sum_twice(c: &Root<Counter>, limit: u64) -> u64 {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let mut sum = 0;
    {
        __stm::carried(&sum);
        let __stm_iter = __stm::carried_iter(0..limit);
        let (
            __stm_state,
            __stm_exit,
        ): (_, __stm::Exit<(), ::core::convert::Infallible>) = __stm::loop_in_transactions(
            (sum, __stm_iter),
            |__stm_tx: &::stm_runtime::Tx, __stm_carried| {
                #[allow(unused_mut)]
                let (mut sum, mut __stm_iter) = __stm_carried;
                #[allow(unreachable_code)]
                let __stm_flow = '__stm_step: {
                    let ::core::option::Option::Some(i) = ::core::iter::Iterator::next(
                        &mut __stm_iter,
                    ) else {
                        break '__stm_step ::core::ops::ControlFlow::Break(
                            __stm::Exit::Break(()),
                        );
                    };
                    {
                        sum += twice(i) + bump_twice(c);
                    }
                    ::core::ops::ControlFlow::Continue(())
                };
                ((sum, __stm_iter), __stm_flow)
            },
        );
        #[allow(unused_assignments)]
        {
            (sum, _) = __stm_state;
        }
        match __stm_exit {
            __stm::Exit::Break(__stm_value) => __stm_value,
            __stm::Exit::Return(__stm_value) => match __stm_value {}
        }
    }
    sum
}

/// Cannot reach the shared heap: left as it is.
fn twice(x: u64) -> u64 {
    x * 2
}

const fn limit(_: Option<&Root<Counter>>) -> u64 {
    10
}

struct Config {
    verbose: bool,
}

impl Config {
    fn verbose(&self) -> bool {
        self.verbose
    }
}

struct Tally;

impl Tally {
    /// A method with a loop, taking no handle: in transactions too.
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
    fn up_to(&self, r: &Root<Counter>, n: u32) -> u32 {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        let mut c = 0;
        {
            __stm::carried(&c);
            let (
                __stm_state,
                __stm_exit,
            ): (_, __stm::Exit<(), ::core::convert::Infallible>) = __stm::loop_in_transactions(
                (c,),
                |__stm_tx: &::stm_runtime::Tx, __stm_carried| {
                    #[allow(unused_mut)]
                    let (mut c,) = __stm_carried;
                    #[allow(unreachable_code)]
                    let __stm_flow = '__stm_step: {
                        if c < n {
                            match r.get(__stm_tx).__stm_wkind() {
                                __k => {
                                    let __p = __stm::field!(__k, hits);
                                    __k.update(|__r| &mut __r.hits, __p, move |__t| *__t += 1)
                                }
                            };
                            c += 1;
                        } else {
                            break '__stm_step ::core::ops::ControlFlow::Break(
                                __stm::Exit::Break(()),
                            );
                        }
                        ::core::ops::ControlFlow::Continue(())
                    };
                    ((c,), __stm_flow)
                },
            );
            #[allow(unused_assignments)]
            {
                (c,) = __stm_state;
            }
            match __stm_exit {
                __stm::Exit::Break(__stm_value) => __stm_value,
                __stm::Exit::Return(__stm_value) => match __stm_value {}
            }
        }
        c
    }
}

fn spawns(r: &Root<Counter>) {
    std::thread::spawn(|| {}).join().ok();
    bump_twice(r);
}

/// Its loops block: it stays as it is, with a note.
fn joins(r: &Root<Counter>, n: usize) {
    for _ in 0..n {
        std::thread::spawn(|| {}).join().ok();
        bump_twice(r);
    }
}

/// Its code outside the loop runs outside transactions (it may spawn threads); the loop in
/// transactions.
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
fn main() {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let c = stm::atomically(|tx| tx.root(tx.alloc(Counter { hits: 0 })));
    let mut rounds = 0;
    {
        __stm::carried(&rounds);
        let (
            __stm_state,
            __stm_exit,
        ): (_, __stm::Exit<(), ::core::convert::Infallible>) = __stm::loop_in_transactions(
            (rounds,),
            |__stm_tx: &::stm_runtime::Tx, __stm_carried| {
                #[allow(unused_mut)]
                let (mut rounds,) = __stm_carried;
                #[allow(unreachable_code)]
                let __stm_flow = '__stm_step: {
                    if rounds < 3 {
                        rounds += bump_twice(&c);
                    } else {
                        break '__stm_step ::core::ops::ControlFlow::Break(
                            __stm::Exit::Break(()),
                        );
                    }
                    ::core::ops::ControlFlow::Continue(())
                };
                ((rounds,), __stm_flow)
            },
        );
        #[allow(unused_assignments)]
        {
            (rounds,) = __stm_state;
        }
        match __stm_exit {
            __stm::Exit::Break(__stm_value) => __stm_value,
            __stm::Exit::Return(__stm_value) => match __stm_value {}
        }
    }
    let _ = (twice(limit(None)), Config { verbose: false }.verbose(), sum_twice(&c, rounds));
    let _ = Tally.up_to(&c, 3);
    spawns(&c);
    joins(&c, 2);
}
