//! Language-model loss with the SAE in the loop (SPEC §3): clean CE, CE with
//! the reconstruction spliced at the hook, CE with the hook zero-ablated,
//! ΔCE, CE recovered and KL(clean ‖ spliced), overall and per position.
//!
//! The model passes are the caller's; this module accumulates their
//! per-token outputs so no pass has to be stored:
//! - CE vectors as produced by `saelab_lm::ops::next_token_ce`: rows ×
//!   (T − 1) values, entry t = −log p(token_{t+1} | tokens_{≤t}). So CE
//!   position t is the loss of predicting token t + 1 (T − 1 positions).
//! - KL per token over all T positions, either precomputed with
//!   [`kl_rows`] or from the two logit batches
//!   ([`CeAccumulator::push_kl_logits`]), so logits never outlive a batch.
//!
//! Sums are f64. CE recovered = (CE_zero − CE_spliced)/(CE_zero − CE_clean)
//! is computed from the means, and per position from the per-position
//! means; when |CE_zero − CE_clean| ≤ 1e-9 · max(1, |CE_clean|) (zero
//! ablation does not change the loss, so there is nothing to recover) or any
//! term is not finite it is `None` (JSON `null`, empty CSV cell).

use super::{EvalError, Result};
use rayon::prelude::*;
use saelab_lm::ops::logsumexp;
use serde::Serialize;

/// KL(P ‖ Q) per row, P = softmax(clean row), Q = softmax(spliced row), in
/// nats: Σ_v p_v (log p_v − log q_v) with log-softmax l − logsumexp(l)
/// (max-shifted, f64), clamped at 0 against rounding. Rows of `vocab`
/// logits, row-major; identical rows give exactly 0.
pub fn kl_rows(clean_logits: &[f32], spliced_logits: &[f32], vocab: usize) -> Vec<f32> {
    assert!(vocab > 0, "vocab must be ≥ 1");
    assert_eq!(
        clean_logits.len(),
        spliced_logits.len(),
        "clean and spliced logits differ in length"
    );
    assert_eq!(
        clean_logits.len() % vocab,
        0,
        "logits are not rows of vocab"
    );
    clean_logits
        .par_chunks(vocab)
        .zip(spliced_logits.par_chunks(vocab))
        .map(|(p, q)| {
            let (lp, lq) = (logsumexp(p), logsumexp(q));
            let mut kl = 0.0f64;
            for (&a, &b) in p.iter().zip(q) {
                let la = a as f64 - lp;
                let lb = b as f64 - lq;
                let pa = la.exp();
                // p = 0 contributes 0 (also when log q = −∞).
                if pa > 0.0 {
                    kl += pa * (la - lb);
                }
            }
            kl.max(0.0) as f32
        })
        .collect()
}

/// CE recovered = (zero − spliced)/(zero − clean); `None` when the
/// denominator is within 1e-9·max(1, |clean|) of 0 or a term is not finite.
pub fn ce_recovered(ce_clean: f64, ce_spliced: f64, ce_zero: f64) -> Option<f64> {
    let den = ce_zero - ce_clean;
    let ok = [ce_clean, ce_spliced, ce_zero]
        .iter()
        .all(|v| v.is_finite())
        && den.abs() > 1e-9 * ce_clean.abs().max(1.0);
    ok.then(|| (ce_zero - ce_spliced) / den)
}

/// Streaming CE / KL accumulator for one SAE (several SAEs at one hook
/// share the clean and zero-ablated vectors).
#[derive(Clone, Debug)]
pub struct CeAccumulator {
    seq_len: usize,
    rows: u64,
    clean: Vec<f64>,
    spliced: Vec<f64>,
    zero: Vec<f64>,
    zero_rows: u64,
    kl: Vec<f64>,
    kl_rows: u64,
}

/// Per-position curves. CE arrays have T − 1 entries (index t = predicting
/// token t + 1); `kl` has T.
///
/// JSON: `{"ce_clean": [f64], "ce_spliced": [f64], "ce_zero": [f64]|null,
/// "delta_ce": [f64], "ce_recovered": [f64|null]|null, "kl": [f64]|null}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CeCurves {
    /// Mean clean CE per position.
    pub ce_clean: Vec<f64>,
    /// Mean spliced CE per position.
    pub ce_spliced: Vec<f64>,
    /// Mean zero-ablated CE per position.
    pub ce_zero: Option<Vec<f64>>,
    /// spliced − clean per position.
    pub delta_ce: Vec<f64>,
    /// CE recovered per position.
    pub ce_recovered: Option<Vec<Option<f64>>>,
    /// Mean KL(clean ‖ spliced) per position.
    pub kl: Option<Vec<f64>>,
}

/// LM-loss metrics.
///
/// JSON (`ce` in `eval.json`): `{"rows": u64, "tokens": u64,
/// "ce_clean": f64, "ce_spliced": f64, "ce_zero": f64|null,
/// "delta_ce": f64, "ce_recovered": f64|null, "kl": f64|null,
/// "kl_tokens": u64, "per_position": CeCurves}`; `tokens` = rows·(T − 1)
/// CE tokens, `kl_tokens` = KL tokens (rows·T).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CeReport {
    /// Rows pushed.
    pub rows: u64,
    /// CE tokens: rows · (T − 1).
    pub tokens: u64,
    /// Mean clean CE (nats).
    pub ce_clean: f64,
    /// Mean CE with the reconstruction spliced in.
    pub ce_spliced: f64,
    /// Mean CE with the hook zero-ablated (if pushed).
    pub ce_zero: Option<f64>,
    /// ce_spliced − ce_clean.
    pub delta_ce: f64,
    /// (ce_zero − ce_spliced)/(ce_zero − ce_clean).
    pub ce_recovered: Option<f64>,
    /// Mean KL(clean ‖ spliced) per token (if pushed).
    pub kl: Option<f64>,
    /// Tokens in the KL mean.
    pub kl_tokens: u64,
    /// Per-position curves.
    pub per_position: CeCurves,
}

impl CeAccumulator {
    /// An accumulator for rows of `seq_len` ≥ 2 tokens.
    pub fn new(seq_len: usize) -> Result<Self> {
        if seq_len < 2 {
            return Err(EvalError::Config(
                "CE needs rows of at least 2 tokens".into(),
            ));
        }
        let c = seq_len - 1;
        Ok(CeAccumulator {
            seq_len,
            rows: 0,
            clean: vec![0.0; c],
            spliced: vec![0.0; c],
            zero: vec![0.0; c],
            zero_rows: 0,
            kl: vec![0.0; seq_len],
            kl_rows: 0,
        })
    }

    /// Adds per-token CE vectors of a batch (rows × (T − 1) each). `zero`
    /// is optional but, once given, must be given for every batch (so the
    /// three means are over the same tokens).
    pub fn push_ce(&mut self, clean: &[f32], spliced: &[f32], zero: Option<&[f32]>) -> Result<()> {
        let c = self.seq_len - 1;
        if clean.is_empty() || !clean.len().is_multiple_of(c) || spliced.len() != clean.len() {
            return Err(EvalError::Shape(format!(
                "CE vectors of {} / {} values are not rows × (T − 1) = rows × {c}",
                clean.len(),
                spliced.len()
            )));
        }
        if let Some(z) = zero {
            if z.len() != clean.len() {
                return Err(EvalError::Shape(format!(
                    "zero-ablated CE has {} values, clean has {}",
                    z.len(),
                    clean.len()
                )));
            }
        }
        if self.rows > 0 && zero.is_some() != (self.zero_rows > 0) {
            return Err(EvalError::Shape(
                "zero-ablated CE must be given for every batch or for none".into(),
            ));
        }
        let all = clean.iter().chain(spliced).chain(zero.unwrap_or(&[]));
        if all.clone().any(|v| !v.is_finite()) {
            return Err(EvalError::Shape("non-finite CE value".into()));
        }
        let add = |acc: &mut [f64], v: &[f32]| {
            for row in v.chunks(c) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += x as f64;
                }
            }
        };
        add(&mut self.clean, clean);
        add(&mut self.spliced, spliced);
        let rows = (clean.len() / c) as u64;
        if let Some(z) = zero {
            add(&mut self.zero, z);
            self.zero_rows += rows;
        }
        self.rows += rows;
        Ok(())
    }

    /// Adds per-token KL values (rows × T, e.g. from [`kl_rows`]).
    pub fn push_kl(&mut self, kl: &[f32]) -> Result<()> {
        let t = self.seq_len;
        if kl.is_empty() || !kl.len().is_multiple_of(t) {
            return Err(EvalError::Shape(format!(
                "{} KL values are not rows × T = rows × {t}",
                kl.len()
            )));
        }
        if kl.iter().any(|v| !v.is_finite()) {
            return Err(EvalError::Shape("non-finite KL value".into()));
        }
        for row in kl.chunks(t) {
            for (a, &x) in self.kl.iter_mut().zip(row) {
                *a += x as f64;
            }
        }
        self.kl_rows += (kl.len() / t) as u64;
        Ok(())
    }

    /// Adds KL(clean ‖ spliced) from the two passes' logits (rows × T ×
    /// vocab each).
    pub fn push_kl_logits(&mut self, clean: &[f32], spliced: &[f32], vocab: usize) -> Result<()> {
        if vocab == 0
            || clean.len() != spliced.len()
            || !clean.len().is_multiple_of(vocab * self.seq_len)
        {
            return Err(EvalError::Shape(format!(
                "logits of {} / {} values are not rows × T × vocab (T = {}, vocab = {vocab})",
                clean.len(),
                spliced.len(),
                self.seq_len
            )));
        }
        self.push_kl(&kl_rows(clean, spliced, vocab))
    }

    /// The metrics.
    pub fn finish(&self) -> CeReport {
        let mean = |v: &[f64], rows: u64| -> Vec<f64> {
            v.iter()
                .map(|s| if rows > 0 { s / rows as f64 } else { 0.0 })
                .collect()
        };
        let overall = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let clean = mean(&self.clean, self.rows);
        let spliced = mean(&self.spliced, self.rows);
        let has_zero = self.zero_rows > 0;
        let zero = has_zero.then(|| mean(&self.zero, self.zero_rows));
        let has_kl = self.kl_rows > 0;
        let kl = has_kl.then(|| mean(&self.kl, self.kl_rows));
        // All positions hold the same number of tokens, so the overall mean
        // is the mean of the per-position means.
        let (cc, cs) = (overall(&clean), overall(&spliced));
        let cz = zero.as_deref().map(overall);
        CeReport {
            rows: self.rows,
            tokens: self.rows * (self.seq_len as u64 - 1),
            ce_clean: cc,
            ce_spliced: cs,
            ce_zero: cz,
            delta_ce: cs - cc,
            ce_recovered: cz.and_then(|z| ce_recovered(cc, cs, z)),
            kl: kl.as_deref().map(overall),
            kl_tokens: self.kl_rows * self.seq_len as u64,
            per_position: CeCurves {
                delta_ce: spliced.iter().zip(&clean).map(|(s, c)| s - c).collect(),
                ce_recovered: zero.as_ref().map(|z| {
                    (0..clean.len())
                        .map(|t| ce_recovered(clean[t], spliced[t], z[t]))
                        .collect()
                }),
                ce_clean: clean,
                ce_spliced: spliced,
                ce_zero: zero,
                kl,
            },
        }
    }
}
