use stm_runtime as stm;
use stm::Gc;
struct Account {
    balance: i64,
    owner: u32,
    next: Option<::stm_runtime::GcRef<Account>>,
}
const _: ::core::marker::PhantomData<Gc<'static, ()>> = ::core::marker::PhantomData;
::stm_runtime::__private::object_impls! {
    impl [] Account where [] plain[] object[] fields { balance : i64, owner : u32, next :
    Option < ::stm_runtime::GcRef < Account > >, }
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
fn transfer<'tx>(from: Gc<'tx, Account>, to: Gc<'tx, Account>, amount: i64) -> bool {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(from);
    if __stm::read(from, __stm::field!(from, balance)) < amount {
        return false;
    }
    __stm::update(from, __stm::field!(from, balance), |__t| *__t -= amount);
    __stm::update(to, __stm::field!(to, balance), |__t| *__t += amount);
    true
}
