//! The shared forward/backward pass for every architecture: encoder
//! product, code selection (delegated to the architecture), sparse decode
//! with nested prefixes, reconstruction loss, dead-latent counters, AuxK and
//! all gradients. Losses are in the space the batch is given in (the
//! trainer passes unit-normalized rows); the reconstruction loss is the
//! elementwise mean over B×d as in the study's code.

use crate::arch::{Architecture, PenaltyCtx};
use crate::blocked::CodeKernels;
use crate::config::EncoderPrecision;
use crate::kernels::{
    encoder_preacts_bf16_into, encoder_preacts_into, gemm_strided, topk_positive_among,
    SparseCodes, ROW_CHUNK,
};
use crate::params::SaeParams;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which AuxK loss to use (SPEC §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuxVariant {
    /// BatchTopK codebase: L = c·mean((ê − r)²) with r = x̃ − x̂ not detached.
    #[default]
    Bussmann,
    /// OpenAI: r detached, L = c·Σ‖ê − r‖² / Σ‖r − r̄‖².
    OpenAi,
}

/// AuxK and dead-latent settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuxConfig {
    /// Whether AuxK is on (for architectures that use it).
    pub enabled: bool,
    /// k_aux upper bound (512).
    pub k_aux: usize,
    /// Coefficient (1/32).
    pub coeff: f32,
    /// Batches without firing after which a latent is dead (5).
    pub dead_after: u32,
    /// Loss variant.
    pub variant: AuxVariant,
}

impl Default for AuxConfig {
    fn default() -> Self {
        AuxConfig {
            enabled: true,
            k_aux: 512,
            coeff: 1.0 / 32.0,
            dead_after: 5,
            variant: AuxVariant::Bussmann,
        }
    }
}

/// Loss terms and batch statistics of one forward pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossParts {
    /// Reconstruction loss (mean over prefixes for Matryoshka).
    pub recon: f64,
    /// Elementwise MSE of the full reconstruction.
    pub mse: f64,
    /// Mean over rows of ‖x − x̂‖²/‖x‖².
    pub nmse: f64,
    /// Σ‖x − x̂‖² / Σ‖x − x̄‖².
    pub fvu: f64,
    /// Mean number of positive codes per row.
    pub l0: f64,
    /// Sparsity penalty value.
    pub penalty: f64,
    /// AuxK loss value.
    pub aux: f64,
    /// recon + penalty + aux.
    pub total: f64,
    /// Fraction of latents counted dead after this batch.
    pub dead_fraction: f64,
}

/// AuxK switches from the (row-blocked) sparse kernels to dense GEMMs over
/// the dead latents when k_aux/|D| reaches this. The sparse kernels do
/// 4·B·k_aux·d multiply-adds at ≈ 30 GFLOP/s on the 2-core dev machine, the
/// four GEMMs 4·B·|D|·d at ≈ 160 GFLOP/s, so dense wins above ≈ 1/5
/// (bench `step`: n 3072 with half the latents dead, k_aux/|D| = 1/3:
/// 646 ms sparse vs 464 ms dense per step; n 12288, 1/12: sparse 1.19 s vs dense
/// 1.85 s).
pub const AUX_DENSE_MIN_DENSITY: f64 = 1.0 / 5.0;

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

/// Everything a forward/backward pass produces besides the gradients.
pub struct PassOutput {
    /// Loss terms.
    pub loss: LossParts,
    /// Training codes of the batch.
    pub codes: SparseCodes,
}

/// One forward + backward pass on the batch `x` (rows of length d, already
/// normalized if the model normalizes). `dead` (per-latent batches without
/// firing) is updated with this batch before AuxK picks the dead set, as in
/// the BatchTopK codebase. Gradients are written into `grads` (overwritten).
pub fn loss_and_grads(
    arch: &dyn Architecture,
    params: &SaeParams,
    x: &[f32],
    coeff_scale: f32,
    aux_cfg: &AuxConfig,
    dead: &mut [u32],
    grads: &mut SaeParams,
) -> PassOutput {
    loss_and_grads_with(
        arch,
        params,
        x,
        coeff_scale,
        aux_cfg,
        dead,
        grads,
        EncoderPrecision::F32,
        &mut Vec::new(),
    )
}

/// [`loss_and_grads`] with the encoder product in `enc` arithmetic and the
/// B×n pre-activations in `pre_buf` (resized as needed; the trainer keeps
/// it across steps so the largest buffer of a step is not faulted in anew).
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grads_with(
    arch: &dyn Architecture,
    params: &SaeParams,
    x: &[f32],
    coeff_scale: f32,
    aux_cfg: &AuxConfig,
    dead: &mut [u32],
    grads: &mut SaeParams,
    enc: EncoderPrecision,
    pre_buf: &mut Vec<f32>,
) -> PassOutput {
    let (d, n) = (params.d, params.n);
    let rows = x.len() / d;
    grads.fill_zero();

    let xc: Vec<f32> = if arch.subtracts_b_dec() {
        let mut xc = x.to_vec();
        xc.par_chunks_mut(d).for_each(|r| {
            for (v, &b) in r.iter_mut().zip(&params.b_dec) {
                *v -= b;
            }
        });
        xc
    } else {
        x.to_vec()
    };
    pre_buf.resize(rows * n, 0.0);
    let pre: &mut [f32] = &mut pre_buf[..rows * n];
    match enc {
        EncoderPrecision::F32 => {
            encoder_preacts_into(&xc, d, &params.w_enc_t, n, Some(&params.b_enc), pre)
        }
        EncoderPrecision::Bf16 => {
            encoder_preacts_bf16_into(&xc, d, &params.w_enc_t, n, &params.b_enc, pre)
        }
    }
    let pre: &[f32] = pre;
    let codes = arch.select(pre, params, true);

    // Nested reconstructions and the suffix-summed gradients
    // H_g = Σ_{m ≥ g} ∂L/∂x̂⁽ᵐ⁾, stored [row][group][d].
    let ends = arch.prefix_ends(n);
    let m_count = ends.len();
    let mut group_of = vec![0u16; n];
    {
        let mut g = 0usize;
        for (i, go) in group_of.iter_mut().enumerate() {
            while g + 1 < m_count && i >= ends[g] {
                g += 1;
            }
            *go = g as u16;
        }
    }
    let scale = 2.0 / (m_count as f64 * rows as f64 * d as f64);
    let mut h = vec![0.0f32; rows * m_count * d];
    let mut recon_full = vec![0.0f32; rows * d];
    // Per row: (Σ_m ‖r⁽ᵐ⁾‖², ‖r‖², ‖x‖²) in f64.
    let row_stats: Vec<(f64, f64, f64)> = h
        .par_chunks_mut(m_count * d)
        .zip(recon_full.par_chunks_mut(d))
        .enumerate()
        .map(|(b, (hb, rf))| {
            let xb = &x[b * d..(b + 1) * d];
            let (ix, vs) = codes.row(b);
            let mut acc = params.b_dec.clone();
            let mut p = 0usize;
            let mut sum_m = 0.0f64;
            for (g, &end) in ends.iter().enumerate() {
                while p < ix.len() && (ix[p] as usize) < end {
                    let i = ix[p] as usize;
                    crate::kernels::axpy(vs[p], &params.w_dec[i * d..(i + 1) * d], &mut acc);
                    p += 1;
                }
                let hg = &mut hb[g * d..(g + 1) * d];
                let mut s = 0.0f64;
                for j in 0..d {
                    let r = acc[j] as f64 - xb[j] as f64;
                    s += r * r;
                    hg[j] = (scale * r) as f32;
                }
                sum_m += s;
            }
            // Suffix sums turn per-prefix gradients into H_g.
            for g in (0..m_count.saturating_sub(1)).rev() {
                let (lo, hi) = hb.split_at_mut((g + 1) * d);
                for (a, &b) in lo[g * d..].iter_mut().zip(&hi[..d]) {
                    *a += b;
                }
            }
            rf.copy_from_slice(&acc);
            let mut rr = 0.0f64;
            let mut xx = 0.0f64;
            for j in 0..d {
                let r = acc[j] as f64 - xb[j] as f64;
                rr += r * r;
                xx += (xb[j] as f64) * (xb[j] as f64);
            }
            (sum_m, rr, xx)
        })
        .collect();
    let recon_loss =
        row_stats.iter().map(|s| s.0).sum::<f64>() / (m_count as f64 * rows as f64 * d as f64);
    let sse: f64 = row_stats.iter().map(|s| s.1).sum();
    let nmse = row_stats
        .iter()
        .map(|s| if s.2 > 0.0 { s.1 / s.2 } else { 0.0 })
        .sum::<f64>()
        / rows as f64;
    let fvu = sse / total_variance(x, d).max(f64::MIN_POSITIVE);

    // Dead counters: fired = any positive kept value in this batch.
    let mut fired = vec![false; n];
    for (&i, &v) in codes.idx.iter().zip(&codes.val) {
        if v > 0.0 {
            fired[i as usize] = true;
        }
    }
    for (c, &f) in dead.iter_mut().zip(&fired) {
        *c = if f { 0 } else { c.saturating_add(1) };
    }
    let dead_list: Vec<u32> = (0..n as u32)
        .filter(|&i| dead[i as usize] >= aux_cfg.dead_after)
        .collect();
    let dead_fraction = dead_list.len() as f64 / n as f64;

    // AuxK.
    let mut aux_loss = 0.0f64;
    let mut aux_part: Option<(SparseCodes, Vec<f32>, AuxStore, Vec<u32>)> = None;
    if arch.uses_auxk() && aux_cfg.enabled && !dead_list.is_empty() && aux_cfg.k_aux > 0 {
        let ka = aux_cfg.k_aux.min(dead_list.len());
        let aux_rows: Vec<(Vec<u32>, Vec<f32>)> = pre
            .par_chunks(n)
            .map(|row| {
                let (mut ix, mut vs) = (Vec::with_capacity(ka), Vec::with_capacity(ka));
                topk_positive_among(row, &dead_list, ka, &mut ix, &mut vs);
                (ix, vs)
            })
            .collect();
        let aux_codes = SparseCodes::from_rows(n, aux_rows);
        let m = dead_list.len();
        let aux_store = if ka as f64 >= AUX_DENSE_MIN_DENSITY * m as f64 {
            let mut local = vec![u32::MAX; n];
            for (l, &i) in dead_list.iter().enumerate() {
                local[i as usize] = l as u32;
            }
            let mut a = vec![0.0f32; rows * m];
            a.par_chunks_mut(m).enumerate().for_each(|(b, ar)| {
                let (ix, vs) = aux_codes.row(b);
                for (&i, &v) in ix.iter().zip(vs) {
                    ar[local[i as usize] as usize] = v;
                }
            });
            let mut wd = vec![0.0f32; m * d];
            wd.par_chunks_mut(d)
                .zip(dead_list.par_iter())
                .for_each(|(r, &i)| {
                    r.copy_from_slice(&params.w_dec[i as usize * d..(i as usize + 1) * d]);
                });
            AuxStore::Dense { a, wd }
        } else {
            AuxStore::Sparse
        };
        let e_hat = match &aux_store {
            AuxStore::Dense { a, wd } => {
                let mut out = vec![0.0f32; rows * d];
                gemm_strided(rows, d, m, &mut out, false, a, m, 1, wd, d, 1);
                out
            }
            AuxStore::Sparse => CodeKernels::new(&aux_codes).decode(&params.w_dec, d),
        };
        // e = ê − r with r = x − x̂.
        let mut e = e_hat;
        e.par_chunks_mut(d).enumerate().for_each(|(b, eb)| {
            for j in 0..d {
                eb[j] -= x[b * d + j] - recon_full[b * d + j];
            }
        });
        let see = kernels_sum_sq_rows(&e, d);
        let g_aux_scale;
        match aux_cfg.variant {
            AuxVariant::Bussmann => {
                aux_loss = aux_cfg.coeff as f64 * see / (rows * d) as f64;
                g_aux_scale = 2.0 * aux_cfg.coeff as f64 / (rows * d) as f64;
            }
            AuxVariant::OpenAi => {
                let mut r = x.to_vec();
                for (rv, &xh) in r.iter_mut().zip(&recon_full) {
                    *rv -= xh;
                }
                let var = total_variance(&r, d) / rows as f64;
                if var > 0.0 {
                    aux_loss = aux_cfg.coeff as f64 * (see / rows as f64) / var;
                    g_aux_scale = 2.0 * aux_cfg.coeff as f64 / (rows as f64 * var);
                } else {
                    g_aux_scale = 0.0;
                }
            }
        }
        let ga = g_aux_scale as f32;
        e.par_iter_mut().for_each(|v| *v *= ga);
        if aux_cfg.variant == AuxVariant::Bussmann {
            // r is not detached: the aux gradient also reaches x̂, which every
            // prefix sum H_g contains.
            h.par_chunks_mut(m_count * d)
                .zip(e.par_chunks(d))
                .for_each(|(hb, gb)| {
                    for g in 0..m_count {
                        for (hv, &gv) in hb[g * d..(g + 1) * d].iter_mut().zip(gb) {
                            *hv += gv;
                        }
                    }
                });
        }
        aux_part = Some((aux_codes, e, aux_store, dead_list.clone()));
    }

    // ∂L/∂z for the kept entries, penalty, then ∂L/∂pre.
    let h_ref = &h;
    let g_of = |b: usize, i: usize| -> &[f32] {
        let g = group_of[i] as usize;
        let o = (b * m_count + g) * d;
        &h_ref[o..o + d]
    };
    let kern = CodeKernels::new(&codes);
    let mut dz = kern.dz(&params.w_dec, d, &g_of);
    let g_full = |b: usize| -> &[f32] {
        let o = (b * m_count + m_count - 1) * d;
        &h_ref[o..o + d]
    };
    let ctx = PenaltyCtx {
        pre,
        codes: &codes,
        params,
        g_row: &g_full,
        coeff_scale,
    };
    let penalty = arch.penalty_dz(&ctx, &mut dz);
    let dpre = dpre_of(arch, &codes, pre, &dz, n);

    let mut col_sum = vec![0.0f32; n];
    kern.latent_grads(
        &dpre,
        &xc,
        d,
        &g_of,
        &mut grads.w_dec,
        &mut grads.w_enc_t,
        &mut col_sum,
    );
    match &aux_part {
        Some((aux_codes, g_aux, AuxStore::Sparse, _)) => {
            let ga_of = |b: usize, _i: usize| -> &[f32] { &g_aux[b * d..(b + 1) * d] };
            let kern = CodeKernels::new(aux_codes);
            let dz_aux = kern.dz(&params.w_dec, d, &ga_of);
            let dpre_aux = dpre_of(arch, aux_codes, pre, &dz_aux, n);
            kern.latent_grads(
                &dpre_aux,
                &xc,
                d,
                &ga_of,
                &mut grads.w_dec,
                &mut grads.w_enc_t,
                &mut col_sum,
            );
        }
        Some((_, g_aux, AuxStore::Dense { a, wd }, dead_list)) => {
            let m = dead_list.len();
            // ∂L/∂A = G_aux · W_dec[D]ᵀ, kept where A > 0 (the selected entries).
            let mut dp = vec![0.0f32; rows * m];
            gemm_strided(rows, m, d, &mut dp, false, g_aux, d, 1, wd, 1, d);
            dp.par_chunks_mut(m)
                .zip(a.par_chunks(m))
                .enumerate()
                .for_each(|(b, (dr, ar))| {
                    for l in 0..m {
                        dr[l] = if ar[l] > 0.0 {
                            arch.dpre(pre[b * n + dead_list[l] as usize], dr[l])
                        } else {
                            0.0
                        };
                    }
                });
            let mut gwd = vec![0.0f32; m * d];
            gemm_strided(m, d, rows, &mut gwd, false, a, 1, m, g_aux, d, 1);
            let mut gwe = vec![0.0f32; m * d];
            gemm_strided(m, d, rows, &mut gwe, false, &dp, 1, m, &xc, d, 1);
            let cs = chunked_col_sum(rows, m, &|b| &dp[b * m..(b + 1) * m]);
            for (l, &i) in dead_list.iter().enumerate() {
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
        None => {}
    }

    // b_dec: Σ_b H_0 (every prefix contains b_dec), minus the encoder path.
    let h0_sum = chunked_col_sum(rows, d, &|b| {
        let o = b * m_count * d;
        &h_ref[o..o + d]
    });
    for (g, s) in grads.b_dec.iter_mut().zip(&h0_sum) {
        *g = *s as f32;
    }
    if arch.subtracts_b_dec() {
        let mut enc = vec![0.0f64; d];
        for (i, &s) in col_sum.iter().enumerate() {
            if s != 0.0 {
                for (e, &w) in enc.iter_mut().zip(&params.w_enc_t[i * d..(i + 1) * d]) {
                    *e += s as f64 * w as f64;
                }
            }
        }
        for (g, e) in grads.b_dec.iter_mut().zip(&enc) {
            *g -= *e as f32;
        }
    }
    if arch.trains_b_enc() {
        grads.b_enc.copy_from_slice(&col_sum);
    }
    arch.penalty_grads(&ctx, grads);

    let l0 = codes.count_positive() as f64 / rows as f64;
    PassOutput {
        loss: LossParts {
            recon: recon_loss,
            mse: sse / (rows * d) as f64,
            nmse,
            fvu,
            l0,
            penalty,
            aux: aux_loss,
            total: recon_loss + penalty + aux_loss,
            dead_fraction,
        },
        codes,
    }
}

fn dpre_of(
    arch: &dyn Architecture,
    codes: &SparseCodes,
    pre: &[f32],
    dz: &[f32],
    n: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; dz.len()];
    out.par_chunks_mut(ROW_CHUNK.max(1) * 16)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = c * ROW_CHUNK.max(1) * 16;
            // Find the row of the first entry of this chunk, then walk.
            let mut b = codes
                .indptr
                .partition_point(|&s| s <= base)
                .saturating_sub(1);
            for (o, p) in chunk.iter_mut().zip(base..) {
                while codes.indptr[b + 1] <= p {
                    b += 1;
                }
                let i = codes.idx[p] as usize;
                *o = arch.dpre(pre[b * n + i], dz[p]);
            }
        });
    out
}

/// Σ_b row(b) over rows in fixed chunks combined in order, in f64.
fn chunked_col_sum<'a>(
    rows: usize,
    d: usize,
    row: &(dyn Fn(usize) -> &'a [f32] + Sync),
) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = (0..rows.div_ceil(ROW_CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0f64; d];
            for b in c * ROW_CHUNK..((c + 1) * ROW_CHUNK).min(rows) {
                for (a, &v) in acc.iter_mut().zip(row(b)) {
                    *a += v as f64;
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0.0f64; d];
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

/// Σ_b ‖x_b − x̄‖² with x̄ the batch mean row.
pub(crate) fn total_variance(x: &[f32], d: usize) -> f64 {
    let rows = x.len() / d;
    if rows == 0 {
        return 0.0;
    }
    let mean = chunked_col_sum(rows, d, &|b| &x[b * d..(b + 1) * d]);
    let mean: Vec<f64> = mean.iter().map(|v| v / rows as f64).collect();
    let parts: Vec<f64> = x
        .par_chunks(d * ROW_CHUNK)
        .map(|c| {
            c.chunks(d)
                .map(|r| {
                    r.iter()
                        .zip(&mean)
                        .map(|(&v, &m)| {
                            let t = v as f64 - m;
                            t * t
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

fn kernels_sum_sq_rows(x: &[f32], d: usize) -> f64 {
    let parts: Vec<f64> = x
        .par_chunks(d * ROW_CHUNK)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect();
    parts.iter().sum()
}
