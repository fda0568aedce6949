//! Reconstruction metrics (SPEC §3), streamed over batches of tokens.
//!
//! - MSE: elementwise mean Σ‖x − x̂‖² / (N·d).
//! - Normalized MSE (OpenAI's definition): the mean over tokens of
//!   ‖x − x̂‖² / ‖x‖²; tokens with ‖x‖ = 0 are left out of it (and counted
//!   in `zero_norm_tokens`). `nmse_ratio_of_sums` = Σ‖x − x̂‖² / Σ‖x‖² is
//!   given beside it.
//! - FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean over all evaluated tokens;
//!   explained variance = 1 − FVU. The denominator is streamed exactly
//!   without the cancellation-prone Σ‖x‖² − N‖x̄‖²: each batch's mean and
//!   M2 = Σ‖x − x̄_batch‖² are computed two-pass in f64 (the batch is in
//!   memory) and merged with Chan et al.'s pairwise update
//!   M2 = M2_a + M2_b + ‖x̄_b − x̄_a‖² · n_a n_b / (n_a + n_b). This matters
//!   for residual streams, whose mean (and BOS outliers) can be orders of
//!   magnitude above the spread.
//! - L0 = mean number of nonzero codes per token; dead fraction = features
//!   that never fire over the evaluated tokens / n; density per feature =
//!   fraction of evaluated tokens where it fires.
//! - Per-position curves (when rows are sequences of T): MSE, normalized
//!   MSE and L0 per position, always over all positions.
//!
//! `skip_position0` leaves position 0 (BOS) out of the aggregate metrics
//! (not out of the per-position curves): BOS residuals are outliers (norm
//! ~3000 vs ~100 in GPT-2) that dominate MSE and FVU. Off by default.
//!
//! Metrics are in the space of the `x` passed in. [`ReconAccumulator::push_sae`]
//! uses the SAE's input space (normalization undone), which is what is
//! spliced into the model; an SAE trained on centred inputs (SAELens
//! `center_writing_weights`) must be given centred `x`, see
//! [`super::input`].

use super::{EvalError, Result};
use crate::stats::check_codes;
use saelab_sae::{Sae, SparseCodes};
use serde::Serialize;

/// Settings of [`ReconAccumulator`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconConfig {
    /// Rows are sequences of this length (enables per-position curves and
    /// `skip_position0`); `None`: tokens are unrelated.
    pub seq_len: Option<usize>,
    /// Leave position 0 out of the aggregates (needs `seq_len`).
    pub skip_position0: bool,
}

/// Streaming reconstruction-metric accumulator.
#[derive(Clone, Debug)]
pub struct ReconAccumulator {
    d: usize,
    n: usize,
    cfg: ReconConfig,
    tokens: u64,
    sse: f64,
    sum_sq_x: f64,
    nmse_sum: f64,
    nmse_tokens: u64,
    mean: Vec<f64>,
    m2: f64,
    l0_sum: u64,
    fires: Vec<u64>,
    pos: Vec<PosAcc>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PosAcc {
    tokens: u64,
    sse: f64,
    nmse_sum: f64,
    nmse_tokens: u64,
    l0_sum: u64,
}

/// Per-position curves (index = position).
///
/// JSON: `{"tokens": [u64; T], "mse": [f64; T], "nmse": [f64|null; T],
/// "l0": [f64; T]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReconCurves {
    /// Tokens seen at each position.
    pub tokens: Vec<u64>,
    /// Elementwise MSE at each position.
    pub mse: Vec<f64>,
    /// Normalized MSE at each position (`None` if every x was zero).
    pub nmse: Vec<Option<f64>>,
    /// Mean L0 at each position.
    pub l0: Vec<f64>,
}

/// Reconstruction metrics.
///
/// JSON (`recon` in `eval.json`): `{"d": usize, "n": usize, "tokens": u64,
/// "skip_position0": bool, "mse": f64, "nmse": f64|null,
/// "nmse_ratio_of_sums": f64|null, "zero_norm_tokens": u64,
/// "fvu": f64|null, "explained_variance": f64|null, "l0": f64,
/// "dead_count": u64, "dead_fraction": f64, "per_position":
/// ReconCurves|null}`; `null` where the denominator is 0 (no tokens, all-
/// zero or constant inputs). Per-feature density and fire counts are not in
/// the JSON; they are written as `features.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReconReport {
    /// Input width.
    pub d: usize,
    /// Dictionary size.
    pub n: usize,
    /// Tokens in the aggregates.
    pub tokens: u64,
    /// Whether position 0 was left out of the aggregates.
    pub skip_position0: bool,
    /// Σ‖x − x̂‖² / (N·d).
    pub mse: f64,
    /// Mean over tokens (‖x‖ > 0) of ‖x − x̂‖² / ‖x‖².
    pub nmse: Option<f64>,
    /// Σ‖x − x̂‖² / Σ‖x‖².
    pub nmse_ratio_of_sums: Option<f64>,
    /// Tokens with ‖x‖ = 0 (left out of `nmse`).
    pub zero_norm_tokens: u64,
    /// Σ‖x − x̂‖² / Σ‖x − x̄‖².
    pub fvu: Option<f64>,
    /// 1 − FVU.
    pub explained_variance: Option<f64>,
    /// Mean #(f ≠ 0) per token.
    pub l0: f64,
    /// Features that never fired.
    pub dead_count: u64,
    /// dead_count / n.
    pub dead_fraction: f64,
    /// Per-position curves (with `seq_len`).
    pub per_position: Option<ReconCurves>,
    /// Per-feature number of tokens where it fired.
    #[serde(skip)]
    pub fire_count: Vec<u64>,
    /// Per-feature fire_count / tokens.
    #[serde(skip)]
    pub density: Vec<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && b.is_finite()).then(|| a / b)
}

impl ReconAccumulator {
    /// An accumulator for inputs of width `d` and `n` features.
    pub fn new(d: usize, n: usize, cfg: ReconConfig) -> Result<Self> {
        if d == 0 || n == 0 {
            return Err(EvalError::Config("d and n must be ≥ 1".into()));
        }
        if cfg.seq_len == Some(0) {
            return Err(EvalError::Config("seq_len must be ≥ 1".into()));
        }
        if cfg.skip_position0 && cfg.seq_len.is_none() {
            return Err(EvalError::Config(
                "skip_position0 needs seq_len (which rows are position 0?)".into(),
            ));
        }
        Ok(ReconAccumulator {
            d,
            n,
            cfg,
            tokens: 0,
            sse: 0.0,
            sum_sq_x: 0.0,
            nmse_sum: 0.0,
            nmse_tokens: 0,
            mean: vec![0.0; d],
            m2: 0.0,
            l0_sum: 0,
            fires: vec![0; n],
            pos: vec![PosAcc::default(); cfg.seq_len.unwrap_or(0)],
        })
    }

    /// Adds a batch: inputs `x` and reconstructions `x_hat` (B×d row-major)
    /// and the codes (B rows). With `seq_len`, B must be whole sequences.
    pub fn push(&mut self, x: &[f32], x_hat: &[f32], codes: &SparseCodes) -> Result<()> {
        let d = self.d;
        if !x.len().is_multiple_of(d) || x_hat.len() != x.len() {
            return Err(EvalError::Shape(format!(
                "x has {} and x_hat {} values; both must be B×d with d = {d}",
                x.len(),
                x_hat.len()
            )));
        }
        let b = x.len() / d;
        if codes.rows != b {
            return Err(EvalError::Shape(format!(
                "codes have {} rows, x has {b}",
                codes.rows
            )));
        }
        check_codes(codes, self.n, self.cfg.seq_len.unwrap_or(1))?;
        let position = |r: usize| self.cfg.seq_len.map(|t| r % t);
        let included = |r: usize| !(self.cfg.skip_position0 && position(r) == Some(0));

        // Batch mean of the included tokens (first pass), f64.
        let mut bmean = vec![0.0f64; d];
        let mut nb = 0u64;
        for r in (0..b).filter(|&r| included(r)) {
            for (m, &v) in bmean.iter_mut().zip(&x[r * d..(r + 1) * d]) {
                *m += v as f64;
            }
            nb += 1;
        }
        if nb > 0 {
            bmean.iter_mut().for_each(|m| *m /= nb as f64);
        }
        let mut bm2 = 0.0f64;
        for r in 0..b {
            let (xr, hr) = (&x[r * d..(r + 1) * d], &x_hat[r * d..(r + 1) * d]);
            let (mut err, mut nrm) = (0.0f64, 0.0f64);
            for (&a, &h) in xr.iter().zip(hr) {
                let (a, h) = (a as f64, h as f64);
                err += (a - h) * (a - h);
                nrm += a * a;
            }
            if !(err.is_finite() && nrm.is_finite()) {
                return Err(EvalError::Shape(format!(
                    "non-finite input or reconstruction in row {r}"
                )));
            }
            let (c0, c1) = (codes.indptr[r], codes.indptr[r + 1]);
            let l0 = codes.val[c0..c1].iter().filter(|&&v| v != 0.0).count() as u64;
            let rel = (nrm > 0.0).then(|| err / nrm);
            if let Some(t) = position(r) {
                let p = &mut self.pos[t];
                p.tokens += 1;
                p.sse += err;
                p.l0_sum += l0;
                if let Some(q) = rel {
                    p.nmse_sum += q;
                    p.nmse_tokens += 1;
                }
            }
            if !included(r) {
                continue;
            }
            self.sse += err;
            self.sum_sq_x += nrm;
            if let Some(q) = rel {
                self.nmse_sum += q;
                self.nmse_tokens += 1;
            }
            self.l0_sum += l0;
            for (&i, &v) in codes.idx[c0..c1].iter().zip(&codes.val[c0..c1]) {
                if v != 0.0 {
                    self.fires[i as usize] += 1;
                }
            }
            bm2 += xr
                .iter()
                .zip(&bmean)
                .map(|(&a, &m)| (a as f64 - m) * (a as f64 - m))
                .sum::<f64>();
        }
        // Chan et al. merge of (tokens, mean, M2) with the batch's.
        if nb > 0 {
            let (na, nbf) = (self.tokens as f64, nb as f64);
            let tot = na + nbf;
            let mut dist2 = 0.0f64;
            for (m, &bm) in self.mean.iter_mut().zip(&bmean) {
                let delta = bm - *m;
                dist2 += delta * delta;
                *m += delta * nbf / tot;
            }
            self.m2 += bm2 + dist2 * na * nbf / tot;
            self.tokens += nb;
        }
        Ok(())
    }

    /// Encodes and reconstructs `x` (B×d) with `sae` in its input space and
    /// adds the batch (one encode serves both codes and reconstruction).
    pub fn push_sae(&mut self, sae: &Sae, x: &[f32]) -> Result<()> {
        sae.check_batch(x)?;
        let (xt, norm) = sae.preprocess(x);
        let codes = sae.encode_normalized(&xt);
        let x_hat = sae.decode(&codes, norm.as_ref())?;
        self.push(x, &x_hat, &codes)
    }

    /// Tokens in the aggregates so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The metrics.
    pub fn finish(&self) -> ReconReport {
        let tokens = self.tokens;
        let nf = tokens as f64;
        let fvu = ratio(self.sse, self.m2);
        let dead = self.fires.iter().filter(|&&c| c == 0).count() as u64;
        let per_position = self.cfg.seq_len.map(|_| ReconCurves {
            tokens: self.pos.iter().map(|p| p.tokens).collect(),
            mse: self
                .pos
                .iter()
                .map(|p| ratio(p.sse, p.tokens as f64 * self.d as f64).unwrap_or(0.0))
                .collect(),
            nmse: self
                .pos
                .iter()
                .map(|p| ratio(p.nmse_sum, p.nmse_tokens as f64))
                .collect(),
            l0: self
                .pos
                .iter()
                .map(|p| ratio(p.l0_sum as f64, p.tokens as f64).unwrap_or(0.0))
                .collect(),
        });
        ReconReport {
            d: self.d,
            n: self.n,
            tokens,
            skip_position0: self.cfg.skip_position0,
            mse: ratio(self.sse, nf * self.d as f64).unwrap_or(0.0),
            nmse: ratio(self.nmse_sum, self.nmse_tokens as f64),
            nmse_ratio_of_sums: ratio(self.sse, self.sum_sq_x),
            zero_norm_tokens: tokens - self.nmse_tokens,
            fvu,
            explained_variance: fvu.map(|f| 1.0 - f),
            l0: ratio(self.l0_sum as f64, nf).unwrap_or(0.0),
            dead_count: dead,
            dead_fraction: dead as f64 / self.n as f64,
            per_position,
            density: self
                .fires
                .iter()
                .map(|&c| ratio(c as f64, nf).unwrap_or(0.0))
                .collect(),
            fire_count: self.fires.clone(),
        }
    }
}
