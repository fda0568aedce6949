//! The layout optimisation: umap-learn's `optimize_layout_euclidean` as it
//! runs when a `random_state` is set (sequential over edges, head and tail
//! embedding the same array, `move_other`), with a seeded per-point
//! generator for the negative samples. Gradients are computed in f64 (as
//! numba does with umap-learn's f64 `a`, `b`), positions stored in f32.
//!
//! Written here rather than taken from umap-rs's `Optimizer`, which draws
//! negative samples from `rand::rng()` (OS-seeded, so no two runs agree),
//! always runs Hogwild-parallel, and moves the edge tails in a stale copy of
//! the embedding rather than in the embedding itself.

use super::graph::Edges;
use super::rng::{SplitMix, Stream};

/// Constants of umap-learn's defaults.
const GAMMA: f64 = 1.0;
const INITIAL_ALPHA: f64 = 1.0;
const NEGATIVE_SAMPLE_RATE: f64 = 5.0;

/// umap-learn's gradient clip.
#[inline]
fn clip(v: f64) -> f64 {
    v.clamp(-4.0, 4.0)
}

/// Runs `n_epochs` epochs of SGD on `emb` in place.
pub(crate) fn optimize(
    emb: &mut [[f32; 2]],
    edges: &Edges,
    a: f64,
    b: f64,
    n_epochs: usize,
    rng: &mut Stream,
) {
    let n = emb.len();
    let eps = &edges.epochs_per_sample;
    let eps_neg: Vec<f64> = eps.iter().map(|e| e / NEGATIVE_SAMPLE_RATE).collect();
    let mut next_sample = eps.clone();
    let mut next_neg = eps_neg.clone();
    let mut vertex_rng: Vec<SplitMix> = (0..n).map(|_| SplitMix(rng.next_u64())).collect();
    let mut alpha = INITIAL_ALPHA;
    for epoch in 0..n_epochs {
        let e = epoch as f64;
        for i in 0..eps.len() {
            if next_sample[i] > e {
                continue;
            }
            let (j, k) = (edges.head[i] as usize, edges.tail[i] as usize);
            attract(emb, j, k, a, b, alpha);
            next_sample[i] += eps[i];
            let n_neg = ((e - next_neg[i]) / eps_neg[i]).max(0.0) as usize;
            for _ in 0..n_neg {
                let k = vertex_rng[j].below(n);
                repel(emb, j, k, a, b, alpha);
            }
            next_neg[i] += n_neg as f64 * eps_neg[i];
        }
        // As umap-learn: epoch 0 and 1 both run at the initial rate.
        alpha = INITIAL_ALPHA * (1.0 - e / n_epochs as f64);
    }
}

/// Squared distance as umap-learn's `rdist`: f32 differences and products
/// summed into an f64.
#[inline]
fn sq_dist(emb: &[[f32; 2]], j: usize, k: usize) -> f64 {
    let d = [emb[j][0] - emb[k][0], emb[j][1] - emb[k][1]];
    (d[0] * d[0]) as f64 + (d[1] * d[1]) as f64
}

/// Pulls the ends of edge (j, k) together.
#[inline]
// Coordinate c of two different points: no single iterator covers both.
#[allow(clippy::needless_range_loop)]
fn attract(emb: &mut [[f32; 2]], j: usize, k: usize, a: f64, b: f64, alpha: f64) {
    let sq = sq_dist(emb, j, k);
    let coeff = if sq > 0.0 {
        -2.0 * a * b * sq.powf(b - 1.0) / (a * sq.powf(b) + 1.0)
    } else {
        0.0
    };
    for c in 0..2 {
        // Per coordinate, after the previous coordinate moved (umap-learn).
        let g = clip(coeff * (emb[j][c] as f64 - emb[k][c] as f64));
        emb[j][c] = (emb[j][c] as f64 + g * alpha) as f32;
        emb[k][c] = (emb[k][c] as f64 - g * alpha) as f32;
    }
}

/// Pushes j away from the random point k.
#[inline]
#[allow(clippy::needless_range_loop)]
fn repel(emb: &mut [[f32; 2]], j: usize, k: usize, a: f64, b: f64, alpha: f64) {
    let sq = sq_dist(emb, j, k);
    if sq <= 0.0 {
        return; // j itself, or a coincident point: umap-learn moves nothing
    }
    let coeff = 2.0 * GAMMA * b / ((0.001 + sq) * (a * sq.powf(b) + 1.0));
    for c in 0..2 {
        let g = clip(coeff * (emb[j][c] as f64 - emb[k][c] as f64));
        emb[j][c] = (emb[j][c] as f64 + g * alpha) as f32;
    }
}
