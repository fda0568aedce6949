//! The parameter update of a training step: Adam (torch.optim.Adam, no
//! weight decay, no amsgrad, elementwise in the operation order of its
//! single-tensor path) and the decoder constraint around it (SPEC §2.1:
//! before Adam each decoder row is renormalized and the component of its
//! gradient along the row removed; after Adam, optionally, renormalized
//! again).
//!
//! The constraint and W_dec's Adam update run row by row in one pass, so
//! each decoder row, its gradient and its moments are read once while
//! cache-hot instead of once per stage (four passes over 38 MB each at n
//! 12288). Every operation on every element is the one the separate
//! passes did, in the same order, so the bits are the same (tested).

use crate::kernels::dot;
use crate::params::{normalize_row_unit, SaeParams};
use rayon::prelude::*;

/// Adam's constants for one step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adam {
    b1: f32,
    b2: f32,
    eps: f32,
    /// lr / (1 − β₁ᵗ).
    step_size: f32,
    /// √(1 − β₂ᵗ).
    bc2_sqrt: f32,
}

impl Adam {
    /// The update of step `step` (1-based) at learning rate `lr`.
    pub(crate) fn new(step: u64, lr: f32, b1: f32, b2: f32, eps: f32) -> Self {
        let bc1 = 1.0 - (b1 as f64).powi(step as i32);
        let bc2_sqrt = (1.0 - (b2 as f64).powi(step as i32)).sqrt();
        Adam {
            b1,
            b2,
            eps,
            step_size: (lr as f64 / bc1) as f32,
            bc2_sqrt: bc2_sqrt as f32,
        }
    }

    /// Updates `p` and the moments `m`, `v` with the gradient `g`.
    #[inline]
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1, b2) = (self.b1, self.b2);
        // Zipped iterators (no bounds checks), so the loop vectorizes.
        for (((pj, &gj), mj), vj) in p.iter_mut().zip(g).zip(m).zip(v) {
            *mj += (1.0 - b1) * (gj - *mj);
            *vj = *vj * b2 + (1.0 - b2) * gj * gj;
            let denom = vj.sqrt() / self.bc2_sqrt + self.eps;
            *pj -= self.step_size * *mj / denom;
        }
    }

    /// Updates one whole tensor, in parallel chunks.
    fn apply_tensor(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        p.par_chunks_mut(4096)
            .zip(g.par_chunks(4096))
            .zip(m.par_chunks_mut(4096))
            .zip(v.par_chunks_mut(4096))
            .for_each(|(((pc, gc), mc), vc)| self.apply(pc, gc, mc, vc));
    }
}

/// The decoder constraint of a training config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecoderConstraint {
    /// Unit-norm decoder rows with the gradient projection (off: plain Adam).
    pub unit_norm: bool,
    /// Renormalize the rows after Adam too.
    pub renormalize_after: bool,
}

/// Decoder rows per task of the fused decoder update.
const ROWS_PER_TASK: usize = 16;

/// One update of every parameter: Adam on each tensor, and on W_dec the
/// constraint around it. `g`'s W_dec rows are left projected (what Adam
/// used).
pub(crate) fn update(
    p: &mut SaeParams,
    g: &mut SaeParams,
    m: &mut SaeParams,
    v: &mut SaeParams,
    adam: &Adam,
    constraint: DecoderConstraint,
) {
    let d = p.d;
    if constraint.unit_norm && d > 0 {
        p.w_dec
            .par_chunks_mut(ROWS_PER_TASK * d)
            .zip(g.w_dec.par_chunks_mut(ROWS_PER_TASK * d))
            .zip(m.w_dec.par_chunks_mut(ROWS_PER_TASK * d))
            .zip(v.w_dec.par_chunks_mut(ROWS_PER_TASK * d))
            .for_each(|(((pc, gc), mc), vc)| {
                let rows = pc.chunks_mut(d).zip(gc.chunks_mut(d));
                for ((w, g), (m, v)) in rows.zip(mc.chunks_mut(d).zip(vc.chunks_mut(d))) {
                    constrained_row(w, g, m, v, adam, constraint.renormalize_after);
                }
            });
    }
    let fused = constraint.unit_norm && d > 0;
    let gs = g.tensors();
    for ((((name, pt), (_, gt)), (_, mt)), (_, vt)) in p
        .tensors_mut()
        .into_iter()
        .zip(gs)
        .zip(m.tensors_mut())
        .zip(v.tensors_mut())
    {
        if !(fused && name == "w_dec") {
            adam.apply_tensor(pt, gt, mt, vt);
        }
    }
}

/// One decoder row `w`: renormalized, its gradient `g` projected off it,
/// Adam, and renormalized again if `renormalize_after`.
fn constrained_row(
    w: &mut [f32],
    g: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    adam: &Adam,
    renormalize_after: bool,
) {
    normalize_row_unit(w);
    let a = dot(g, w);
    for (gj, &wj) in g.iter_mut().zip(&*w) {
        *gj -= a * wj;
    }
    adam.apply(w, g, m, v);
    if renormalize_after {
        normalize_row_unit(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::normalize_rows_unit;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(d: usize, n: usize, rng: &mut ChaCha8Rng, scale: f32) -> SaeParams {
        let mut p = SaeParams::zeros(d, n, true);
        for (_, t) in p.tensors_mut() {
            t.iter_mut()
                .for_each(|v| *v = rng.random_range(-scale..scale));
        }
        p
    }

    /// The constraint and Adam as separate passes over whole tensors (the
    /// form `update` replaced).
    fn separate_passes(
        p: &mut SaeParams,
        g: &mut SaeParams,
        m: &mut SaeParams,
        v: &mut SaeParams,
        adam: &Adam,
        c: DecoderConstraint,
    ) {
        let d = p.d;
        if c.unit_norm {
            normalize_rows_unit(&mut p.w_dec, d);
            for (gr, wr) in g.w_dec.chunks_mut(d).zip(p.w_dec.chunks(d)) {
                let a = dot(gr, wr);
                for (gj, &wj) in gr.iter_mut().zip(wr) {
                    *gj -= a * wj;
                }
            }
        }
        let gs = g.tensors();
        for ((((_, pt), (_, gt)), (_, mt)), (_, vt)) in p
            .tensors_mut()
            .into_iter()
            .zip(gs)
            .zip(m.tensors_mut())
            .zip(v.tensors_mut())
        {
            adam.apply(pt, gt, mt, vt);
        }
        if c.unit_norm && c.renormalize_after {
            normalize_rows_unit(&mut p.w_dec, d);
        }
    }

    #[test]
    fn fused_update_gives_the_bits_of_the_separate_passes() {
        let (d, n) = (37, 41);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut p0 = random(d, n, &mut rng, 1.0);
        p0.w_dec[3 * d..4 * d].fill(0.0); // a zero row stays zero
        let g0 = random(d, n, &mut rng, 0.1);
        let m0 = random(d, n, &mut rng, 0.01);
        let mut v0 = random(d, n, &mut rng, 0.01);
        for (_, t) in v0.tensors_mut() {
            t.iter_mut().for_each(|x| *x = x.abs());
        }
        let adam = Adam::new(3, 1e-3, 0.9, 0.999, 1e-8);
        for (unit_norm, renormalize_after) in [(true, true), (true, false), (false, true)] {
            let c = DecoderConstraint {
                unit_norm,
                renormalize_after,
            };
            let mut a = (p0.clone(), g0.clone(), m0.clone(), v0.clone());
            let mut b = a.clone();
            update(&mut a.0, &mut a.1, &mut a.2, &mut a.3, &adam, c);
            separate_passes(&mut b.0, &mut b.1, &mut b.2, &mut b.3, &adam, c);
            let bits = |s: &SaeParams| {
                s.tensors()
                    .iter()
                    .map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            };
            for (what, x, y) in [
                ("params", &a.0, &b.0),
                ("grads", &a.1, &b.1),
                ("m", &a.2, &b.2),
                ("v", &a.3, &b.3),
            ] {
                assert_eq!(bits(x), bits(y), "{what}, {c:?}");
            }
            assert_ne!(bits(&a.0), bits(&p0), "the update moved nothing");
        }
    }
}
