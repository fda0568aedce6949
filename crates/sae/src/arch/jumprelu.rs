//! JumpReLU (Rajamanoharan et al. 2024, SPEC §2.5): f = π·H(π − θ) with a
//! learnt per-latent threshold θ = exp(t) and an L0 penalty
//! λ·mean_b Σᵢ H(πᵢ − θᵢ). The step function gets straight-through
//! pseudo-derivatives with a rectangle kernel of bandwidth ε:
//! ∂f/∂θ = −(θ/ε)K((π−θ)/ε), ∂H/∂θ = −(1/ε)K((π−θ)/ε), ∂f/∂π = H(π − θ).
//! The chain rule through θ = exp(t) multiplies by θ (the study's code
//! drops that factor; we do not reproduce it). By default no b_dec is
//! subtracted from the input, following the SPEC's π = x·W_enc + b_enc.

use super::{ArchSpec, Architecture, Export, PenaltyCtx};
use crate::kernels::{dot, threshold_rows, SparseCodes};
use crate::params::SaeParams;
use rayon::prelude::*;

/// JumpReLU with learnt log-threshold.
#[derive(Clone, Debug)]
pub struct JumpRelu {
    /// λ of the L0 penalty.
    pub l0_coeff: f32,
    /// Kernel bandwidth ε.
    pub bandwidth: f32,
    /// Initial threshold θ₀ (kept so the spec round-trips).
    pub init_threshold: f32,
    /// Subtract b_dec before the encoder.
    pub apply_b_dec_to_input: bool,
}

fn thresholds(p: &SaeParams) -> Vec<f32> {
    p.log_threshold.iter().map(|t| t.exp()).collect()
}

impl Architecture for JumpRelu {
    fn spec(&self) -> ArchSpec {
        ArchSpec::JumpRelu {
            l0_coeff: self.l0_coeff,
            bandwidth: self.bandwidth,
            init_threshold: self.init_threshold,
            apply_b_dec_to_input: self.apply_b_dec_to_input,
        }
    }
    fn subtracts_b_dec(&self) -> bool {
        self.apply_b_dec_to_input
    }
    fn select(&self, pre: &[f32], params: &SaeParams, _train: bool) -> SparseCodes {
        let th = thresholds(params);
        threshold_rows(pre, params.n, &|i| th[i])
    }
    fn dpre(&self, _pre: f32, dz: f32) -> f32 {
        // Active entries have π > θ > 0, so H = 1: straight through.
        dz
    }
    fn penalty_dz(&self, ctx: &PenaltyCtx, _dz: &mut [f32]) -> f64 {
        let rows = ctx.codes.rows.max(1);
        (self.l0_coeff * ctx.coeff_scale) as f64 * ctx.codes.count_positive() as f64 / rows as f64
    }
    fn penalty_grads(&self, ctx: &PenaltyCtx, grads: &mut SaeParams) {
        let p = ctx.params;
        let (n, d) = (p.n, p.d);
        let rows = ctx.codes.rows.max(1);
        let th = thresholds(p);
        let eps = self.bandwidth;
        let lam = self.l0_coeff * ctx.coeff_scale / rows as f32;
        // Per row, the (latent, ∂L/∂θ contribution) of entries inside the
        // kernel window; summed per latent in row order for determinism.
        let per_row: Vec<Vec<(u32, f32)>> = ctx
            .pre
            .par_chunks(n)
            .enumerate()
            .map(|(b, row)| {
                let g = (ctx.g_row)(b);
                let mut out = Vec::new();
                for (i, &pi) in row.iter().enumerate() {
                    let u = (pi - th[i]) / eps;
                    if u.abs() < 0.5 {
                        let dz = dot(g, &p.w_dec[i * d..(i + 1) * d]);
                        let dtheta = -(th[i] / eps) * dz - lam / eps;
                        out.push((i as u32, dtheta));
                    }
                }
                out
            })
            .collect();
        let mut acc = vec![0.0f64; n];
        for row in per_row {
            for (i, v) in row {
                acc[i as usize] += v as f64;
            }
        }
        for (i, g) in grads.log_threshold.iter_mut().enumerate() {
            *g += (acc[i] * th[i] as f64) as f32;
        }
    }
    fn export(&self, params: &SaeParams) -> Export {
        Export {
            saelens_architecture: "jumprelu",
            apply_b_dec_to_input: self.apply_b_dec_to_input,
            k: None,
            threshold: Some(thresholds(params)),
        }
    }
    fn box_clone(&self) -> Box<dyn Architecture> {
        Box::new(self.clone())
    }
}
