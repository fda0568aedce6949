//! Checks the input rows (shape, finite, nonzero) and normalises them, so
//! every later stage sees unit vectors and can rely on cos ∈ [−1, 1].

use super::error::UmapError;
use crate::matching::{UnitVectors, ZERO_NORM};
use rayon::prelude::*;

/// Unit-normalised copy of the row-major `n × d` matrix `rows`. A row with
/// a non-finite value, or with norm ≤ [`ZERO_NORM`], is an error naming it
/// (the cosine metric has no value for a zero vector, and silently placing
/// dead latents would put a blob of them in the plot).
pub(crate) fn unit_rows(rows: &[f32], n: usize, d: usize) -> Result<UnitVectors, UmapError> {
    let expected = n.checked_mul(d).ok_or(UmapError::TooManyRows {
        n,
        max: usize::MAX / d.max(1),
    })?;
    if rows.len() != expected {
        return Err(UmapError::Shape {
            n,
            d,
            expected,
            got: rows.len(),
        });
    }
    if d == 0 {
        return Err(UmapError::ZeroDim);
    }
    // u32 neighbour indices, and umap-rs asserts n < u32::MAX.
    let max = u32::MAX as usize - 1;
    if n > max {
        return Err(UmapError::TooManyRows { n, max });
    }
    if let Some(p) = rows.par_iter().position_first(|v| !v.is_finite()) {
        return Err(UmapError::NonFinite {
            row: p / d,
            col: p % d,
            value: rows[p],
        });
    }
    let zero = rows
        .par_chunks(d)
        .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt())
        .enumerate()
        .find_first(|(_, norm)| *norm <= ZERO_NORM);
    if let Some((row, norm)) = zero {
        return Err(UmapError::ZeroRow { row, norm });
    }
    Ok(UnitVectors::from_rows("rows", rows, n, d)?)
}
