//! A trained (or loaded) SAE for inference: encode to sparse codes, decode,
//! reconstruct, with the input normalization applied and undone.

use crate::arch::Architecture;
use crate::config::SaeConfig;
use crate::error::{Result, SaeError};
use crate::kernels::{
    check_finite, encoder_preacts, normalize_rows_into, sparse_decode, SparseCodes,
};
use crate::params::SaeParams;
use rayon::prelude::*;

/// ε added to σ in the input normalization (SPEC §2.1).
pub const NORM_EPS: f32 = 1e-5;

/// Per-row normalization statistics of a batch, to undo it after decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct RowNorm {
    /// Row means μ.
    pub mu: Vec<f32>,
    /// Row standard deviations σ (unbiased).
    pub sigma: Vec<f32>,
}

/// An SAE: config, parameters and architecture (with its inference state).
#[derive(Clone, Debug)]
pub struct Sae {
    pub(crate) cfg: SaeConfig,
    pub(crate) params: SaeParams,
    pub(crate) arch: Box<dyn Architecture>,
}

impl Sae {
    /// Builds an SAE from a config and parameters of matching shape.
    pub fn new(cfg: SaeConfig, params: SaeParams) -> Result<Self> {
        cfg.validate()?;
        let arch = cfg.arch.build(cfg.d_sae)?;
        let (d, n) = (cfg.d_in, cfg.d_sae);
        let want_t = if cfg.arch.has_log_threshold() { n } else { 0 };
        let checks = [
            ("W_enc", params.w_enc_t.len(), n * d),
            ("b_enc", params.b_enc.len(), n),
            ("W_dec", params.w_dec.len(), n * d),
            ("b_dec", params.b_dec.len(), d),
            ("log_threshold", params.log_threshold.len(), want_t),
        ];
        for (name, got, want) in checks {
            if got != want || params.d != d || params.n != n {
                return Err(SaeError::Shape(format!(
                    "{name} has {got} values, config (d {d}, n {n}) needs {want}"
                )));
            }
        }
        Ok(Sae { cfg, params, arch })
    }

    /// The config.
    pub fn config(&self) -> &SaeConfig {
        &self.cfg
    }

    /// The parameters.
    pub fn params(&self) -> &SaeParams {
        &self.params
    }

    /// The architecture (with its inference state, e.g. BatchTopK's θ).
    pub fn arch(&self) -> &dyn Architecture {
        self.arch.as_ref()
    }

    pub(crate) fn arch_mut(&mut self) -> &mut dyn Architecture {
        self.arch.as_mut()
    }

    /// Checks a batch's length and values; returns the row count.
    pub fn check_batch(&self, x: &[f32]) -> Result<usize> {
        let d = self.cfg.d_in;
        if x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(SaeError::Shape(format!(
                "batch of {} values is not a positive multiple of d_in = {d}",
                x.len()
            )));
        }
        check_finite(x, d)?;
        Ok(x.len() / d)
    }

    /// Applies the input normalization or scaling (if configured); the
    /// returned stats undo it in [`Sae::decode`].
    pub fn preprocess(&self, x: &[f32]) -> (Vec<f32>, Option<RowNorm>) {
        let mut xt = Vec::new();
        let norm = self.preprocess_into(x, &mut xt);
        (xt, norm)
    }

    /// [`Sae::preprocess`] into `xt` (resized to `x`'s length; a trainer
    /// keeps it across steps, so its pages are not faulted in every step).
    pub fn preprocess_into(&self, x: &[f32], xt: &mut Vec<f32>) -> Option<RowNorm> {
        xt.resize(x.len(), 0.0);
        if self.cfg.input_unit_norm {
            let (mu, sigma) = normalize_rows_into(x, self.cfg.d_in, NORM_EPS, xt);
            Some(RowNorm { mu, sigma })
        } else if let Some(s) = self.cfg.input_scale {
            let rows = x.len() / self.cfg.d_in;
            xt.par_iter_mut().zip(x).for_each(|(o, &v)| *o = v * s);
            Some(RowNorm {
                mu: vec![0.0; rows],
                sigma: vec![1.0 / s; rows],
            })
        } else {
            xt.copy_from_slice(x);
            None
        }
    }

    /// The same SAE acting on unscaled inputs: an `input_scale` s folded
    /// into the weights (W_enc·s, W_dec/s, b_dec/s), as SAELens does at save.
    pub fn fold_input_scale(&self) -> Sae {
        let Some(s) = self.cfg.input_scale else {
            return self.clone();
        };
        let mut out = self.clone();
        out.cfg.input_scale = None;
        let p = &mut out.params;
        p.w_enc_t.par_iter_mut().for_each(|v| *v *= s);
        p.w_dec.par_iter_mut().for_each(|v| *v /= s);
        p.b_dec.iter_mut().for_each(|v| *v /= s);
        out
    }

    /// Sparse codes of a batch (B×d, row-major) with the inference rule.
    pub fn encode(&self, x: &[f32]) -> Result<SparseCodes> {
        self.check_batch(x)?;
        let (xt, _) = self.preprocess(x);
        Ok(self.encode_normalized(&xt))
    }

    /// Dense B×n codes.
    pub fn encode_dense(&self, x: &[f32]) -> Result<Vec<f32>> {
        Ok(self.encode(x)?.to_dense())
    }

    /// Codes of an already-normalized batch.
    pub fn encode_normalized(&self, xt: &[f32]) -> SparseCodes {
        let p = &self.params;
        let d = p.d;
        let pre = if self.arch.subtracts_b_dec() {
            let mut xc = xt.to_vec();
            xc.par_chunks_mut(d).for_each(|r| {
                for (v, &b) in r.iter_mut().zip(&p.b_dec) {
                    *v -= b;
                }
            });
            encoder_preacts(&xc, d, &p.w_enc_t, p.n, Some(&p.b_enc))
        } else {
            encoder_preacts(xt, d, &p.w_enc_t, p.n, Some(&p.b_enc))
        };
        self.arch.select(&pre, p, false)
    }

    /// Decodes codes; with `norm`, maps back to the input space (x̂·σ + μ).
    pub fn decode(&self, codes: &SparseCodes, norm: Option<&RowNorm>) -> Result<Vec<f32>> {
        if codes.n != self.cfg.d_sae {
            return Err(SaeError::Shape(format!(
                "codes have n = {}, SAE has {}",
                codes.n, self.cfg.d_sae
            )));
        }
        let n = self.cfg.d_sae;
        let well_formed = codes.indptr.len() == codes.rows + 1
            && codes.indptr.first() == Some(&0)
            && codes.indptr.last() == Some(&codes.idx.len())
            && codes.indptr.windows(2).all(|w| w[0] <= w[1])
            && codes.val.len() == codes.idx.len()
            && codes.idx.iter().all(|&i| (i as usize) < n);
        if !well_formed {
            return Err(SaeError::Shape(
                "malformed sparse codes (indptr / indices out of range)".into(),
            ));
        }
        let d = self.cfg.d_in;
        let mut out = sparse_decode(codes, &self.params.w_dec, d, Some(&self.params.b_dec));
        if let Some(nm) = norm {
            if nm.mu.len() != codes.rows {
                return Err(SaeError::Shape(
                    "normalization stats do not match the codes' rows".into(),
                ));
            }
            out.par_chunks_mut(d).enumerate().for_each(|(b, r)| {
                let (m, s) = (nm.mu[b], nm.sigma[b]);
                r.iter_mut().for_each(|v| *v = *v * s + m);
            });
        }
        Ok(out)
    }

    /// Encode then decode, in the input space.
    pub fn reconstruct(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.check_batch(x)?;
        let (xt, norm) = self.preprocess(x);
        let codes = self.encode_normalized(&xt);
        self.decode(&codes, norm.as_ref())
    }
}
