//! ReLU SAE with decoder-norm-weighted L1 (Bloom 2024, SPEC §2.2):
//! penalty λ·mean_b Σᵢ fᵢ‖W_dec,i‖. Codes are whatever is positive; they are
//! still stored sparse, which pays off once training has made them sparse.

use super::{ArchSpec, Architecture, Export, PenaltyCtx};
use crate::kernels::{threshold_rows, SparseCodes};
use crate::params::SaeParams;
use rayon::prelude::*;

/// ReLU + L1.
#[derive(Clone, Debug)]
pub struct Relu {
    /// λ.
    pub l1_coeff: f32,
}

fn row_norms(w: &[f32], d: usize) -> Vec<f32> {
    w.par_chunks(d)
        .map(|r| {
            r.iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt() as f32
        })
        .collect()
}

impl Architecture for Relu {
    fn spec(&self) -> ArchSpec {
        ArchSpec::Relu {
            l1_coeff: self.l1_coeff,
        }
    }
    fn select(&self, pre: &[f32], params: &SaeParams, _train: bool) -> SparseCodes {
        threshold_rows(pre, params.n, &|_| 0.0)
    }
    fn penalty_dz(&self, ctx: &PenaltyCtx, dz: &mut [f32]) -> f64 {
        let p = ctx.params;
        let rows = ctx.codes.rows.max(1);
        let c = self.l1_coeff * ctx.coeff_scale / rows as f32;
        let norms = row_norms(&p.w_dec, p.d);
        let mut loss = 0.0f64;
        for (q, (&i, &v)) in ctx.codes.idx.iter().zip(&ctx.codes.val).enumerate() {
            let nr = norms[i as usize];
            dz[q] += c * nr;
            loss += (v * nr) as f64;
        }
        loss * c as f64
    }
    fn penalty_grads(&self, ctx: &PenaltyCtx, grads: &mut SaeParams) {
        let p = ctx.params;
        let d = p.d;
        let rows = ctx.codes.rows.max(1);
        let c = self.l1_coeff * ctx.coeff_scale / rows as f32;
        let mut col = vec![0.0f64; p.n];
        for (&i, &v) in ctx.codes.idx.iter().zip(&ctx.codes.val) {
            col[i as usize] += v as f64;
        }
        let norms = row_norms(&p.w_dec, d);
        grads
            .w_dec
            .par_chunks_mut(d)
            .zip(p.w_dec.par_chunks(d))
            .enumerate()
            .for_each(|(i, (g, w))| {
                if col[i] != 0.0 && norms[i] > 0.0 {
                    let a = c * col[i] as f32 / norms[i];
                    for (gj, &wj) in g.iter_mut().zip(w) {
                        *gj += a * wj;
                    }
                }
            });
    }
    fn export(&self, _params: &SaeParams) -> Export {
        Export {
            saelens_architecture: "standard",
            apply_b_dec_to_input: true,
            k: None,
            threshold: None,
        }
    }
    fn box_clone(&self) -> Box<dyn Architecture> {
        Box::new(self.clone())
    }
}
