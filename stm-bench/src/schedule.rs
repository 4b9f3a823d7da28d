//! How `stm-bench` schedules the runs of one workload: how many operations each
//! configuration (implementation × thread count) runs, and in which order the repeated runs
//! come.
//!
//! * **Rounds.** The `--repeat` runs are made in rounds, each of which runs every
//!   configuration of the workload once ([`round_order`]). On this shared VM the throughput
//!   of one program can halve within minutes; run back to back, the five runs of one
//!   configuration and the five of the next would meet different machines, and their ratio
//!   (2 threads against 1, STM against the sequential program) would measure the drift.
//! * **Operation counts.** A first run under [`MIN_SECONDS`] gives no verdict, so it is made
//!   again with more operations ([`stretch_factors`]). Where an operation's work grows with
//!   the count (vacation's tables fill up), every configuration runs the same count, or the
//!   one that was stretched would be measured on bigger tables than the others.

use crate::report::MIN_SECONDS;

/// The most a configuration's operation count is multiplied by.
pub const MAX_STRETCH: f64 = 64.0;

/// What a first run needs: `None` if it gave a verdict (or failed its check, which is
/// reported as it is), else the factor that brings it to about twice [`MIN_SECONDS`]
/// (at most [`MAX_STRETCH`]).
pub fn stretch_needed(seconds: f64, check_ok: bool) -> Option<f64> {
    (check_ok && seconds < MIN_SECONDS).then(|| {
        (2.0 * MIN_SECONDS / seconds.max(1e-6))
            .ceil()
            .min(MAX_STRETCH)
    })
}

/// The factor by which each configuration's operation count is multiplied, from its first
/// run (`(seconds, check passed)` per configuration). Each configuration gets what it needs
/// ([`stretch_needed`]), or, if `shared` (an operation's work grows with the count), every
/// configuration gets the largest factor any of them needs, so that all do the same work.
pub fn stretch_factors(firsts: &[(f64, bool)], shared: bool) -> Vec<Option<f64>> {
    let needed: Vec<Option<f64>> = firsts
        .iter()
        .map(|&(secs, ok)| stretch_needed(secs, ok))
        .collect();
    if !shared {
        return needed;
    }
    let most = needed.iter().flatten().copied().reduce(f64::max);
    vec![most; firsts.len()]
}

/// The configurations (indices `0..n`) in the order round `round` runs them: each once,
/// starting one further along each round, so that no configuration always runs first
/// (right after the sizing runs) or right after the same neighbour.
pub fn round_order(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_long_enough_or_failed_is_not_stretched() {
        assert_eq!(stretch_needed(0.25, true), None);
        assert_eq!(stretch_needed(MIN_SECONDS, true), None);
        assert_eq!(stretch_needed(0.01, false), None);
        assert_eq!(stretch_needed(0.05, true), Some(4.0));
        assert_eq!(stretch_needed(0.0, true), Some(MAX_STRETCH));
    }

    #[test]
    fn each_configuration_gets_its_own_factor_unless_the_work_grows() {
        let firsts = [(0.01, true), (0.05, true), (0.3, true), (0.001, false)];
        assert_eq!(
            stretch_factors(&firsts, false),
            vec![Some(20.0), Some(4.0), None, None]
        );
        // All of them the largest, the long run and the failed one included.
        assert_eq!(stretch_factors(&firsts, true), vec![Some(20.0); 4]);
        // Nothing too short: nothing stretched.
        assert_eq!(
            stretch_factors(&[(0.2, true), (0.5, true)], true),
            vec![None, None]
        );
    }

    #[test]
    fn every_round_runs_every_configuration_once_from_a_new_start() {
        for n in 1..6 {
            let firsts: Vec<usize> = (0..n)
                .map(|round| round_order(round, n).next().unwrap())
                .collect();
            let mut distinct = firsts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                n,
                "each configuration leads one of {n} rounds"
            );
            for round in 0..2 * n {
                let mut seen: Vec<usize> = round_order(round, n).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>());
            }
        }
        assert_eq!(round_order(0, 0).count(), 0);
    }
}
