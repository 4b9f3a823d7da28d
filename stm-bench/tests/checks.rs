//! Every workload on every in-process implementation, at a tiny size: the result checks
//! (conservation, structures equal to the sequential model, red-black invariants) pass.

use stm_bench::workloads::{duhton_workloads, ALL};
use stm_bench::{run, Impl};

#[test]
fn every_workload_passes_its_checks_on_every_implementation() {
    for w in ALL.iter().map(|w| w.tiny()) {
        for i in Impl::ALL.into_iter().filter(|i| i.in_process()) {
            for threads in [1, 2] {
                if !i.supports(threads) {
                    continue;
                }
                let ops = (w.ops() / 2000).max(64);
                let out = run(i, w, threads, ops);
                assert!(
                    out.check.is_ok(),
                    "{} on {} with {threads} threads: {:?}",
                    w.name(),
                    i.name(),
                    out.check
                );
                assert_eq!(out.commits, out.ops);
            }
        }
    }
}

#[test]
fn duhton_demos_pass_their_checks_on_the_runtime() {
    let here = Impl::runtime_here();
    for w in duhton_workloads() {
        for threads in [1, 2] {
            // `ops` 0: the demo's small sizes.
            let out = run(here, w, threads, 0);
            assert!(
                out.check.is_ok(),
                "{} with {threads} threads: {:?}",
                w.name(),
                out.check
            );
        }
    }
}
