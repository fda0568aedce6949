//! Fixed-order f64 reductions over rows: chunks of [`ROW_CHUNK`] rows are
//! summed in parallel and combined in chunk order, so results do not depend
//! on the thread count.

use crate::kernels::{group_rows, row_sums_f64, ROW_CHUNK, ROW_GROUP};
use rayon::prelude::*;

/// Σ_b row(b) over rows in fixed chunks combined in order, in f64.
pub(super) fn chunked_col_sum<'a>(
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
pub(super) fn total_variance(x: &[f32], d: usize) -> f64 {
    let rows = x.len() / d;
    if rows == 0 {
        return 0.0;
    }
    let mean = chunked_col_sum(rows, d, &|b| &x[b * d..(b + 1) * d]);
    let mean: Vec<f64> = mean.iter().map(|v| v / rows as f64).collect();
    // Per row Σ_j (x_j − x̄_j)², then the chunk's rows summed in order.
    let parts: Vec<f64> = x
        .par_chunks(d * ROW_CHUNK)
        .map(|c| {
            let mut row_sums = Vec::with_capacity(ROW_CHUNK);
            for block in c.chunks(d * ROW_GROUP) {
                let sums = row_sums_f64(&group_rows(block, d), |_, j, v| {
                    let t = v as f64 - mean[j];
                    t * t
                });
                row_sums.extend_from_slice(&sums[..block.len() / d]);
            }
            row_sums.iter().sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

/// Σ of the squares of all entries of `x` (rows of length d).
pub(super) fn sum_sq_rows(x: &[f32], d: usize) -> f64 {
    let parts: Vec<f64> = x
        .par_chunks(d * ROW_CHUNK)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect();
    parts.iter().sum()
}
