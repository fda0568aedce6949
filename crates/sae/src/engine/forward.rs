//! The forward half of a pass: encoder input and product, code selection,
//! the nested (Matryoshka-prefix) decode with the reconstruction gradients
//! it implies, the loss statistics and the dead-latent counters.

use super::reduce::total_variance;
use super::StepBuffers;
use super::{Engine, LossParts};
use crate::config::EncoderPrecision;
use crate::kernels::{
    axpy, dot_group, dots_against, encoder_preacts_bf16_packed, encoder_preacts_into, SparseCodes,
    DOT_GROUP,
};
use rayon::prelude::*;
use saelab_kernels::aligned::AlignedF32;
use saelab_kernels::bf16::PackedBf16;

/// The decode of a batch through every prefix of the dictionary.
pub(super) struct Nested {
    /// Input width.
    d: usize,
    /// Number of prefixes (1 unless Matryoshka).
    m_count: usize,
    /// Prefix group of each latent.
    group_of: Vec<u16>,
    /// Suffix-summed gradients H_g = Σ_{m ≥ g} ∂L/∂x̂⁽ᵐ⁾, [row][group][d];
    /// AuxK (Bussmann) adds its gradient to every group.
    h: Vec<f32>,
    /// The full reconstruction x̂ (all prefixes), B×d.
    pub(super) recon_full: Vec<f32>,
    /// Per row: (Σ_m ‖r⁽ᵐ⁾‖², ‖r‖², ‖x‖²) in f64.
    row_stats: Vec<(f64, f64, f64)>,
    /// ∂L/∂z of the training codes (CSR order), when the decode computed
    /// it (see [`Engine::decode`]).
    pub(super) dz: Option<Vec<f32>>,
}

impl Nested {
    /// Hands the buffers back for the next step.
    pub(super) fn return_buffers(self, bufs: &mut StepBuffers) {
        bufs.h = self.h;
        bufs.recon = self.recon_full;
    }

    /// H of the group holding latent `i`, row `b`: what reaches z[b, i].
    pub(super) fn grad(&self, b: usize, i: usize) -> &[f32] {
        let g = self.group_of[i] as usize;
        let o = (b * self.m_count + g) * self.d;
        &self.h[o..o + self.d]
    }

    /// ∂L/∂x̂ of the full reconstruction of row `b` (the last group).
    pub(super) fn full_grad(&self, b: usize) -> &[f32] {
        let o = (b * self.m_count + self.m_count - 1) * self.d;
        &self.h[o..o + self.d]
    }

    /// H_0 of row `b`: every prefix contains b_dec, so this is ∂L/∂b_dec.
    pub(super) fn first_grad(&self, b: usize) -> &[f32] {
        let o = b * self.m_count * self.d;
        &self.h[o..o + self.d]
    }

    /// Adds `g` (B×d) to every group of every row: a gradient on x̂, which
    /// every H_g contains.
    pub(super) fn add_to_every_group(&mut self, g: &[f32]) {
        let (d, m_count) = (self.d, self.m_count);
        self.h
            .par_chunks_mut(m_count * d)
            .zip(g.par_chunks(d))
            .for_each(|(hb, gb)| {
                for g in 0..m_count {
                    for (hv, &gv) in hb[g * d..(g + 1) * d].iter_mut().zip(gb) {
                        *hv += gv;
                    }
                }
            });
    }
}

/// Reconstruction terms of [`LossParts`].
pub(super) struct ReconStats {
    recon: f64,
    mse: f64,
    nmse: f64,
    fvu: f64,
}

impl ReconStats {
    /// The full loss record with the remaining terms.
    pub(super) fn into_loss(self, l0: f64, penalty: f64, aux: f64, dead: f64) -> LossParts {
        LossParts {
            recon: self.recon,
            mse: self.mse,
            nmse: self.nmse,
            fvu: self.fvu,
            l0,
            penalty,
            aux,
            total: self.recon + penalty + aux,
            dead_fraction: dead,
        }
    }
}

impl Engine<'_> {
    /// The encoder's input into `xc` (resized to B×d): x, minus b_dec for
    /// architectures that subtract it.
    pub(super) fn encoder_input(&self, xc: &mut Vec<f32>) {
        xc.resize(self.x.len(), 0.0);
        let b_dec = &self.params.b_dec;
        let sub = self.arch.subtracts_b_dec();
        xc.par_chunks_mut(self.d)
            .zip(self.x.par_chunks(self.d))
            .for_each(|(o, r)| {
                o.copy_from_slice(r);
                if sub {
                    for (v, &b) in o.iter_mut().zip(b_dec) {
                        *v -= b;
                    }
                }
            });
    }

    /// The B×n pre-activations `xc·W_enc + b_enc` in `enc` arithmetic,
    /// written into the start of `bufs.pre` (reallocated when too small).
    pub(super) fn encode<'p>(
        &self,
        xc: &[f32],
        enc: EncoderPrecision,
        bufs: &'p mut StepBuffers,
    ) -> &'p [f32] {
        let (d, n, p) = (self.d, self.n, self.params);
        // Grown, never shrunk: SAEs of different sizes may share it.
        if bufs.pre.len() < self.rows * n {
            bufs.pre = AlignedF32::zeros(self.rows * n);
        }
        let pre = &mut bufs.pre[..self.rows * n];
        match enc {
            EncoderPrecision::F32 => {
                encoder_preacts_into(xc, d, &p.w_enc_t, n, Some(&p.b_enc), pre)
            }
            EncoderPrecision::Bf16 => {
                let w = PackedBf16::repack_out_in(&mut bufs.w_enc_bf16, &p.w_enc_t, d, n);
                encoder_preacts_bf16_packed(xc, w, &p.b_enc, pre)
            }
        }
        pre
    }

    /// The training codes, chosen by the architecture.
    pub(super) fn select(&self, pre: &[f32]) -> SparseCodes {
        self.arch.select(pre, self.params, true)
    }

    /// Nested reconstructions of every row and the gradients H of the
    /// reconstruction loss (mean over prefixes of the elementwise MSE).
    /// With `with_dz` it also computes ∂L/∂z = H·W_dec[i] of every code,
    /// as [`crate::kernels::sparse_dz`] would, while the row's decoder rows
    /// are still in cache: valid only when nothing changes H afterwards
    /// (AuxK of the Bussmann variant does).
    /// `spare` lends the storage of H and the reconstruction (every value
    /// is written).
    pub(super) fn decode(
        &self,
        codes: &SparseCodes,
        with_dz: bool,
        spare: [Vec<f32>; 2],
    ) -> Nested {
        let (d, n, rows) = (self.d, self.n, self.rows);
        let ends = self.arch.prefix_ends(n);
        let m_count = ends.len();
        let scale = 2.0 / (m_count as f64 * rows as f64 * d as f64);
        let [mut h, mut recon_full] = spare;
        h.resize(rows * m_count * d, 0.0);
        recon_full.resize(rows * d, 0.0);
        let mut dz = vec![0.0f32; if with_dz { codes.nnz() } else { 0 }];
        let dz_parts = if with_dz {
            codes.row_parts(&mut dz)
        } else {
            (0..rows).map(|_| <&mut [f32]>::default()).collect()
        };
        let group_of = group_of(&ends, n);
        let row_stats = h
            .par_chunks_mut(m_count * d)
            .zip(recon_full.par_chunks_mut(d))
            .zip(dz_parts)
            .enumerate()
            .map(|(b, ((hb, rf), dzb))| {
                let stats = self.decode_row(b, codes, &ends, scale, hb, rf);
                if with_dz {
                    row_dz(codes.row(b).0, &self.params.w_dec, d, hb, &group_of, dzb);
                }
                stats
            })
            .collect();
        Nested {
            d,
            m_count,
            group_of,
            h,
            recon_full,
            row_stats,
            dz: with_dz.then_some(dz),
        }
    }

    /// Row `b` of [`Engine::decode`]: fills its H groups `hb` and full
    /// reconstruction `rf`, returns (Σ_m ‖r⁽ᵐ⁾‖², ‖r‖², ‖x‖²).
    fn decode_row(
        &self,
        b: usize,
        codes: &SparseCodes,
        ends: &[usize],
        scale: f64,
        hb: &mut [f32],
        rf: &mut [f32],
    ) -> (f64, f64, f64) {
        let d = self.d;
        let xb = &self.x[b * d..(b + 1) * d];
        let (ix, vs) = codes.row(b);
        let mut acc = self.params.b_dec.clone();
        let mut p = 0usize;
        let mut sum_m = 0.0f64;
        let (mut rr, mut xx) = (0.0f64, 0.0f64);
        for (g, &end) in ends.iter().enumerate() {
            while p < ix.len() && (ix[p] as usize) < end {
                let i = ix[p] as usize;
                axpy(vs[p], &self.params.w_dec[i * d..(i + 1) * d], &mut acc);
                p += 1;
            }
            let hg = &mut hb[g * d..(g + 1) * d];
            if g + 1 < ends.len() {
                sum_m += prefix_grad(&acc, xb, scale, hg);
            } else {
                // The last prefix is the full reconstruction: its ‖r‖² is
                // the row's, and ‖x‖² runs beside it.
                (rr, xx) = prefix_grad_and_norm(&acc, xb, scale, hg);
                sum_m += rr;
            }
        }
        // Suffix sums turn per-prefix gradients into H_g.
        for g in (0..ends.len().saturating_sub(1)).rev() {
            let (lo, hi) = hb.split_at_mut((g + 1) * d);
            for (a, &b) in lo[g * d..].iter_mut().zip(&hi[..d]) {
                *a += b;
            }
        }
        rf.copy_from_slice(&acc);
        (sum_m, rr, xx)
    }

    /// Loss statistics of the decode.
    pub(super) fn recon_stats(&self, nested: &Nested) -> ReconStats {
        let (d, rows, m_count) = (self.d, self.rows, nested.m_count);
        let stats = &nested.row_stats;
        let recon =
            stats.iter().map(|s| s.0).sum::<f64>() / (m_count as f64 * rows as f64 * d as f64);
        let sse: f64 = stats.iter().map(|s| s.1).sum();
        let nmse = stats
            .iter()
            .map(|s| if s.2 > 0.0 { s.1 / s.2 } else { 0.0 })
            .sum::<f64>()
            / rows as f64;
        let fvu = sse / total_variance(self.x, d).max(f64::MIN_POSITIVE);
        ReconStats {
            recon,
            mse: sse / (rows * d) as f64,
            nmse,
            fvu,
        }
    }

    /// Advances the per-latent counters of batches without firing (fired =
    /// any positive kept value in this batch) and returns the latents now
    /// counted dead, increasing.
    pub(super) fn update_dead(&self, codes: &SparseCodes, dead: &mut [u32]) -> Vec<u32> {
        let mut fired = vec![false; self.n];
        for (&i, &v) in codes.idx.iter().zip(&codes.val) {
            if v > 0.0 {
                fired[i as usize] = true;
            }
        }
        for (c, &f) in dead.iter_mut().zip(&fired) {
            *c = if f { 0 } else { c.saturating_add(1) };
        }
        (0..self.n as u32)
            .filter(|&i| dead[i as usize] >= self.aux_cfg.dead_after)
            .collect()
    }
}

/// ∂L/∂z of one row's codes `ix` (increasing): `H_{group(i)} · W_dec[i]`
/// per entry, with `hb` the row's H groups. A group's latents are a range,
/// so its entries are consecutive: they go [`DOT_GROUP`] at a time
/// against the group's H row.
fn row_dz(ix: &[u32], w_dec: &[f32], d: usize, hb: &[f32], group_of: &[u16], out: &mut [f32]) {
    let mut p = 0;
    while p < ix.len() {
        let g = group_of[ix[p] as usize];
        let mut q = p + 1;
        while q < ix.len() && q - p < DOT_GROUP && group_of[ix[q] as usize] == g {
            q += 1;
        }
        let h = &hb[g as usize * d..(g as usize + 1) * d];
        let rows = dot_group(ix[p..q].iter().map(|&i| &w_dec[i as usize * d..]));
        let dots = dots_against(&rows, h, d);
        out[p..q].copy_from_slice(&dots[..q - p]);
        p = q;
    }
}

/// Prefix group of each of the `n` latents given the prefix ends.
fn group_of(ends: &[usize], n: usize) -> Vec<u16> {
    let mut group_of = vec![0u16; n];
    let mut g = 0usize;
    for (i, go) in group_of.iter_mut().enumerate() {
        while g + 1 < ends.len() && i >= ends[g] {
            g += 1;
        }
        *go = g as u16;
    }
    group_of
}

/// Writes `scale·(acc − x)` (the gradient of one prefix's loss) into `hg`
/// and returns ‖acc − x‖² in f64.
fn prefix_grad(acc: &[f32], xb: &[f32], scale: f64, hg: &mut [f32]) -> f64 {
    let mut s = 0.0f64;
    for j in 0..xb.len() {
        let r = acc[j] as f64 - xb[j] as f64;
        s += r * r;
        hg[j] = (scale * r) as f32;
    }
    s
}

/// [`prefix_grad`] that also returns ‖x‖², summed in the same order in a
/// second chain of adds beside the first (each is a serial f64 chain, so
/// the second costs almost nothing).
fn prefix_grad_and_norm(acc: &[f32], xb: &[f32], scale: f64, hg: &mut [f32]) -> (f64, f64) {
    let (mut s, mut xx) = (0.0f64, 0.0f64);
    for j in 0..xb.len() {
        let r = acc[j] as f64 - xb[j] as f64;
        s += r * r;
        xx += (xb[j] as f64) * (xb[j] as f64);
        hg[j] = (scale * r) as f32;
    }
    (s, xx)
}
