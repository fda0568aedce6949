//! AuxK (SPEC §2.1): per row, the top k_aux positive pre-activations among
//! the dead latents reconstruct the residual r = x − x̂; its loss (either
//! variant of [`AuxVariant`]) and its gradients. The aux codes go through
//! the row-blocked sparse kernels or, when dense enough
//! ([`AUX_DENSE_MIN_DENSITY`]), GEMMs over the dead latents only.

use super::forward::Nested;
use super::reduce::{chunked_col_sum, sum_sq_rows, total_variance};
use super::{Engine, AUX_DENSE_MIN_DENSITY};
use crate::blocked::CodeKernels;
use crate::config::AuxVariant;
use crate::kernels::{gemm_strided, topk_positive_among, LatentMask, SparseCodes};
use crate::params::SaeParams;
use rayon::prelude::*;

/// The aux codes' layout for the backward pass.
enum AuxStore {
    Sparse,
    /// Dense codes over the dead latents only, A (B×|D|), and the gathered
    /// decoder rows W_dec[D] (|D|×d).
    Dense {
        a: Vec<f32>,
        wd: Vec<f32>,
    },
}

/// What the AuxK backward pass needs from its forward pass.
pub(super) struct AuxPart {
    /// The aux codes (top k_aux among the dead latents per row).
    codes: SparseCodes,
    /// ∂L_aux/∂ê, B×d.
    g: Vec<f32>,
    /// Layout of the codes.
    store: AuxStore,
    /// The dead latents, increasing.
    dead: Vec<u32>,
}

impl Engine<'_> {
    /// The AuxK loss over the `dead` latents and its part for the backward
    /// pass, or `None` when AuxK does not apply. For the Bussmann variant
    /// (r not detached) its gradient on x̂ is added to `nested`'s H.
    pub(super) fn aux_forward(
        &self,
        pre: &[f32],
        dead: Vec<u32>,
        nested: &mut Nested,
    ) -> Option<(f64, AuxPart)> {
        let cfg = self.aux_cfg;
        if !self.aux_applies(&dead) {
            return None;
        }
        let ka = cfg.k_aux.min(dead.len());
        let codes = self.aux_codes(pre, &dead, ka);
        let store = self.aux_store(&codes, &dead, ka);
        let mut e = self.aux_decode(&codes, &store);
        // e = ê − r with r = x − x̂.
        let (d, recon) = (self.d, &nested.recon_full);
        e.par_chunks_mut(d).enumerate().for_each(|(b, eb)| {
            let (xb, rb) = (&self.x[b * d..(b + 1) * d], &recon[b * d..(b + 1) * d]);
            for ((ev, &xv), &rv) in eb.iter_mut().zip(xb).zip(rb) {
                *ev -= xv - rv;
            }
        });
        let (loss, g_scale) = self.aux_loss(sum_sq_rows(&e, self.d), &nested.recon_full);
        let ga = g_scale as f32;
        e.par_iter_mut().for_each(|v| *v *= ga);
        if cfg.variant == AuxVariant::Bussmann {
            // r is not detached: the aux gradient also reaches x̂, which every
            // prefix sum H_g contains.
            nested.add_to_every_group(&e);
        }
        let part = AuxPart {
            codes,
            g: e,
            store,
            dead,
        };
        Some((loss, part))
    }

    /// Whether AuxK runs in this pass, with these latents dead.
    fn aux_applies(&self, dead: &[u32]) -> bool {
        let cfg = self.aux_cfg;
        self.arch.uses_auxk() && cfg.enabled && !dead.is_empty() && cfg.k_aux > 0
    }

    /// Whether AuxK will add its gradient to the decode's H (the Bussmann
    /// variant, when it runs).
    pub(super) fn aux_changes_h(&self, dead: &[u32]) -> bool {
        self.aux_applies(dead) && self.aux_cfg.variant == AuxVariant::Bussmann
    }

    /// Per row, the top `ka` positive pre-activations among `dead`.
    fn aux_codes(&self, pre: &[f32], dead: &[u32], ka: usize) -> SparseCodes {
        let dead = LatentMask::new(self.n, dead);
        let aux_rows: Vec<(Vec<u32>, Vec<f32>)> = pre
            .par_chunks(self.n)
            .map(|row| {
                let (mut ix, mut vs) = (Vec::with_capacity(ka), Vec::with_capacity(ka));
                topk_positive_among(row, &dead, ka, &mut ix, &mut vs);
                (ix, vs)
            })
            .collect();
        SparseCodes::from_rows(self.n, aux_rows)
    }

    /// Sparse, or dense over the dead latents when `ka`/|D| reaches
    /// [`AUX_DENSE_MIN_DENSITY`].
    fn aux_store(&self, codes: &SparseCodes, dead: &[u32], ka: usize) -> AuxStore {
        let (d, n, m) = (self.d, self.n, dead.len());
        if (ka as f64) < AUX_DENSE_MIN_DENSITY * m as f64 {
            return AuxStore::Sparse;
        }
        let mut local = vec![u32::MAX; n];
        for (l, &i) in dead.iter().enumerate() {
            local[i as usize] = l as u32;
        }
        let mut a = vec![0.0f32; self.rows * m];
        a.par_chunks_mut(m).enumerate().for_each(|(b, ar)| {
            let (ix, vs) = codes.row(b);
            for (&i, &v) in ix.iter().zip(vs) {
                ar[local[i as usize] as usize] = v;
            }
        });
        let mut wd = vec![0.0f32; m * d];
        wd.par_chunks_mut(d)
            .zip(dead.par_iter())
            .for_each(|(r, &i)| {
                r.copy_from_slice(&self.params.w_dec[i as usize * d..(i as usize + 1) * d]);
            });
        AuxStore::Dense { a, wd }
    }

    /// ê: the aux codes decoded without bias, B×d.
    fn aux_decode(&self, codes: &SparseCodes, store: &AuxStore) -> Vec<f32> {
        match store {
            AuxStore::Dense { a, wd } => {
                let (rows, d, m) = (self.rows, self.d, wd.len() / self.d);
                let mut out = vec![0.0f32; rows * d];
                gemm_strided(rows, d, m, &mut out, false, a, m, 1, wd, d, 1);
                out
            }
            AuxStore::Sparse => CodeKernels::new(codes).decode(&self.params.w_dec, self.d),
        }
    }

    /// (loss, gradient scale on e) of the AuxK variant, given
    /// `see` = Σ‖ê − r‖² and the full reconstruction.
    fn aux_loss(&self, see: f64, recon_full: &[f32]) -> (f64, f64) {
        let (rows, d, cfg) = (self.rows, self.d, self.aux_cfg);
        match cfg.variant {
            AuxVariant::Bussmann => (
                cfg.coeff as f64 * see / (rows * d) as f64,
                2.0 * cfg.coeff as f64 / (rows * d) as f64,
            ),
            AuxVariant::OpenAi => {
                let mut r = self.x.to_vec();
                for (rv, &xh) in r.iter_mut().zip(recon_full) {
                    *rv -= xh;
                }
                let var = total_variance(&r, d) / rows as f64;
                if var > 0.0 {
                    (
                        cfg.coeff as f64 * (see / rows as f64) / var,
                        2.0 * cfg.coeff as f64 / (rows as f64 * var),
                    )
                } else {
                    (0.0, 0.0)
                }
            }
        }
    }

    /// Adds the AuxK gradients of W_dec and W_enc into `grads` and of the
    /// pre-activations into `col_sum` (for b_enc / b_dec).
    pub(super) fn backward_aux(
        &self,
        part: &AuxPart,
        pre: &[f32],
        xc: &[f32],
        grads: &mut SaeParams,
        col_sum: &mut [f32],
    ) {
        match &part.store {
            AuxStore::Sparse => self.backward_aux_sparse(part, pre, xc, grads, col_sum),
            AuxStore::Dense { a, wd } => {
                let dp = self.aux_dense_dpre(part, a, wd, pre);
                self.backward_aux_dense(part, a, &dp, xc, grads, col_sum);
            }
        }
    }

    /// [`Engine::backward_aux`] through the sparse kernels.
    fn backward_aux_sparse(
        &self,
        part: &AuxPart,
        pre: &[f32],
        xc: &[f32],
        grads: &mut SaeParams,
        col_sum: &mut [f32],
    ) {
        let d = self.d;
        let g_aux = &part.g;
        let ga_of = |b: usize, _i: usize| -> &[f32] { &g_aux[b * d..(b + 1) * d] };
        let kern = CodeKernels::new(&part.codes);
        let dz_aux = kern.dz(&self.params.w_dec, d, &ga_of);
        let dpre_aux = self.dpre(&part.codes, pre, &dz_aux);
        kern.latent_grads(
            &dpre_aux,
            xc,
            d,
            &ga_of,
            &mut grads.w_dec,
            &mut grads.w_enc_t,
            col_sum,
            false,
        );
    }

    /// ∂L/∂pre over the dead latents (B×|D|): ∂L/∂A = G_aux · W_dec[D]ᵀ,
    /// kept where A > 0 (the selected entries).
    fn aux_dense_dpre(&self, part: &AuxPart, a: &[f32], wd: &[f32], pre: &[f32]) -> Vec<f32> {
        let (rows, d, n, dead) = (self.rows, self.d, self.n, &part.dead);
        let m = dead.len();
        let mut dp = vec![0.0f32; rows * m];
        gemm_strided(rows, m, d, &mut dp, false, &part.g, d, 1, wd, 1, d);
        dp.par_chunks_mut(m)
            .zip(a.par_chunks(m))
            .enumerate()
            .for_each(|(b, (dr, ar))| {
                for l in 0..m {
                    dr[l] = if ar[l] > 0.0 {
                        self.arch.dpre(pre[b * n + dead[l] as usize], dr[l])
                    } else {
                        0.0
                    };
                }
            });
        dp
    }

    /// [`Engine::backward_aux`] through GEMMs over the dead latents, given
    /// their codes `a` and pre-activation gradients `dp` (both B×|D|).
    fn backward_aux_dense(
        &self,
        part: &AuxPart,
        a: &[f32],
        dp: &[f32],
        xc: &[f32],
        grads: &mut SaeParams,
        col_sum: &mut [f32],
    ) {
        let (rows, d, m) = (self.rows, self.d, part.dead.len());
        let mut gwd = vec![0.0f32; m * d];
        gemm_strided(m, d, rows, &mut gwd, false, a, 1, m, &part.g, d, 1);
        let mut gwe = vec![0.0f32; m * d];
        gemm_strided(m, d, rows, &mut gwe, false, dp, 1, m, xc, d, 1);
        let cs = chunked_col_sum(rows, m, &|b| &dp[b * m..(b + 1) * m]);
        for (l, &i) in part.dead.iter().enumerate() {
            let i = i as usize;
            for (g, &v) in grads.w_dec[i * d..(i + 1) * d]
                .iter_mut()
                .zip(&gwd[l * d..(l + 1) * d])
            {
                *g += v;
            }
            for (g, &v) in grads.w_enc_t[i * d..(i + 1) * d]
                .iter_mut()
                .zip(&gwe[l * d..(l + 1) * d])
            {
                *g += v;
            }
            col_sum[i] += cs[l] as f32;
        }
    }
}
