//! Helpers shared by the example programs: command-line options, a small RNG, and the
//! report every example prints.

use std::time::Duration;

use stm_runtime::{Stats, Stm};

/// Options every example accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Worker threads (default: the number of CPUs).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Segments of the STM heap (default: as many as threads).
    #[arg(long)]
    pub segments: Option<usize>,
}

impl Common {
    /// The number of worker threads to run.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// A runtime sized for this run.
    pub fn stm(&self, heap_mb: usize) -> Stm {
        let segments = self.segments.unwrap_or(self.threads());
        Stm::builder()
            .segments(segments)
            .heap_size(heap_mb << 20)
            .build()
            .unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(2)
            })
    }
}

/// xorshift64*: fast deterministic randomness, one generator per thread.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A job of the worker examples: `rounds` dependent multiply-xorshift rounds (pure
/// computation, about 1.5 ns a round here).
pub fn compute(job: u64, rounds: u64) -> u64 {
    let mut x = job.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..rounds {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    x
}

/// Prints the lines every example ends with: the result check, throughput and statistics.
pub fn report(
    name: &str,
    check: Result<String, String>,
    ops: u64,
    elapsed: Duration,
    stats: Stats,
) {
    let ok = check.is_ok();
    match check {
        Ok(msg) => println!("{name}: check passed: {msg}"),
        Err(msg) => println!("{name}: CHECK FAILED: {msg}"),
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "{name}: {ops} transactions in {secs:.3} s = {:.0} per second",
        ops as f64 / secs.max(1e-9)
    );
    println!("{name}: stm stats: {stats}");
    println!(
        "{name}: mode: {}",
        if stm_runtime::BARRIERS {
            "STM"
        } else {
            "GIL (feature stm-runtime/gil)"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
