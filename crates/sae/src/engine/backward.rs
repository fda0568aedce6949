//! The backward half of a pass for the training codes: ∂L/∂z of the kept
//! entries, the architecture's penalty, ∂L/∂pre, the decoder and encoder
//! gradients, and the bias gradients (after AuxK has added its share).

use super::forward::Nested;
use super::reduce::chunked_col_sum;
use super::Engine;
use crate::arch::PenaltyCtx;
use crate::blocked::CodeKernels;
use crate::kernels::{SparseCodes, ROW_CHUNK};
use crate::params::SaeParams;
use rayon::prelude::*;

impl Engine<'_> {
    /// Gradients of W_dec and W_enc through the training codes of `ctx`
    /// (overwriting those two in `grads`), from ∂L/∂z if the decode computed it
    /// (`dz`); returns the penalty value and the per-latent column sums of
    /// ∂L/∂pre (for b_enc / b_dec).
    pub(super) fn backward_codes(
        &self,
        ctx: &PenaltyCtx,
        nested: &Nested,
        dz: Option<Vec<f32>>,
        xc: &[f32],
        grads: &mut SaeParams,
    ) -> (f64, Vec<f32>) {
        let d = self.d;
        let g_of = |b: usize, i: usize| nested.grad(b, i);
        let kern = CodeKernels::new(ctx.codes);
        let mut dz = dz.unwrap_or_else(|| kern.dz(&self.params.w_dec, d, &g_of));
        let penalty = self.arch.penalty_dz(ctx, &mut dz);
        let dpre = self.dpre(ctx.codes, ctx.pre, &dz);
        let mut col_sum = vec![0.0f32; self.n];
        kern.latent_grads(
            &dpre,
            xc,
            d,
            &g_of,
            &mut grads.w_dec,
            &mut grads.w_enc_t,
            &mut col_sum,
            true,
        );
        (penalty, col_sum)
    }

    /// b_dec: Σ_b H_0 (every prefix contains b_dec), minus the encoder path
    /// for architectures that subtract it; b_enc: the column sums.
    pub(super) fn backward_biases(&self, nested: &Nested, col_sum: &[f32], grads: &mut SaeParams) {
        let (d, rows) = (self.d, self.rows);
        let h0_sum = chunked_col_sum(rows, d, &|b| nested.first_grad(b));
        for (g, s) in grads.b_dec.iter_mut().zip(&h0_sum) {
            *g = *s as f32;
        }
        if self.arch.subtracts_b_dec() {
            let enc = weighted_row_sum(col_sum, &self.params.w_enc_t, d);
            for (g, e) in grads.b_dec.iter_mut().zip(&enc) {
                *g -= *e as f32;
            }
        }
        if self.arch.trains_b_enc() {
            grads.b_enc.copy_from_slice(col_sum);
        }
    }

    /// ∂L/∂pre at every entry of `codes` from ∂L/∂z (`dz`, CSR order).
    pub(super) fn dpre(&self, codes: &SparseCodes, pre: &[f32], dz: &[f32]) -> Vec<f32> {
        let n = self.n;
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
                    *o = self.arch.dpre(pre[b * n + i], dz[p]);
                }
            });
        out
    }
}

/// Columns per task of [`weighted_row_sum`].
const SUM_COLUMNS: usize = 384;

/// `Σ_i s[i]·w[i]` over the rows of `w` (n×d) with `s[i] ≠ 0`, in f64,
/// each element summed in increasing i. Tasks take strips of
/// [`SUM_COLUMNS`] columns, so the order per element does not depend on
/// the thread count.
fn weighted_row_sum(s: &[f32], w: &[f32], d: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; d];
    out.par_chunks_mut(SUM_COLUMNS)
        .enumerate()
        .for_each(|(c, strip)| {
            let j0 = c * SUM_COLUMNS;
            for (i, &si) in s.iter().enumerate() {
                if si != 0.0 {
                    let row = &w[i * d + j0..i * d + j0 + strip.len()];
                    for (e, &wv) in strip.iter_mut().zip(row) {
                        *e += si as f64 * wv as f64;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn weighted_row_sum_keeps_the_serial_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (n, d) in [(50usize, 7usize), (300, 130), (97, 768)] {
            let s: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        0.0
                    } else {
                        rng.random_range(-1.0..1.0)
                    }
                })
                .collect();
            let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut want = vec![0.0f64; d];
            for (i, &si) in s.iter().enumerate() {
                if si != 0.0 {
                    for (e, &wv) in want.iter_mut().zip(&w[i * d..(i + 1) * d]) {
                        *e += si as f64 * wv as f64;
                    }
                }
            }
            let got = weighted_row_sum(&s, &w, d);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "n {n}, d {d}");
        }
    }
}
