//! The embedding-space similarity curve 1 / (1 + a·x^(2b)) fitted to
//! umap-learn's target (1 for x < min_dist, exp(−(x − min_dist)/spread)
//! beyond) on 300 points of [0, 3·spread], by least squares as umap-learn's
//! `find_ab_params` (scipy `curve_fit`, Levenberg–Marquardt from (1, 1)).
//!
//! Not umap-rs's own fit: that one runs 1000 fixed-step gradient steps from
//! (1.5, 0.9) and does not reach the least-squares optimum, which would
//! change the layout's tightness relative to umap-learn.

/// Least-squares (a, b) for `spread` and `min_dist` (min_dist ≤ spread).
pub(crate) fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (curve(a, b, x) - y).powi(2))
            .sum()
    };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut c = cost(a, b);
    for _ in 0..1000 {
        let (jtj, jtr) = normal_equations(&xs, &ys, a, b);
        let d00 = jtj[0][0] * (1.0 + lambda);
        let d11 = jtj[1][1] * (1.0 + lambda);
        let det = d00 * d11 - jtj[0][1] * jtj[1][0];
        if det.abs() < 1e-300 || !det.is_finite() {
            break;
        }
        let da = -(d11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
        let db = -(d00 * jtr[1] - jtj[1][0] * jtr[0]) / det;
        let (na, nb) = (a + da, b + db);
        let nc = if na > 0.0 && nb > 0.0 {
            cost(na, nb)
        } else {
            f64::INFINITY
        };
        if nc.is_finite() && nc <= c {
            let done = (c - nc) <= 1e-15 * c.max(1e-300) && da.abs() + db.abs() < 1e-12;
            (a, b, c) = (na, nb, nc);
            lambda = (lambda / 10.0).max(1e-12);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

fn curve(a: f64, b: f64, x: f64) -> f64 {
    1.0 / (1.0 + a * x.powf(2.0 * b))
}

/// JᵀJ and Jᵀr of the residuals r = f(x) − y in (a, b).
fn normal_equations(xs: &[f64], ys: &[f64], a: f64, b: f64) -> ([[f64; 2]; 2], [f64; 2]) {
    let mut jtj = [[0.0; 2]; 2];
    let mut jtr = [0.0; 2];
    for (&x, &y) in xs.iter().zip(ys) {
        let p = x.powf(2.0 * b);
        let den = 1.0 + a * p;
        let r = 1.0 / den - y;
        let ga = -p / (den * den);
        // x^(2b)·ln x → 0 as x → 0.
        let gb = if x > 0.0 {
            -2.0 * a * p * x.ln() / (den * den)
        } else {
            0.0
        };
        jtj[0][0] += ga * ga;
        jtj[0][1] += ga * gb;
        jtj[1][0] += ga * gb;
        jtj[1][1] += gb * gb;
        jtr[0] += ga * r;
        jtr[1] += gb * r;
    }
    (jtj, jtr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by umap-learn 0.5.12 `find_ab_params(1.0, min_dist)`.
    #[test]
    fn matches_umap_learn() {
        for (md, ea, eb) in [
            (0.0, 1.93280839734315, 0.7904949732233831),
            (0.1, 1.5769434602697652, 0.8950608778515733),
            (0.5, 0.5830300203414425, 1.3341669924314914),
            (1.0, 0.11497568327441922, 1.929237144081752),
        ] {
            let (a, b) = find_ab_params(1.0, md);
            assert!(
                (a - ea).abs() < 1e-4 && (b - eb).abs() < 1e-4,
                "{md}: {a} {b}"
            );
        }
    }
}
