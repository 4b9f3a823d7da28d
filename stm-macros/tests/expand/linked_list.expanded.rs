use stm_runtime as stm;
use stm::Gc;
struct Node {
    key: i64,
    next: Option<::stm_runtime::GcRef<Node>>,
    #[doc(hidden)]
    pub __stm_allocate_with_gc_new: ::stm_runtime::__private::Seal,
}
impl ::core::clone::Clone for Node {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl ::core::marker::Copy for Node {}
impl ::core::ops::Deref for Node {
    type Target = ::stm_runtime::__private::NoFields;
    fn deref(&self) -> &::stm_runtime::__private::NoFields {
        &::stm_runtime::__private::NoFields
    }
}
unsafe impl ::stm_runtime::__private::ObjectLayout for Node {}
unsafe impl ::stm_runtime::Object for Node {
    fn trace(&self, tracer: &mut ::stm_runtime::Tracer) {
        ::stm_runtime::__private::trace_field::<i64>(&self.key, tracer);
        ::stm_runtime::__private::trace_field::<
            Option<::stm_runtime::GcRef<Node>>,
        >(&self.next, tracer);
        let _ = tracer;
    }
}
struct List {
    head: Option<::stm_runtime::GcRef<Node>>,
    len: usize,
    #[doc(hidden)]
    pub __stm_allocate_with_gc_new: ::stm_runtime::__private::Seal,
}
impl ::core::clone::Clone for List {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}
impl ::core::marker::Copy for List {}
impl ::core::ops::Deref for List {
    type Target = ::stm_runtime::__private::NoFields;
    fn deref(&self) -> &::stm_runtime::__private::NoFields {
        &::stm_runtime::__private::NoFields
    }
}
unsafe impl ::stm_runtime::__private::ObjectLayout for List {}
unsafe impl ::stm_runtime::Object for List {
    fn trace(&self, tracer: &mut ::stm_runtime::Tracer) {
        ::stm_runtime::__private::trace_field::<
            Option<::stm_runtime::GcRef<Node>>,
        >(&self.head, tracer);
        ::stm_runtime::__private::trace_field::<usize>(&self.len, tracer);
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
fn push_front<'tx>(list: Gc<'tx, List>, key: i64) {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(list);
    let node = {
        let __seal = unsafe { __stm::Seal::new() };
        __stm_tx
            .alloc(Node {
                key: __stm::store(__stm_tx, key),
                next: __stm::store(
                    __stm_tx,
                    __stm::read(list, __stm::field!(list, head)),
                ),
                __stm_allocate_with_gc_new: __seal,
            })
    };
    match (Some(node)) {
        __v => __stm::write(list, __stm::field!(list, head), __v),
    };
    __stm::update_again(
        list,
        __stm::field!(list, len),
        unsafe { __stm::Again::new() },
        |__t| *__t += 1,
    );
    let _check = __stm::read_again(
        node,
        __stm::field!(node, key),
        unsafe { __stm::Again::new() },
    )
        + __stm::read_again(
            list,
            __stm::field!(list, len),
            unsafe { __stm::Again::new() },
        ) as i64;
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
fn sum<'tx>(list: Gc<'tx, List>) -> i64 {
    #[allow(unused_imports)]
    use ::stm_runtime::__private::{
        self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _, PlainWrite as _,
    };
    let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(list);
    let mut total = 0;
    let mut cur = __stm::read(list, __stm::field!(list, head));
    while let Some(node) = cur {
        total
            += (*match __stm::Recv(&node).__stm_rkind() {
                __k => __k.read(|__r| &__r.key, __stm::field!(__k, key)),
            }
                .__stm_place());
        cur = (*match __stm::Recv(&node).__stm_rkind() {
            __k => {
                __k.read_again(
                    |__r| &__r.next,
                    __stm::field!(__k, next),
                    unsafe { __stm::Again::new() },
                )
            }
        }
            .__stm_place());
    }
    if (*__stm::ReadOnly(
            __stm::read_again(
                list,
                __stm::field!(list, head),
                unsafe { __stm::Again::new() },
            ),
        )
        .__stm_place())
        .is_some()
    {
        total
            += (*match __stm::Recv(
                    &(*__stm::ReadOnly(
                            __stm::read_again(
                                list,
                                __stm::field!(list, head),
                                unsafe { __stm::Again::new() },
                            ),
                        )
                        .__stm_place())
                        .unwrap(),
                )
                .__stm_rkind()
            {
                __k => __k.read(|__r| &__r.key, __stm::field!(__k, key)),
            }
                .__stm_place()) * 0;
    }
    total
}
impl Node {}
///Methods of `Gc<Node>` (from `#[stm::transactional] impl Node`).
pub trait NodeMethods<'tx> {
    ///`Node::shifted` on a handle.
    fn shifted(self, by: i64) -> i64;
}
impl<'tx> NodeMethods<'tx> for ::stm_runtime::Gc<'tx, Node> {
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
    fn shifted(self, by: i64) -> i64 {
        #[allow(unused_imports)]
        use ::stm_runtime::__private::{
            self as __stm, HandleRead as _, HandleWrite as _, PlainRead as _,
            PlainWrite as _,
        };
        let __stm_tx: &::stm_runtime::Tx = ::stm_runtime::Gc::tx(self);
        __stm::read(self, __stm::field!(self, key)) + by
    }
}
