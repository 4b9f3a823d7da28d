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

/// Runs `outer` as one transaction of `stm`; in its first attempt, after `outer`'s body ran,
/// `inner` runs and commits as a transaction on another thread while that attempt is still
/// open. Returns how many attempts `outer` took (1: `inner`'s commit did not conflict with
/// it), the result of `outer`'s committed attempt and `inner`'s. `outer` gets the attempt
/// number (from 1). Needs two segments (not GIL mode, where `inner` would wait for `outer`).
pub fn attempts_around<A, B: Send>(
    stm: &Stm,
    mut outer: impl FnMut(&stm_runtime::Tx, u32) -> A,
    inner: impl Fn(&stm_runtime::Tx) -> B + Sync,
) -> (u32, A, B) {
    let mut attempts = 0;
    let mut theirs = None;
    let mine = stm.atomically(|tx| {
        attempts += 1;
        let mine = outer(tx, attempts);
        if attempts == 1 {
            let other = std::thread::scope(|s| s.spawn(|| stm.atomically(&inner)).join());
            theirs = Some(other.expect("the inner transaction does not panic"));
        }
        mine
    });
    (
        attempts,
        mine,
        theirs.expect("the first attempt ran `inner`"),
    )
}
