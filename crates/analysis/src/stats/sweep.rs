//! Curve helpers: the moving-average overlay of the per-position plots and
//! the threshold sweep ("how many features have a median / mean below t").

use serde::Serialize;

/// Centred moving average with window `w`.
///
/// Output `i` is the mean of `xs[i − (w−1)/2 ..= i + w/2]` clipped to the
/// slice, i.e. the window shrinks at the edges (no padding, so the edges are
/// not pulled towards zero and the output has the input's length). For odd
/// `w` the window is symmetric; for even `w` it has one more value to the
/// right. `w ≤ 1` returns the input. Sums are f64 prefix sums, O(len).
pub fn moving_average(xs: &[f64], w: usize) -> Vec<f64> {
    if w <= 1 || xs.is_empty() {
        return xs.to_vec();
    }
    let mut prefix = Vec::with_capacity(xs.len() + 1);
    prefix.push(0.0f64);
    for &x in xs {
        prefix.push(prefix.last().unwrap() + x);
    }
    let (left, right) = ((w - 1) / 2, w / 2);
    (0..xs.len())
        .map(|i| {
            let lo = i.saturating_sub(left);
            let hi = (i + right).min(xs.len() - 1);
            (prefix[hi + 1] - prefix[lo]) / (hi + 1 - lo) as f64
        })
        .collect()
}

/// Counts of features whose median / mean is below each threshold.
///
/// JSON schema: `{"thresholds": [f64], "below_median": [u64],
/// "below_mean": [u64], "features": u64}`; all arrays have the same length
/// (the number of steps), `features` is how many features were counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdSweep {
    /// Thresholds t_j = max · j / (steps − 1), j = 0..steps (one step: just 0).
    pub thresholds: Vec<f64>,
    /// #{features: median < t_j} (strict).
    pub below_median: Vec<u64>,
    /// #{features: mean < t_j} (strict).
    pub below_mean: Vec<u64>,
    /// Number of features considered.
    pub features: u64,
}

/// Sweeps thresholds over `0..=max` in `steps` evenly spaced values and
/// counts, for each, the features with `median < t` and `mean < t`
/// (strict, so t = 0 counts only negative values). `max = None` uses the
/// largest finite median or mean (0 if none). NaN values are never counted.
/// Sorting makes it O(F log F + steps log F).
pub fn threshold_sweep(
    medians: &[f64],
    means: &[f64],
    max: Option<f64>,
    steps: usize,
) -> ThresholdSweep {
    let steps = steps.max(1);
    let finite_max = medians
        .iter()
        .chain(means)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let max = max.unwrap_or(finite_max);
    let thresholds: Vec<f64> = if steps == 1 {
        vec![0.0]
    } else {
        (0..steps)
            .map(|j| max * j as f64 / (steps - 1) as f64)
            .collect()
    };
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    let (sm, sa) = (sorted(medians), sorted(means));
    // partition_point(|x| x < t) = number of values strictly below t.
    let count = |s: &[f64], t: f64| s.partition_point(|&x| x < t) as u64;
    ThresholdSweep {
        below_median: thresholds.iter().map(|&t| count(&sm, t)).collect(),
        below_mean: thresholds.iter().map(|&t| count(&sa, t)).collect(),
        thresholds,
        features: medians.len().max(means.len()) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_edges_shrink() {
        let xs = [1.0, 2.0, 3.0, 4.0, 10.0];
        let m = moving_average(&xs, 3);
        assert_eq!(m, vec![1.5, 2.0, 3.0, 17.0 / 3.0, 7.0]);
        let m2 = moving_average(&xs, 2);
        // Even window: [i, i+1].
        assert_eq!(m2, vec![1.5, 2.5, 3.5, 7.0, 10.0]);
        assert_eq!(moving_average(&xs, 1), xs.to_vec());
        assert_eq!(moving_average(&xs, 100), vec![4.0; 5]);
    }

    #[test]
    fn sweep_counts_strictly_below() {
        let s = threshold_sweep(&[0.5, 1.0, 2.0], &[1.0, 1.0, 3.0], Some(2.0), 3);
        assert_eq!(s.thresholds, vec![0.0, 1.0, 2.0]);
        assert_eq!(s.below_median, vec![0, 1, 2]);
        assert_eq!(s.below_mean, vec![0, 0, 2]);
        let auto = threshold_sweep(&[0.5], &[3.0], None, 2);
        assert_eq!(auto.thresholds, vec![0.0, 3.0]);
    }
}
