//! Helpers shared by the integration tests.
#![allow(dead_code)]

use stm_runtime::Stm;

/// A small runtime with `segments` segments (GIL mode runs one whatever is asked).
pub fn stm(segments: usize) -> Stm {
    Stm::builder()
        .segments(segments)
        .heap_size(32 << 20)
        .build()
        .expect("runtime")
}

/// xorshift64*: deterministic per-thread randomness without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
