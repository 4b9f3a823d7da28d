//! `#[in_transactions]`: the loop becomes a series of transactions; `done` is carried.
use stm_runtime as stm;
use stm::Root;
struct Counter {
    value: u64,
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
        ::stm_runtime::__private::trace_field::<u64>(&self.value, tracer);
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
