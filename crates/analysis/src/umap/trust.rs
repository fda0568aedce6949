//! Trustworthiness of an embedding, exactly as scikit-learn's
//! `sklearn.manifold.trustworthiness(X, E, n_neighbors=k, metric="cosine")`:
//!
//! T(k) = 1 − 2 / (n·k·(2n − 3k − 1)) · Σᵢ Σ_{j ∈ N_k^E(i)} max(0, r(i, j) − k)
//!
//! where N_k^E(i) are i's k nearest points in the embedding (Euclidean,
//! itself excluded) and r(i, j) is j's rank (1 = nearest) among i's
//! neighbours in the input by cosine distance. 1 means every embedded
//! neighbour is also an input neighbour.
//!
//! Exact and O(n²·d) time with O(block·n) memory: cosines come a block of
//! rows at a time from the GEMM, and the k ranks of a row are counted in
//! one pass over its n distances (binary search among the k thresholds).
//! Meant for n up to ~20 000. Ties (equal distances) rank the lower index
//! first; scikit-learn's unstable argsort may order them either way.

use super::error::UmapError;
use super::rows::unit_rows;
use super::Embedding;
use crate::matching::topn::gemm_tile;
use rayon::prelude::*;

/// Rows per GEMM block.
const BLOCK: usize = 64;

/// Trustworthiness of `emb` for the row-major `n × d` `rows` (cosine metric
/// on the rows, which need not be unit-norm; Euclidean on the embedding),
/// with `k` neighbours (1 ≤ k < n/2, as scikit-learn requires).
pub fn trustworthiness(
    rows: &[f32],
    n: usize,
    d: usize,
    emb: &Embedding,
    k: usize,
) -> Result<f64, UmapError> {
    let unit = unit_rows(rows, n, d)?;
    if emb.points.len() != n {
        return Err(UmapError::EmbeddingSize {
            n,
            got: emb.points.len(),
        });
    }
    if let Some(i) = emb
        .points
        .iter()
        .position(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        return Err(UmapError::EmbeddingNonFinite(i));
    }
    if k == 0 || 2 * k >= n {
        return Err(UmapError::TrustK { k, n });
    }
    let penalty: u64 = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * BLOCK;
            let nq = BLOCK.min(n - q0);
            let mut cos = vec![0.0f32; nq * n];
            gemm_tile(
                &unit.data[q0 * d..(q0 + nq) * d],
                nq,
                &unit.data,
                n,
                d,
                &mut cos,
                false,
            );
            cos.chunks_exact(n)
                .enumerate()
                .map(|(r, row)| row_penalty(q0 + r, row, &emb.points, k))
                .sum::<u64>()
        })
        .sum();
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - penalty as f64 * (2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0))))
}

/// Σ_{j ∈ N_k^E(i)} max(0, r(i, j) − k) for point `i`, given its cosines
/// `cos` to every point.
fn row_penalty(i: usize, cos: &[f32], pts: &[[f32; 2]], k: usize) -> u64 {
    let near = embedded_knn(i, pts, k);
    // Input-space key of point l: (cosine distance, index), ascending.
    let key = |l: usize| (1.0 - cos[l], l);
    let mut thresholds: Vec<(f32, usize)> = near.iter().map(|&j| key(j)).collect();
    thresholds.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    // hist[p]: points that rank before thresholds p.. but not before 0..p.
    let mut hist = vec![0u64; k + 1];
    for l in (0..cos.len()).filter(|&l| l != i) {
        let kl = key(l);
        let p = thresholds.partition_point(|t| !less(kl, *t));
        hist[p] += 1;
    }
    let mut before = 0u64;
    let mut penalty = 0u64;
    for (m, _) in thresholds.iter().enumerate() {
        before += hist[m];
        let rank = before + 1;
        penalty += rank.saturating_sub(k as u64);
    }
    penalty
}

#[inline]
fn less(a: (f32, usize), b: (f32, usize)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// The k nearest other points to `i` in the plane (ties: lower index).
fn embedded_knn(i: usize, pts: &[[f32; 2]], k: usize) -> Vec<usize> {
    let p = pts[i];
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (l, q) in pts.iter().enumerate() {
        if l == i {
            continue;
        }
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let dist = dx * dx + dy * dy;
        if best.len() == k && !less((dist, l), best[k - 1]) {
            continue;
        }
        let pos = best.partition_point(|b| less(*b, (dist, l)));
        best.insert(pos, (dist, l));
        best.truncate(k);
    }
    best.into_iter().map(|(_, l)| l).collect()
}
