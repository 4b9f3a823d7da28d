use stm_runtime as stm;
use stm::{Gc, Root};

use crate::list::{List, Node};

/// Inserts `key` (a bare `Node { .. }` literal allocates: the rewriter knows from
/// `list.rs` that `Node` is an object type, which the macro alone does not).
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
pub fn insert<'tx>(list: Gc<'tx, List>, key: u64) {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(list);
    let node = {
        let _: ::core::marker::PhantomData<Gc<'static, ()>>;
        __stm::new_object!(
            __stm_tx, [Node] { key : key, next : __stm::read(list, __stm::field!(list,
            head)), }
        )
    };
    match (Some(node)) {
        __v => __stm::write(list, __stm::field!(list, head), __v),
    };
    __stm::update(list, __stm::field!(list, len), |__t| *__t += 1);
}

/// Whether `key` is in the list.
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
pub fn contains<'tx>(list: Gc<'tx, List>, key: u64) -> bool {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(list);
    let mut cur = __stm::read(list, __stm::field!(list, head));
    while let Some(n) = cur {
        if __stm::read(n, __stm::field!(n, key)) == key {
            return true;
        }
        cur = __stm::read(n, __stm::field!(n, next));
    }
    false
}

/// Inserts the keys `0..n`, in transactions: each iteration of the loop is one, with a
/// break point at its back-edge (PyPy's model for long-running code); the code around the
/// loop runs outside transactions.
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
pub fn fill(list: &Root<List>, n: u64) -> u32 {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let start = 0; // outside transactions
    let mut inserted = 0;
    {
        __stm::carried(&inserted);
        let __stm_iter = __stm::carried_iter(start..n);
        let (
            __stm_state,
            __stm_exit,
        ): (_, __stm::Exit<(), ::core::convert::Infallible>) = __stm::loop_in_transactions(
            (inserted, __stm_iter),
            |__stm_tx: &::stm_runtime::Tx, __stm_carried| {
                #[allow(unused_mut)]
                let (mut inserted, mut __stm_iter) = __stm_carried;
                #[allow(unreachable_code)]
                let __stm_flow = '__stm_step: {
                    let ::core::option::Option::Some(key) = ::core::iter::Iterator::next(
                        &mut __stm_iter,
                    ) else {
                        break '__stm_step ::core::ops::ControlFlow::Break(
                            __stm::Exit::Break(()),
                        );
                    };
                    {
                        insert(list.get(__stm_tx), key);
                        inserted += 1;
                    }
                    ::core::ops::ControlFlow::Continue(())
                };
                ((inserted, __stm_iter), __stm_flow)
            },
        );
        #[allow(unused_assignments)]
        {
            (inserted, _) = __stm_state;
        }
        match __stm_exit {
            __stm::Exit::Break(__stm_value) => __stm_value,
            __stm::Exit::Return(__stm_value) => match __stm_value {}
        }
    }
    inserted
}

pub struct Printer {
    pub prefix: &'static str,
}

impl Printer {
    /// Printing is irreversible: the transaction becomes inevitable first.
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
    pub fn show<'tx>(&self, list: Gc<'tx, List>) {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(list);
        {
            __stm::inevitable(__stm_tx);
            println!("{}{}", self.prefix, __stm::read(list, __stm::field!(list, len)))
        };
    }

    pub fn untouched(&self) -> usize {
        self.prefix.len()
    }
}
