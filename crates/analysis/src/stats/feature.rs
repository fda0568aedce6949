//! Per-feature statistics over positions ≥ 1 (SPEC §4).
//!
//! SPEC §4 gives the density as |Fᵢ|/(N(T−1)), with Fᵢ the set of tokens
//! (positions ≥ 1) where feature i fires, and describes every other
//! statistic of §4 over nonzero entries; the study's Figures plot "feature
//! average" against "feature density", which would be near-redundant if the
//! average already contained the density as a factor. So `mean` / `std` are
//! over Fᵢ (the nonzero activations). Because the same sums give it for free,
//! the table also has `mean_all` / `std_all` over all N(T−1) tokens (zeros
//! included): mean_all = mean · density.

use super::position::mean_std;
use serde::Serialize;

/// Streaming per-feature accumulator: count, Σ, Σ² (positions ≥ 1) and the
/// position-0 count, O(n) memory.
#[derive(Clone, Debug)]
pub struct FeatureStats {
    rows: u64,
    seq_len: usize,
    count: Vec<u64>,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    count_pos0: Vec<u64>,
}

/// Per-feature table (written as `features.csv`, one line per feature, in
/// this column order: `feature,count,mean,std,density,mean_all,std_all,
/// count_pos0`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureTable {
    /// |Fᵢ|: nonzero activations at positions ≥ 1.
    pub count: Vec<u64>,
    /// Mean over Fᵢ (0 for a feature that never fires there).
    pub mean: Vec<f64>,
    /// Population std over Fᵢ.
    pub std: Vec<f64>,
    /// |Fᵢ| / (N(T−1)) (0 when T = 1).
    pub density: Vec<f64>,
    /// Mean over all N(T−1) tokens, zeros included.
    pub mean_all: Vec<f64>,
    /// Population std over all N(T−1) tokens, zeros included.
    pub std_all: Vec<f64>,
    /// Nonzero activations at position 0 (not in any other column).
    pub count_pos0: Vec<u64>,
}

impl FeatureStats {
    /// An empty accumulator.
    pub fn new(n_features: usize, seq_len: usize) -> Self {
        FeatureStats {
            rows: 0,
            seq_len,
            count: vec![0; n_features],
            sum: vec![0.0; n_features],
            sumsq: vec![0.0; n_features],
            count_pos0: vec![0; n_features],
        }
    }

    /// Adds one token's entries at position `t`.
    #[inline]
    pub(crate) fn push_token(&mut self, t: usize, idx: &[u32], vals: &[f32]) {
        for (&i, &v) in idx.iter().zip(vals) {
            if v == 0.0 {
                continue;
            }
            let i = i as usize;
            if t == 0 {
                self.count_pos0[i] += 1;
            } else {
                let v = v as f64;
                self.count[i] += 1;
                self.sum[i] += v;
                self.sumsq[i] += v * v;
            }
        }
    }

    pub(crate) fn add_rows(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// The table.
    pub fn report(&self) -> FeatureTable {
        let tokens = self.rows * self.seq_len.saturating_sub(1) as u64;
        let n = self.count.len();
        let mut t = FeatureTable {
            count: self.count.clone(),
            mean: Vec::with_capacity(n),
            std: Vec::with_capacity(n),
            density: Vec::with_capacity(n),
            mean_all: Vec::with_capacity(n),
            std_all: Vec::with_capacity(n),
            count_pos0: self.count_pos0.clone(),
        };
        for i in 0..n {
            let (m, s) = mean_std(self.count[i], self.sum[i], self.sumsq[i]);
            // Zeros add to the count but not to Σ or Σ².
            let (ma, sa) = mean_std(tokens, self.sum[i], self.sumsq[i]);
            t.mean.push(m);
            t.std.push(s);
            t.density.push(if tokens > 0 {
                self.count[i] as f64 / tokens as f64
            } else {
                0.0
            });
            t.mean_all.push(ma);
            t.std_all.push(sa);
        }
        t
    }
}
