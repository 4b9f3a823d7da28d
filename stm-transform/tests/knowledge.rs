//! Whole-tree knowledge (what `stm-rewrite` knows and the macro does not): object field types
//! and function signatures give unannotated bindings a type.

use proc_macro2::TokenStream;
use quote::quote;
use stm_transform::{expand_transactional_with, Knowledge, Stats};

const TREE: &str = "
    #[stm::object] pub struct Node { pub key: u64, pub next: Option<Gc<Node>> }
    #[stm::object] pub struct List { pub head: Option<Gc<Node>>, pub len: u32, pub pos: Pos }
    pub fn first(list: Gc<List>) -> Option<Gc<Node>> { list.head }
    pub fn make() -> Root<List> { todo!() }
    impl Node { pub fn lookup(list: Gc<List>) -> Gc<Node> { todo!() } }
";

fn flat(ts: &TokenStream) -> String {
    ts.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn expand(knowledge: &Knowledge, item: TokenStream) -> (String, Stats) {
    let e = expand_transactional_with(knowledge, TokenStream::new(), item);
    assert!(!e.has_errors, "unexpected errors: {}", e.tokens);
    (flat(&e.tokens), e.stats)
}

fn tree(infer: bool) -> Knowledge {
    let mut k = Knowledge::default();
    assert_eq!(k.learn_from_source(TREE), 2);
    k.infer_types = infer;
    k
}

#[test]
fn learns_objects_and_signatures() {
    let k = tree(true);
    assert!(k.is_object("Node") && k.is_object("List"));
    assert_eq!(
        k.functions["first"].returns.as_deref(),
        Some("Option < Gc < Node > >")
    );
    assert!(k.functions.contains_key("Node::lookup"));
}

#[test]
fn merging_conflicting_signatures_makes_them_ambiguous() {
    let mut k = tree(true);
    let mut other = Knowledge::default();
    other.learn_from_source("fn first() -> u8 { 0 } fn make() -> Root<List> { todo!() }");
    k.merge(other);
    assert_eq!(k.functions["first"].returns, None);
    assert!(k.functions["make"].returns.is_some());
}

#[test]
fn a_walk_gets_direct_barriers_with_knowledge_and_the_dispatch_without() {
    let walk = quote! {
        fn count(list: Gc<List>) -> u64 {
            let mut n = 0;
            let mut cur = list.head;
            while let Some(node) = cur {
                n += node.key;
                cur = node.next;
            }
            n
        }
    };
    let (with, stats) = expand(&tree(true), walk.clone());
    assert!(
        with.contains("__stm::read(node,__stm::field!(node,key))"),
        "{with}"
    );
    assert!(
        with.contains("__stm::read(node,__stm::field!(node,next)"),
        "{with}"
    );
    assert!(!with.contains("__stm_rkind"), "no dispatch left: {with}");
    assert_eq!(stats.inferred, 2, "cur and node");
    let (without, stats) = expand(&tree(false), walk);
    assert!(without.contains("__stm_rkind"), "{without}");
    assert_eq!(stats.inferred, 0);
}

#[test]
fn function_results_roots_and_fields_of_fields() {
    let (out, _) = expand(
        &tree(true),
        quote! {
            fn f(list: Gc<List>, root: &Root<List>) -> u64 {
                let a = Node::lookup(list);
                let b = first(list).unwrap();
                let l = root.get(stm::tx!());
                let c = l.head.expect("a head");
                let p = list.pos;
                a.key + b.key + c.key + p.x
            }
        },
    );
    for h in ["a", "b", "c"] {
        assert!(
            out.contains(&format!("__stm::read({h},__stm::field!({h},key))")),
            "{h}: {out}"
        );
    }
    assert!(
        out.contains("__stm::read(l,__stm::field!(l,head))"),
        "{out}"
    );
    // `p` is a copy of a plain field: its own fields are ordinary Rust.
    assert!(out.contains("+p.x") && !out.contains("Recv(&p)"), "{out}");
}

#[test]
fn shadowing_by_an_untyped_binding_hides_the_inferred_type() {
    let (out, _) = expand(
        &tree(true),
        quote! {
            fn f(list: Gc<List>, other: Vec<Gc<Node>>) -> u64 {
                let n = list.head.unwrap();
                let mut s = n.key;
                for n in other.iter() {
                    s += n.key;
                }
                s
            }
        },
    );
    assert!(out.contains("__stm::read(n,__stm::field!(n,key))"), "{out}");
    assert!(
        out.contains("__stm::Recv(&n).__stm_rkind()"),
        "the loop's n: {out}"
    );
}

#[test]
fn self_of_a_handle_method_has_its_object_type() {
    let (out, stats) = expand(
        &tree(true),
        quote! {
            impl List {
                fn sum(self: Gc<Self>) -> u64 {
                    let mut s = 0;
                    let mut cur = self.head;
                    while let Some(n) = cur {
                        s += n.key;
                        cur = n.next;
                    }
                    s
                }
            }
        },
    );
    assert!(out.contains("__stm::read(n,__stm::field!(n,key))"), "{out}");
    assert_eq!(stats.inferred, 2, "cur and n");
}
