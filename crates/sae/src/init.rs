//! Data-dependent initialization of the decoder bias (SAELens
//! `b_dec_init_method`): the mean or the geometric median of a batch.
//!
//! Sums run over fixed 256-row chunks in parallel and are then added in
//! chunk order, so the result does not depend on the thread count.

use rayon::prelude::*;

const CHUNK: usize = 256;

/// Column means of a B×d row-major batch, in f64.
pub fn mean_rows(x: &[f32], d: usize) -> Vec<f64> {
    weighted_mean(x, d, |_| 1.0)
}

/// Geometric median of the rows of a B×d batch (the point minimizing the sum
/// of Euclidean distances), by Weiszfeld's iterations from the mean:
/// y ← Σ wᵢxᵢ / Σ wᵢ with wᵢ = 1/max(‖xᵢ − y‖, 1e-8). Stops when a step moves
/// y by less than `tol`·(1 + ‖y‖) or after `max_iter` iterations (SAELens:
/// 100). Returns the median and the iterations used.
pub fn geometric_median(x: &[f32], d: usize, max_iter: usize, tol: f64) -> (Vec<f64>, usize) {
    let mut y = mean_rows(x, d);
    for it in 1..=max_iter {
        let yc = y.clone();
        let next = weighted_mean(x, d, |row| {
            let dist2: f64 = row
                .iter()
                .zip(&yc)
                .map(|(&a, &b)| {
                    let t = a as f64 - b;
                    t * t
                })
                .sum();
            1.0 / dist2.sqrt().max(1e-8)
        });
        let moved: f64 = next
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        y = next;
        if moved <= tol * (1.0 + norm) {
            return (y, it);
        }
    }
    (y, max_iter)
}

/// Σ w(xᵢ)·xᵢ / Σ w(xᵢ) over the rows, deterministic in the thread count.
fn weighted_mean(x: &[f32], d: usize, w: impl Fn(&[f32]) -> f64 + Sync) -> Vec<f64> {
    let partials: Vec<(Vec<f64>, f64)> = x
        .par_chunks(CHUNK * d)
        .map(|chunk| {
            let mut acc = vec![0.0f64; d];
            let mut wsum = 0.0f64;
            for row in chunk.chunks_exact(d) {
                let wi = w(row);
                wsum += wi;
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += wi * v as f64;
                }
            }
            (acc, wsum)
        })
        .collect();
    let mut acc = vec![0.0f64; d];
    let mut wsum = 0.0;
    for (p, s) in partials {
        wsum += s;
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    let inv = if wsum > 0.0 { 1.0 / wsum } else { 0.0 };
    acc.iter_mut().for_each(|a| *a *= inv);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The geometric median minimizes Σ‖xᵢ − y‖: no small move improves it,
    /// and with an outlier it stays near the cluster while the mean does not.
    #[test]
    fn geometric_median_minimizes_distance_sum() {
        let d = 3;
        let mut x = Vec::new();
        let mut s = 1u64;
        for _ in 0..300 {
            for _ in 0..d {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                x.push(((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5);
            }
        }
        x.extend_from_slice(&[1000.0, 1000.0, 1000.0]);
        let cost = |y: &[f64]| -> f64 {
            x.chunks(d)
                .map(|r| {
                    r.iter()
                        .zip(y)
                        .map(|(&a, &b)| (a as f64 - b).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum()
        };
        let (gm, _) = geometric_median(&x, d, 500, 1e-12);
        let c0 = cost(&gm);
        for j in 0..d {
            for e in [1e-3, -1e-3] {
                let mut y = gm.clone();
                y[j] += e;
                assert!(
                    cost(&y) >= c0 - 1e-9,
                    "moving coordinate {j} by {e} improves"
                );
            }
        }
        let mean = mean_rows(&x, d);
        assert!(mean[0] > 3.0, "the outlier pulls the mean");
        assert!(
            gm.iter().all(|v| v.abs() < 0.1),
            "median stays with the cluster: {gm:?}"
        );
    }
}
