//! Starting layouts for the optimiser, each ending, as in umap-learn, with
//! every coordinate rescaled to [0, 10].
//!
//! umap-rs has no initialiser (it takes one), and umap-learn's default,
//! spectral, needs a sparse eigensolver; these two are umap-learn's other
//! built-in choices: `pca` (top-2 principal components of the unit rows,
//! scaled to max |coord| 10 plus N(0, 1e-4) noise) and `random`
//! (uniform in [−10, 10]²).

use super::rng::Stream;
use crate::matching::topn::gemm_tile;
use crate::matching::UnitVectors;

/// Which starting layout to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UmapInit {
    /// Top-2 principal components of the unit rows (umap-learn `init="pca"`).
    Pca,
    /// Uniform in [−10, 10]² from the seed (umap-learn `init="random"`).
    Random,
}

/// The starting layout of `unit`'s rows, drawn from `rng`.
pub(crate) fn initial_layout(
    unit: &UnitVectors,
    init: UmapInit,
    rng: &mut Stream,
) -> Vec<[f32; 2]> {
    let mut pts = match init {
        UmapInit::Random => (0..unit.count)
            .map(|_| {
                [
                    rng.uniform(-10.0, 10.0) as f32,
                    rng.uniform(-10.0, 10.0) as f32,
                ]
            })
            .collect(),
        UmapInit::Pca => {
            let mut p = pca2(unit);
            noisy_scale(&mut p, rng);
            p
        }
    };
    rescale_0_10(&mut pts);
    pts
}

/// Projections of the centred rows on their top-2 principal axes.
fn pca2(unit: &UnitVectors) -> Vec<[f32; 2]> {
    let (n, d) = (unit.count, unit.dim);
    let mut mean = vec![0.0f64; d];
    for r in unit.data.chunks_exact(d) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    // Centred rows, transposed (d × n), so that one GEMM gives XᵀX.
    let mut xt = vec![0.0f32; d * n];
    for (i, r) in unit.data.chunks_exact(d).enumerate() {
        for (j, &v) in r.iter().enumerate() {
            xt[j * n + i] = (v as f64 - mean[j]) as f32;
        }
    }
    let mut cov = vec![0.0f32; d * d];
    gemm_tile(&xt, d, &xt, d, n, &mut cov, true);
    let axes = top2_eigvecs(&cov, d);
    (0..n)
        .map(|i| {
            let proj = |ax: &[f64]| (0..d).map(|j| xt[j * n + i] as f64 * ax[j]).sum::<f64>();
            [proj(&axes[0]) as f32, proj(&axes[1]) as f32]
        })
        .collect()
}

/// Top-2 eigenvectors of the symmetric d × d `cov` by orthogonal (subspace)
/// iteration from a fixed start, so the result depends on `cov` only.
fn top2_eigvecs(cov: &[f32], d: usize) -> [Vec<f64>; 2] {
    let mut v: [Vec<f64>; 2] = [
        (0..d).map(|j| 1.0 + (j % 7) as f64 * 0.1).collect(),
        (0..d)
            .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + (j % 5) as f64 * 0.1))
            .collect(),
    ];
    orthonormalise(&mut v);
    for _ in 0..300 {
        let mul = |x: &[f64]| -> Vec<f64> {
            cov.chunks_exact(d)
                .map(|row| row.iter().zip(x).map(|(&c, &y)| c as f64 * y).sum())
                .collect()
        };
        v = [mul(&v[0]), mul(&v[1])];
        orthonormalise(&mut v);
    }
    v
}

/// Gram–Schmidt on two vectors (a zero vector stays zero).
fn orthonormalise(v: &mut [Vec<f64>; 2]) {
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let n0 = norm(&v[0]);
    if n0 > 0.0 {
        v[0].iter_mut().for_each(|a| *a /= n0);
    }
    let dot: f64 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    let (first, second) = v.split_at_mut(1);
    second[0]
        .iter_mut()
        .zip(&first[0])
        .for_each(|(b, a)| *b -= dot * a);
    let n1 = norm(&v[1]);
    if n1 > 0.0 {
        v[1].iter_mut().for_each(|a| *a /= n1);
    }
}

/// umap-learn's `noisy_scale_coords`: scale so the largest |coord| is 10,
/// then add N(0, 1e-4) noise.
fn noisy_scale(pts: &mut [[f32; 2]], rng: &mut Stream) {
    let max = pts.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { 10.0 / max } else { 0.0 };
    for p in pts.iter_mut().flatten() {
        *p = *p * scale + (rng.normal() * 1e-4) as f32;
    }
}

/// Each coordinate mapped affinely to [0, 10] (a constant one to 0).
fn rescale_0_10(pts: &mut [[f32; 2]]) {
    for c in 0..2 {
        let lo = pts.iter().map(|p| p[c]).fold(f32::INFINITY, f32::min);
        let hi = pts.iter().map(|p| p[c]).fold(f32::NEG_INFINITY, f32::max);
        let range = hi - lo;
        for p in pts.iter_mut() {
            p[c] = if range > 0.0 {
                10.0 * (p[c] - lo) / range
            } else {
                0.0
            };
        }
    }
}
