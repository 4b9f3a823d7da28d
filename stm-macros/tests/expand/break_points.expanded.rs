//! `#[in_transactions]`: the loop becomes a series of transactions; `done` is carried.
use stm_runtime as stm;
use stm::Root;
struct Counter {
    value: u64,
}
::stm_runtime::__private::object_impls! {
    impl [] Counter where [] plain[] object[] fields { value : u64, }
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
fn count_to(c: &Root<Counter>, n: u64) -> u64 {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let mut done = 0;
    {
        __stm::carried(&done);
        let (
            __stm_state,
            __stm_exit,
        ): (_, __stm::Exit<(), ::core::convert::Infallible>) = __stm::loop_in_transactions(
            (done,),
            |__stm_tx: &::stm_runtime::Tx, __stm_carried| {
                #[allow(unused_mut)]
                let (mut done,) = __stm_carried;
                #[allow(unreachable_code)]
                let __stm_flow = '__stm_step: {
                    if done < n {
                        match c.get(__stm_tx).__stm_wkind() {
                            __k => {
                                let __p = __stm::field!(__k, value);
                                __k.update(|__r| &mut __r.value, __p, move |__t| *__t += 1)
                            }
                        };
                        done += 1;
                    } else {
                        break '__stm_step ::core::ops::ControlFlow::Break(
                            __stm::Exit::Break(()),
                        );
                    }
                    ::core::ops::ControlFlow::Continue(())
                };
                ((done,), __stm_flow)
            },
        );
        #[allow(unused_assignments)]
        {
            (done,) = __stm_state;
        }
        match __stm_exit {
            __stm::Exit::Break(__stm_value) => __stm_value,
            __stm::Exit::Return(__stm_value) => match __stm_value {}
        }
    }
    done
}
