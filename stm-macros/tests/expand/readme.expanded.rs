use stm_runtime as stm;
use stm::Gc;
struct Account {
    balance: i64,
    owner: u32,
    next: Option<::stm_runtime::GcRef<Account>>,
    #[doc(hidden)]
    pub __stm_allocate_with_gc_new: ::stm_runtime::__private::Seal,
}
impl ::core::clone::Clone for Account {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl ::core::marker::Copy for Account {}
impl ::core::ops::Deref for Account {
    type Target = ::stm_runtime::__private::NoFields;
    fn deref(&self) -> &::stm_runtime::__private::NoFields {
        &::stm_runtime::__private::NoFields
    }
}
unsafe impl ::stm_runtime::__private::ObjectLayout for Account {}
unsafe impl ::stm_runtime::Object for Account {
    fn trace(&self, tracer: &mut ::stm_runtime::Tracer) {
        ::stm_runtime::__private::trace_field::<i64>(&self.balance, tracer);
        ::stm_runtime::__private::trace_field::<u32>(&self.owner, tracer);
        ::stm_runtime::__private::trace_field::<
            Option<::stm_runtime::GcRef<Account>>,
        >(&self.next, tracer);
        let _ = tracer;
    }
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
    __stm::update_again(
        from,
        __stm::field!(from, balance),
        unsafe { __stm::Again::new() },
        |__t| *__t -= amount,
    );
    __stm::update(to, __stm::field!(to, balance), |__t| *__t += amount);
    true
}
