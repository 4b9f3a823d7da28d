//! The machine's cross-CPU cache-line round trip, measured before each multi-thread run.
//!
//! On this project's 2-vCPU VM the time for one cache line to go from one CPU to the other
//! and back is either about 60 ns or about 330 ns, and it switches between the two within
//! seconds (the hypervisor places the two vCPUs near each other or far apart). Workloads
//! whose threads share lines (bank-low, vacation, kmeans) run up to twice as slow in the far
//! placement; disjoint ones do not notice. So a multi-thread figure means little without
//! the placement it ran in, and `stm-bench` reports this probe beside the overlap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Where a round trip of `ns` nanoseconds says the two vCPUs were placed, when that is not
/// the usual near placement (about 60 ns on this project's VM): far apart above 150 ns
/// (about 330 ns: shared data runs up to twice as slowly), two hyperthreads of one core
/// under 45 ns (about 30 ns: even disjoint work runs slower).
pub fn placement(ns: f64) -> Option<&'static str> {
    if ns > 150.0 {
        Some("vCPUs far apart")
    } else if ns < 45.0 {
        Some("vCPUs on two hyperthreads")
    } else {
        None
    }
}

/// Round trips per batch.
const TRIPS: u64 = 5_000;
/// Batches; the median is reported.
const BATCHES: usize = 3;

/// The median time, in nanoseconds, of one round trip of a cache line between two threads
/// pinned to the first two CPUs this process may use; `None` if it has fewer than two or
/// pinning fails (the figure would mean nothing if both threads shared a CPU).
pub fn round_trip_ns() -> Option<f64> {
    let cpus = allowed_cpus();
    let (&a, &b) = (cpus.first()?, cpus.get(1)?);
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let flag = &line.0;
    // Set by a side that cannot pin itself, so that the other stops waiting.
    let stop = AtomicBool::new(false);
    let stop = &stop;
    // Spins until the line holds `v`; false if the other side gave up.
    let wait_for = move |v: u64| {
        while flag.load(Ordering::Acquire) != v {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::hint::spin_loop();
        }
        true
    };
    let total = TRIPS * BATCHES as u64;
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            if !pin(b) {
                stop.store(true, Ordering::Release);
                return false;
            }
            for i in 0..total {
                if !wait_for(2 * i + 1) {
                    return false;
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
            true
        });
        let mine = s.spawn(move || {
            if !pin(a) {
                stop.store(true, Ordering::Release);
                return None;
            }
            let mut times = Vec::with_capacity(BATCHES);
            let mut k = 0u64;
            for _ in 0..BATCHES {
                let start = Instant::now();
                for _ in 0..TRIPS {
                    flag.store(2 * k + 1, Ordering::Release);
                    if !wait_for(2 * k + 2) {
                        return None;
                    }
                    k += 1;
                }
                times.push(start.elapsed().as_secs_f64() * 1e9 / TRIPS as f64);
            }
            times.sort_by(f64::total_cmp);
            Some(times[BATCHES / 2])
        });
        let ns = mine.join().ok().flatten();
        let ok = other.join().unwrap_or(false);
        ns.filter(|_| ok)
    })
}

/// The CPUs this process may run on, in increasing order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set the call fills in; 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu`; false if that fails.
fn pin(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bit set built here; 0 is the calling thread, which is one of
    // the probe's own threads (it ends with the probe).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_measures_a_positive_time_or_says_it_cannot() {
        if let Some(ns) = super::round_trip_ns() {
            assert!(ns > 0.0 && ns.is_finite(), "round trip {ns} ns");
        } else {
            assert!(super::allowed_cpus().len() < 2, "two CPUs but no figure");
        }
    }
}
