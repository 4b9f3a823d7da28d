use stm_runtime as stm;
use stm::{Gc, Root};
struct Counter {
    hits: u64,
    #[doc(hidden)]
    pub __stm_allocate_with_gc_new: ::stm_runtime::__private::Seal,
}
impl ::core::clone::Clone for Counter {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl ::core::marker::Copy for Counter {}
impl ::core::ops::Deref for Counter {
    type Target = ::stm_runtime::__private::NoFields;
    fn deref(&self) -> &::stm_runtime::__private::NoFields {
        &::stm_runtime::__private::NoFields
    }
}
unsafe impl ::stm_runtime::__private::ObjectLayout for Counter {}
unsafe impl ::stm_runtime::Object for Counter {
    fn trace(&self, tracer: &mut ::stm_runtime::Tracer) {
        ::stm_runtime::__private::trace_field::<u64>(&self.hits, tracer);
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
fn hit(counter: &Root<Counter>) -> u64 {
    ::stm_runtime::__private::atomically(|__stm_tx: &::stm_runtime::Tx| -> u64 {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        let c = counter.get(__stm_tx);
        match c.__stm_wkind() {
            __k => {
                let __p = __stm::field!(__k, hits);
                __k.update(|__r| &mut __r.hits, __p, move |__t| *__t += 1)
            }
        };
        {
            __stm::inevitable(__stm_tx);
            println!(
                "hits = {}", (* match __stm::Recv(& c).__stm_rkind() { __k => __k
                .read_again(| __r | & __r.hits, __stm::field!(__k, hits), unsafe {
                __stm::Again::new() }), } .__stm_place())
            )
        };
        (*match __stm::Recv(&c).__stm_rkind() {
            __k => {
                __k.read_again(
                    |__r| &__r.hits,
                    __stm::field!(__k, hits),
                    unsafe { __stm::Again::new() },
                )
            }
        }
            .__stm_place())
    })
}
struct Stats {
    name: String,
}
impl Stats {
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
    fn report<'tx>(&self, c: Gc<'tx, Counter>) -> String {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(c);
        let line = format!("{}: {}", self.name, __stm::read(c, __stm::field!(c, hits)));
        (std::io::Write::flush(&mut std::io::sink()).ok());
        line
    }
}
