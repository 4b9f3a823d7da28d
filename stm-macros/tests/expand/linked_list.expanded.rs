use stm_runtime as stm;
use stm::Gc;
struct Node {
    key: i64,
    next: Option<::stm_runtime::GcRef<Node>>,
}
const _: ::core::marker::PhantomData<Gc<'static, ()>> = ::core::marker::PhantomData;
::stm_runtime::__private::object_impls! {
    impl [] Node where [] plain[] object[] fields { key : i64, next : Option <
    ::stm_runtime::GcRef < Node > >, }
}
struct List {
    head: Option<::stm_runtime::GcRef<Node>>,
    len: usize,
}
const _: ::core::marker::PhantomData<Gc<'static, ()>> = ::core::marker::PhantomData;
::stm_runtime::__private::object_impls! {
    impl [] List where [] plain[] object[] fields { head : Option < ::stm_runtime::GcRef
    < Node > >, len : usize, }
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
    let _check = __stm::read(node, __stm::field!(node, key))
        + __stm::read(list, __stm::field!(list, len)) as i64;
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
            __k => __k.read(|__r| &__r.next, __stm::field!(__k, next)),
        }
            .__stm_place());
    }
    if (*__stm::ReadOnly(__stm::read(list, __stm::field!(list, head))).__stm_place())
        .is_some()
    {
        total
            += (*match __stm::Recv(
                    &(*__stm::ReadOnly(__stm::read(list, __stm::field!(list, head)))
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
