//! Per-position statistics of the nonzero code entries (SPEC §4): for each
//! position t over all N rows and all n features, count c_t, mean
//! Σ/max(c_t, 1), population std, density c_t/(N·n); pooled aggregates with
//! and without position 0; a moving-average overlay of the mean curve.

use super::sweep::moving_average;
use serde::Serialize;

/// Streaming per-position accumulator: three numbers per position, so its
/// memory is O(T) whatever N is.
#[derive(Clone, Debug)]
pub struct PositionStats {
    n: usize,
    rows: u64,
    count: Vec<u64>,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
}

/// Pooled statistics of the nonzero entries of a set of positions.
///
/// JSON: `{"count": u64, "mean": f64, "std": f64, "density": f64}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Aggregate {
    /// Number of nonzero entries.
    pub count: u64,
    /// Their mean (0 when there are none).
    pub mean: f64,
    /// Their population standard deviation (0 when there are none).
    pub std: f64,
    /// count / (N · n · number of positions) (0 for an empty set).
    pub density: f64,
}

/// Per-position curves and aggregates.
///
/// JSON schema (`positions` in `stats.json`): `{"count": [u64; T],
/// "mean": [f64; T], "std": [f64; T], "density": [f64; T],
/// "mean_ma": [f64; T], "mean_ma_excl0": [f64; T-1], "ma_window": usize,
/// "all": Aggregate, "excl_pos0": Aggregate}`. Index t of the `[_; T]`
/// arrays is position t; `mean_ma_excl0[i]` is position i + 1, averaged
/// without position 0 so the BOS outlier does not leak into its neighbours.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PositionReport {
    /// c_t.
    pub count: Vec<u64>,
    /// μ_t = Σ/max(c_t, 1).
    pub mean: Vec<f64>,
    /// Population std of the nonzero entries at t.
    pub std: Vec<f64>,
    /// c_t / (N·n).
    pub density: Vec<f64>,
    /// Moving average of `mean` over positions 0..T.
    pub mean_ma: Vec<f64>,
    /// Moving average of `mean` over positions 1..T.
    pub mean_ma_excl0: Vec<f64>,
    /// Window of the moving averages (see [`moving_average`]).
    pub ma_window: usize,
    /// Pooled over all positions.
    pub all: Aggregate,
    /// Pooled over positions ≥ 1.
    pub excl_pos0: Aggregate,
}

/// Mean and population std from a count, Σx and Σx² (f64). The clamp at 0
/// absorbs the rounding of E(x²) − E(x)² when all values are equal.
pub(crate) fn mean_std(count: u64, sum: f64, sumsq: f64) -> (f64, f64) {
    if count == 0 {
        return (0.0, 0.0);
    }
    let c = count as f64;
    let mean = sum / c;
    let var = (sumsq / c - mean * mean).max(0.0);
    (mean, var.sqrt())
}

impl PositionStats {
    /// An empty accumulator for `n_features` features and rows of `seq_len`.
    pub fn new(n_features: usize, seq_len: usize) -> Self {
        PositionStats {
            n: n_features,
            rows: 0,
            count: vec![0; seq_len],
            sum: vec![0.0; seq_len],
            sumsq: vec![0.0; seq_len],
        }
    }

    /// Adds the nonzero values of one token at position `t`.
    #[inline]
    pub(crate) fn push_token(&mut self, t: usize, vals: &[f32]) {
        let (mut c, mut s, mut q) = (0u64, 0.0f64, 0.0f64);
        for &v in vals {
            if v != 0.0 {
                let v = v as f64;
                c += 1;
                s += v;
                q += v * v;
            }
        }
        self.count[t] += c;
        self.sum[t] += s;
        self.sumsq[t] += q;
    }

    /// Records that `rows` more whole rows were pushed (for the densities).
    pub(crate) fn add_rows(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// Curves and aggregates; `ma_window` is the moving-average window.
    pub fn report(&self, ma_window: usize) -> PositionReport {
        let t_len = self.count.len();
        let per_pos = (self.rows as f64) * (self.n as f64);
        let dens = |c: u64, positions: usize| {
            let denom = per_pos * positions as f64;
            if denom > 0.0 {
                c as f64 / denom
            } else {
                0.0
            }
        };
        let (mut mean, mut std, mut density) = (vec![], vec![], vec![]);
        for t in 0..t_len {
            let (m, s) = mean_std(self.count[t], self.sum[t], self.sumsq[t]);
            mean.push(m);
            std.push(s);
            density.push(dens(self.count[t], 1));
        }
        let pool = |from: usize| {
            let c: u64 = self.count[from.min(t_len)..].iter().sum();
            let s: f64 = self.sum[from.min(t_len)..].iter().sum();
            let q: f64 = self.sumsq[from.min(t_len)..].iter().sum();
            let (m, sd) = mean_std(c, s, q);
            Aggregate {
                count: c,
                mean: m,
                std: sd,
                density: dens(c, t_len.saturating_sub(from)),
            }
        };
        PositionReport {
            mean_ma: moving_average(&mean, ma_window),
            mean_ma_excl0: moving_average(mean.get(1..).unwrap_or(&[]), ma_window),
            ma_window,
            all: pool(0),
            excl_pos0: pool(1),
            count: self.count.clone(),
            mean,
            std,
            density,
        }
    }
}
