use stm_runtime as stm;
use stm::{Gc, Root};
struct Counter {
    hits: u64,
}
::stm_runtime::__private::object_impls! {
    impl [] Counter where [] plain[] object[] fields { hits : u64, }
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
    ::stm_runtime::__private::atomically_fn(|__stm_tx: &::stm_runtime::Tx| -> u64 {
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
                "hits = {}", (* match __stm::Recv(& c).__stm_rkind() { __k => __k.read(|
                __r | & __r.hits, __stm::field!(__k, hits)), } .__stm_place())
            )
        };
        (*match __stm::Recv(&c).__stm_rkind() {
            __k => __k.read(|__r| &__r.hits, __stm::field!(__k, hits)),
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
