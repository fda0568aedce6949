//! Per-feature deciles of the nonzero activations (SPEC §4), with and
//! without position 0.
//!
//! **Exact mode** (the default while it fits): every nonzero value is kept
//! (f32) per feature, split into positions ≥ 1 and position 0 so nothing is
//! stored twice; that needs 4 bytes × total nonzeros (e.g. 1M tokens at
//! L0 32: 128 MB). Quantiles are numpy's default `linear` method: for the m
//! sorted values x₀ ≤ … ≤ x_{m−1} and q ∈ [0, 1], h = (m−1)q and
//! Q(q) = x_⌊h⌋ + (h − ⌊h⌋)(x_⌊h⌋+1 − x_⌊h⌋). A never-firing feature gets
//! all zeros.
//!
//! **Reservoir mode**: when the stored values (Vec capacities, checked after
//! every batch, so the peak is the budget plus one batch) exceed
//! [`DecileConfig::memory_budget_bytes`], every feature switches to a
//! uniform reservoir sample (Vitter's algorithm R, seeded SplitMix64) of at most
//! m values, one for positions ≥ 1 and one for all positions. The values
//! already stored are subsampled uniformly (partial Fisher–Yates), which is
//! exactly the state algorithm R would have reached, and features that have
//! fired at most m times stay exact. Memory is then ≤ 8·m·n bytes.
//!
//! Error bound of a sampled feature: by the Dvoretzky–Kiefer–Wolfowitz
//! inequality (Massart's constant; sampling without replacement from the
//! finite population only concentrates more), with probability ≥ 1 − δ the
//! sample's empirical CDF is within ε = √(ln(2/δ)/(2m)) of the population's
//! everywhere; the linear interpolation moves the sample rank by at most
//! 1/m. So each reported decile v of level q satisfies
//! |F(v) − q| ≤ ε + 1/m (F = the feature's empirical CDF over all its
//! values), simultaneously for all ten levels, with probability ≥ 1 − δ per
//! feature (≥ 1 − δ·S over the S sampled features, by the union bound). The
//! report states the mode, m, δ and ε + 1/m.

use rayon::prelude::*;
use serde::Serialize;

/// Decile levels q = 0.1, 0.2, …, 1.0.
pub const DECILE_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Default memory budget for exact deciles (2 GiB of stored values).
pub const DEFAULT_DECILE_BUDGET: u64 = 2 << 30;

/// Settings of the decile accumulator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecileConfig {
    /// Bytes of stored values above which reservoir mode starts.
    pub memory_budget_bytes: u64,
    /// Reservoir size m per feature and set; `None`: budget / (8 n), at least
    /// 64 (two reservoirs of f32 per feature fill the budget).
    pub reservoir_size: Option<usize>,
    /// Seed of the reservoir sampling.
    pub seed: u64,
    /// Failure probability δ of the stated error bound.
    pub delta: f64,
}

impl Default for DecileConfig {
    fn default() -> Self {
        DecileConfig {
            memory_budget_bytes: DEFAULT_DECILE_BUDGET,
            reservoir_size: None,
            seed: 49,
            delta: 0.01,
        }
    }
}

/// Which way the deciles were computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecileMode {
    /// Every value kept: exact.
    Exact,
    /// Per-feature reservoir samples for features with more than m values.
    Reservoir,
}

/// How the deciles were computed and what it cost.
///
/// JSON (`deciles` in `stats.json`): `{"mode": "exact"|"reservoir",
/// "memory_budget_bytes": u64, "exact_bytes": u64, "peak_bytes": u64,
/// "reservoir_size": usize|null, "delta": f64|null,
/// "rank_error_bound": f64|null, "features_sampled_all": u64,
/// "features_sampled_excl0": u64, "levels": [f64; 10]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecileInfo {
    /// Exact or reservoir.
    pub mode: DecileMode,
    /// The configured budget.
    pub memory_budget_bytes: u64,
    /// What exact mode needs: 4 × total nonzeros.
    pub exact_bytes: u64,
    /// Largest value storage observed (bytes of Vec capacity).
    pub peak_bytes: u64,
    /// m, in reservoir mode.
    pub reservoir_size: Option<usize>,
    /// δ, in reservoir mode.
    pub delta: Option<f64>,
    /// ε + 1/m with ε = √(ln(2/δ)/(2m)): bound on |F(v) − q| for sampled
    /// features, in reservoir mode.
    pub rank_error_bound: Option<f64>,
    /// Features whose all-positions deciles come from a sample.
    pub features_sampled_all: u64,
    /// Features whose positions ≥ 1 deciles come from a sample.
    pub features_sampled_excl0: u64,
    /// The levels q.
    pub levels: Vec<f64>,
}

/// Per-feature deciles (written as `deciles.csv`: `feature,count_all,
/// q10..q100,count_excl0,q10_excl0..q100_excl0,sampled_all,sampled_excl0`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecileTable {
    /// Deciles over all positions.
    pub all: Vec<[f64; 10]>,
    /// Number of nonzero values over all positions.
    pub count_all: Vec<u64>,
    /// Whether `all` came from a sample.
    pub sampled_all: Vec<bool>,
    /// Deciles over positions ≥ 1.
    pub excl_pos0: Vec<[f64; 10]>,
    /// Number of nonzero values at positions ≥ 1.
    pub count_excl0: Vec<u64>,
    /// Whether `excl_pos0` came from a sample.
    pub sampled_excl0: Vec<bool>,
    /// Mode and memory.
    pub info: DecileInfo,
}

/// numpy `percentile(..., method="linear")` of sorted values at level
/// q ∈ [0, 1]; 0 for an empty slice.
pub fn quantile_linear_sorted(sorted: &[f32], q: f64) -> f64 {
    let m = sorted.len();
    if m == 0 {
        return 0.0;
    }
    let h = (m - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = (h.floor() as usize).min(m - 1);
    let hi = (lo + 1).min(m - 1);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    a + (h - lo as f64) * (b - a)
}

/// The ten deciles of `values` (sorted in place); all zeros if empty.
pub fn deciles_of(values: &mut [f32]) -> [f64; 10] {
    values.sort_unstable_by(f32::total_cmp);
    DECILE_LEVELS.map(|q| quantile_linear_sorted(values, q))
}

/// ε = √(ln(2/δ)/(2m)), the DKW sup-norm CDF error of m samples at
/// confidence 1 − δ.
pub fn dkw_epsilon(m: usize, delta: f64) -> f64 {
    ((2.0 / delta).ln() / (2.0 * m as f64)).sqrt()
}

/// SplitMix64 (Steele et al. 2014): the reservoir's random source. One
/// draw per value seen, so it must be cheap (in the bench it made reservoir
/// mode ~1.5× faster than ChaCha8); its quality is ample for picking slots.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..bound (multiply-shift; the bias ≤ bound / 2⁶⁴ is
    /// negligible for any count of values we can see).
    #[inline]
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

#[derive(Clone, Debug, Default)]
struct Reservoir {
    seen: u64,
    buf: Vec<f32>,
}

impl Reservoir {
    /// A reservoir that has seen all of `vals`: a uniform m-subset of them.
    fn from_values(mut vals: Vec<f32>, m: usize, rng: &mut SplitMix64) -> Self {
        let seen = vals.len() as u64;
        if vals.len() > m {
            for j in 0..m {
                let r = j + rng.below((vals.len() - j) as u64) as usize;
                vals.swap(j, r);
            }
            vals.truncate(m);
        }
        vals.shrink_to_fit();
        Reservoir { seen, buf: vals }
    }

    /// Algorithm R.
    #[inline]
    fn push(&mut self, v: f32, m: usize, rng: &mut SplitMix64) {
        self.seen += 1;
        if self.buf.len() < m {
            self.buf.push(v);
        } else {
            let j = rng.below(self.seen);
            if j < m as u64 {
                self.buf[j as usize] = v;
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Store {
    Exact {
        excl: Vec<Vec<f32>>,
        pos0: Vec<Vec<f32>>,
    },
    Reservoir {
        m: usize,
        excl: Vec<Reservoir>,
        all: Vec<Reservoir>,
        rng: SplitMix64,
    },
}

/// Streaming decile accumulator (see the module docs for the two modes).
#[derive(Clone, Debug)]
pub struct DecileAccumulator {
    cfg: DecileConfig,
    total: u64,
    peak_bytes: u64,
    store: Store,
}

impl DecileAccumulator {
    /// An empty accumulator for `n_features` features, in exact mode.
    pub fn new(n_features: usize, cfg: DecileConfig) -> Self {
        DecileAccumulator {
            cfg,
            total: 0,
            peak_bytes: 0,
            store: Store::Exact {
                excl: vec![Vec::new(); n_features],
                pos0: vec![Vec::new(); n_features],
            },
        }
    }

    /// The reservoir size reservoir mode uses.
    pub fn reservoir_size(&self, n_features: usize) -> usize {
        self.cfg.reservoir_size.unwrap_or_else(|| {
            (self.cfg.memory_budget_bytes / (8 * n_features.max(1) as u64)).max(64) as usize
        })
    }

    /// Adds one token's entries at position `t`.
    #[inline]
    pub(crate) fn push_token(&mut self, t: usize, idx: &[u32], vals: &[f32]) {
        match &mut self.store {
            Store::Exact { excl, pos0 } => {
                let dst = if t == 0 { pos0 } else { excl };
                for (&i, &v) in idx.iter().zip(vals) {
                    if v != 0.0 {
                        dst[i as usize].push(v);
                        self.total += 1;
                    }
                }
            }
            Store::Reservoir { m, excl, all, rng } => {
                for (&i, &v) in idx.iter().zip(vals) {
                    if v != 0.0 {
                        let i = i as usize;
                        all[i].push(v, *m, rng);
                        if t > 0 {
                            excl[i].push(v, *m, rng);
                        }
                        self.total += 1;
                    }
                }
            }
        }
    }

    /// Bytes of value storage held now (Vec capacities).
    pub fn held_bytes(&self) -> u64 {
        let cap = |v: &[Vec<f32>]| v.iter().map(|x| x.capacity() as u64).sum::<u64>();
        let rcap = |v: &[Reservoir]| v.iter().map(|x| x.buf.capacity() as u64).sum::<u64>();
        4 * match &self.store {
            Store::Exact { excl, pos0 } => cap(excl) + cap(pos0),
            Store::Reservoir { excl, all, .. } => rcap(excl) + rcap(all),
        }
    }

    /// Called after each batch: tracks the peak and switches to reservoir
    /// mode when over budget.
    pub(crate) fn end_batch(&mut self) {
        let held = self.held_bytes();
        self.peak_bytes = self.peak_bytes.max(held);
        if held <= self.cfg.memory_budget_bytes {
            return;
        }
        let n = match &self.store {
            Store::Exact { excl, .. } => excl.len(),
            Store::Reservoir { .. } => return,
        };
        let m = self.reservoir_size(n);
        let Store::Exact { excl, pos0 } = &mut self.store else {
            return;
        };
        let mut rng = SplitMix64(self.cfg.seed);
        let (mut r_excl, mut r_all) = (Vec::with_capacity(n), Vec::with_capacity(n));
        // Feature by feature, so the transient copy is one feature's values.
        for (e, p) in excl.iter_mut().zip(pos0.iter_mut()) {
            let e = std::mem::take(e);
            let p = std::mem::take(p);
            let mut a = Vec::with_capacity(e.len() + p.len());
            a.extend_from_slice(&e);
            a.extend_from_slice(&p);
            drop(p);
            r_all.push(Reservoir::from_values(a, m, &mut rng));
            r_excl.push(Reservoir::from_values(e, m, &mut rng));
        }
        self.store = Store::Reservoir {
            m,
            excl: r_excl,
            all: r_all,
            rng,
        };
    }

    /// The mode now.
    pub fn mode(&self) -> DecileMode {
        match self.store {
            Store::Exact { .. } => DecileMode::Exact,
            Store::Reservoir { .. } => DecileMode::Reservoir,
        }
    }

    /// Sorts and interpolates (parallel over features).
    pub fn finish(self) -> DecileTable {
        let exact_bytes = 4 * self.total;
        let peak_bytes = self.peak_bytes.max(self.held_bytes());
        let mode = self.mode();
        // Per feature: (deciles, count, sampled) for all, then excl.
        type Row = (([f64; 10], u64, bool), ([f64; 10], u64, bool));
        let (rows, m): (Vec<Row>, Option<usize>) = match self.store {
            Store::Exact { excl, pos0 } => (
                excl.into_par_iter()
                    .zip(pos0.into_par_iter())
                    .map(|(mut e, p)| {
                        let mut a = Vec::with_capacity(e.len() + p.len());
                        a.extend_from_slice(&e);
                        a.extend_from_slice(&p);
                        let (ca, ce) = (a.len() as u64, e.len() as u64);
                        (
                            (deciles_of(&mut a), ca, false),
                            (deciles_of(&mut e), ce, false),
                        )
                    })
                    .collect(),
                None,
            ),
            Store::Reservoir { m, excl, all, .. } => (
                all.into_par_iter()
                    .zip(excl.into_par_iter())
                    .map(|(mut a, mut e)| {
                        let sa = a.seen > a.buf.len() as u64;
                        let se = e.seen > e.buf.len() as u64;
                        (
                            (deciles_of(&mut a.buf), a.seen, sa),
                            (deciles_of(&mut e.buf), e.seen, se),
                        )
                    })
                    .collect(),
                Some(m),
            ),
        };
        let n = rows.len();
        let mut t = DecileTable {
            all: Vec::with_capacity(n),
            count_all: Vec::with_capacity(n),
            sampled_all: Vec::with_capacity(n),
            excl_pos0: Vec::with_capacity(n),
            count_excl0: Vec::with_capacity(n),
            sampled_excl0: Vec::with_capacity(n),
            info: DecileInfo {
                mode,
                memory_budget_bytes: self.cfg.memory_budget_bytes,
                exact_bytes,
                peak_bytes,
                reservoir_size: m,
                delta: m.map(|_| self.cfg.delta),
                rank_error_bound: m.map(|m| dkw_epsilon(m, self.cfg.delta) + 1.0 / m as f64),
                features_sampled_all: 0,
                features_sampled_excl0: 0,
                levels: DECILE_LEVELS.to_vec(),
            },
        };
        for ((da, ca, sa), (de, ce, se)) in rows {
            t.all.push(da);
            t.count_all.push(ca);
            t.sampled_all.push(sa);
            t.excl_pos0.push(de);
            t.count_excl0.push(ce);
            t.sampled_excl0.push(se);
        }
        t.info.features_sampled_all = t.sampled_all.iter().filter(|&&s| s).count() as u64;
        t.info.features_sampled_excl0 = t.sampled_excl0.iter().filter(|&&s| s).count() as u64;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_quantile_matches_hand_values() {
        // numpy: np.percentile([1, 2, 4, 8], [10, 50, 100]) = [1.3, 3.0, 8.0]
        let s = [1.0f32, 2.0, 4.0, 8.0];
        assert!((quantile_linear_sorted(&s, 0.1) - 1.3).abs() < 1e-12);
        assert_eq!(quantile_linear_sorted(&s, 0.5), 3.0);
        assert_eq!(quantile_linear_sorted(&s, 1.0), 8.0);
        assert_eq!(quantile_linear_sorted(&[5.0], 0.3), 5.0);
        assert_eq!(deciles_of(&mut []), [0.0; 10]);
    }
}
