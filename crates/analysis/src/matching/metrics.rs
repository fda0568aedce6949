//! Scalar summaries of a top-n profile (SPEC §5): the matching ratio at a
//! threshold, the mean max cosine similarity (MMCS), fixed-bin histograms
//! of the Top-1..Top-n cosines (the study's Figure 11), and the chance level
//! of the max cosine for the given shapes, analytic and Monte Carlo.

use super::error::{MatchError, Result};
use super::topn::{top_n, TileConfig, TopN};
use super::vectors::UnitVectors;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Matching ratio R(A←B) = (1/n_B) Σ_j 1[max_i S_ij > τ] from the per-query
/// maxima (strict `>`, SPEC §5). 0 for an empty query set.
pub fn matching_ratio(max_per_query: &[f32], threshold: f32) -> f64 {
    if max_per_query.is_empty() {
        return 0.0;
    }
    let hits = max_per_query.iter().filter(|&&v| v > threshold).count();
    hits as f64 / max_per_query.len() as f64
}

/// MMCS = mean_j max_i S_ij (Sharkey et al. 2022), accumulated in f64.
/// 0 for an empty query set.
pub fn mmcs(max_per_query: &[f32]) -> f64 {
    if max_per_query.is_empty() {
        return 0.0;
    }
    max_per_query.iter().map(|&v| v as f64).sum::<f64>() / max_per_query.len() as f64
}

/// A fixed-bin histogram over `[lo, hi]`. Bin b covers
/// `[lo + b·w, lo + (b+1)·w)` with w = (hi − lo)/bins; the last bin also
/// holds `hi`. Values outside the range (cosines a rounding error past ±1)
/// are clamped into the edge bins, so `counts` sums to the number of values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// 1-based rank this histogram describes (1 = Top-1).
    pub rank: usize,
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Count per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Histogram of `values` with `bins` equal bins over `[lo, hi]`.
    pub fn new(rank: usize, values: &[f32], bins: usize, lo: f64, hi: f64) -> Result<Self> {
        if bins == 0 || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            return Err(MatchError::InvalidOption(format!(
                "histogram needs bins ≥ 1 and hi > lo (got {bins} bins over [{lo}, {hi}])"
            )));
        }
        let mut counts = vec![0u64; bins];
        let scale = bins as f64 / (hi - lo);
        for &v in values {
            let b = ((v as f64 - lo) * scale).floor();
            // NaN cannot occur (inputs are validated), but clamp anyway.
            let b = if b.is_nan() {
                0.0
            } else {
                b.clamp(0.0, (bins - 1) as f64)
            };
            counts[b as usize] += 1;
        }
        Ok(Histogram {
            rank,
            lo,
            hi,
            counts,
        })
    }

    /// Lower edge of bin `b`.
    pub fn bin_lo(&self, b: usize) -> f64 {
        self.lo + (self.hi - self.lo) * b as f64 / self.counts.len() as f64
    }
}

/// Histograms of the Top-1..Top-k values of a profile over `[-1, 1]`.
pub fn top_n_histograms(top: &TopN, bins: usize) -> Result<Vec<Histogram>> {
    (0..top.k)
        .map(|r| Histogram::new(r + 1, &top.rank_values(r), bins, -1.0, 1.0))
        .collect()
}

/// Analytic chance level √(2 ln n_ref)/√d: the expected max cosine of a
/// random unit vector in ℝᵈ against n_ref random ones, to leading order
/// (an overestimate at finite n; see [`chance_level_monte_carlo`]).
pub fn chance_level_analytic(n_ref: usize, dim: usize) -> f64 {
    if n_ref <= 1 || dim == 0 {
        return 0.0;
    }
    (2.0 * (n_ref as f64).ln()).sqrt() / (dim as f64).sqrt()
}

/// Random isotropic unit vectors (normalized standard Gaussians), `count ×
/// dim`. Rows are drawn in fixed chunks, each from its own ChaCha8 stream
/// seeded from `rng`, so the result depends only on `rng`'s state, not on
/// the number of threads.
pub fn random_unit_vectors<R: Rng + ?Sized>(
    rng: &mut R,
    count: usize,
    dim: usize,
    label: &str,
) -> Result<UnitVectors> {
    const ROWS: usize = 256;
    let chunks = count.div_ceil(ROWS);
    let seeds: Vec<u64> = (0..chunks).map(|_| rng.random()).collect();
    let mut data = vec![0.0f32; count * dim];
    data.par_chunks_mut((ROWS * dim).max(1))
        .zip(seeds)
        .for_each(|(chunk, seed)| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            fill_gaussian(&mut r, chunk);
        });
    UnitVectors::from_rows(label, &data, count, dim)
}

/// Standard normal samples by Box–Muller (rand_distr is not a dependency).
fn fill_gaussian<R: Rng>(rng: &mut R, out: &mut [f32]) {
    let mut it = out.chunks_mut(2);
    for pair in &mut it {
        // u1 in (0, 1] so ln never sees 0.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        pair[0] = (r * c) as f32;
        if pair.len() > 1 {
            pair[1] = (r * s) as f32;
        }
    }
}

/// Monte Carlo chance level: the mean over `queries` random unit vectors in
/// ℝᵈ of their max cosine against `n_ref` random unit vectors. Seeded by
/// the caller's RNG.
pub fn chance_level_monte_carlo<R: Rng + ?Sized>(
    rng: &mut R,
    n_ref: usize,
    dim: usize,
    queries: usize,
    tile: &TileConfig,
) -> Result<f64> {
    if n_ref == 0 || queries == 0 || dim == 0 {
        return Ok(0.0);
    }
    let refs = random_unit_vectors(rng, n_ref, dim, "random reference")?;
    let qs = random_unit_vectors(rng, queries, dim, "random query")?;
    let top = top_n(&refs, &qs, 1, tile)?;
    Ok(mmcs(&top.max_values()))
}
