//! The exact cosine k-nearest-neighbour table UMAP's fuzzy graph is built
//! from, laid out as umap-learn's: row i lists i itself first at distance 0
//! (umap-learn's `n_neighbors` counts the point itself), then its
//! `n_neighbors − 1` nearest other rows by cosine distance 1 − cos.

use super::error::UmapError;
use crate::matching::{top_n, TileConfig, UnitVectors};

/// A k-nearest-neighbour table over `n` points, row-major `n × k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Knn {
    /// Number of points.
    pub n: usize,
    /// Neighbours per point, the point itself included (first).
    pub k: usize,
    /// `n × k` neighbour indices, nearest first.
    pub indices: Vec<u32>,
    /// `n × k` cosine distances 1 − cos, ascending, each ≥ 0.
    pub dists: Vec<f32>,
}

impl Knn {
    /// Checks the table is well formed (sizes, indices in range, distances
    /// finite and ≥ 0), so a hand-made table cannot make umap-rs panic.
    pub(crate) fn validate(&self) -> Result<(), UmapError> {
        let len = self.n.checked_mul(self.k);
        if len != Some(self.indices.len()) || len != Some(self.dists.len()) {
            return Err(UmapError::Knn(format!(
                "{} indices and {} distances for {} points × {} neighbours",
                self.indices.len(),
                self.dists.len(),
                self.n,
                self.k
            )));
        }
        if let Some(p) = self.indices.iter().position(|&j| j as usize >= self.n) {
            return Err(UmapError::Knn(format!(
                "point {} lists neighbour {} but there are {} points",
                p / self.k,
                self.indices[p],
                self.n
            )));
        }
        if let Some(p) = self
            .dists
            .iter()
            .position(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(UmapError::Knn(format!(
                "point {}: neighbour distance {} is not a finite number ≥ 0",
                p / self.k,
                self.dists[p]
            )));
        }
        Ok(())
    }
}

/// Exact cosine kNN of unit rows by the blocked top-n search, `k` neighbours
/// per row including the row itself (requires `k ≤ n`).
pub(crate) fn cosine_knn(unit: &UnitVectors, k: usize) -> Result<Knn, UmapError> {
    let n = unit.count;
    // k + 1 candidates: with duplicate rows the point itself need not be
    // among the top k by computed cosine (ties, ulp noise).
    let top = top_n(unit, unit, k + 1, &TileConfig::default())?;
    let mut indices = Vec::with_capacity(n * k);
    let mut dists = Vec::with_capacity(n * k);
    for i in 0..n {
        indices.push(i as u32);
        dists.push(0.0);
        let (ix, cs) = top.row(i);
        let others = ix.iter().zip(cs).filter(|(&j, _)| j as usize != i);
        for (&j, &c) in others.take(k - 1) {
            indices.push(j);
            // Rounding can give cos slightly above 1 for near-duplicates.
            dists.push((1.0 - c).max(0.0));
        }
    }
    Ok(Knn {
        n,
        k,
        indices,
        dists,
    })
}
