//! Seeded random streams. Each use (initial layout, negative samples) draws
//! from its own ChaCha8 stream of the one user seed, so changing how much
//! one stage draws does not shift the others.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Stream numbers of the stages.
pub(crate) const INIT_STREAM: u64 = 1;
pub(crate) const SGD_STREAM: u64 = 2;

/// One seeded random stream.
pub(crate) struct Stream(ChaCha8Rng);

impl Stream {
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Stream(r)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.random::<f64>()
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 − u ∈ (0, 1]: the log is finite.
        let u1 = 1.0 - self.0.random::<f64>();
        let u2 = self.0.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// SplitMix64: a per-vertex generator small enough to keep one per point
/// (umap-learn keeps one tau-rand state per point for negative sampling).
#[derive(Clone, Copy)]
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    #[inline]
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform index in 0..n (multiply-shift; bias below 2⁻³²·n).
    #[inline]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}
