//! Errors of the UMAP embedding and the trustworthiness score.

use crate::matching::MatchError;

/// What can go wrong embedding rows or scoring an embedding. Every message
/// names the offending row, parameter or size.
#[derive(Debug, thiserror::Error)]
pub enum UmapError {
    #[error("rows hold {got} values, expected n × d = {n} × {d} = {expected}")]
    Shape {
        n: usize,
        d: usize,
        expected: usize,
        got: usize,
    },
    #[error("rows have no dimensions (d = 0)")]
    ZeroDim,
    #[error("too many rows: {n} (at most {max})")]
    TooManyRows { n: usize, max: usize },
    #[error("n_neighbors must be at least 2, got {0}")]
    NeighborsTooSmall(usize),
    #[error("UMAP needs more rows than n_neighbors: {n} rows, n_neighbors {n_neighbors}")]
    TooFewRows { n: usize, n_neighbors: usize },
    #[error("min_dist must be a number in [0, 1] (spread is 1), got {0}")]
    MinDist(f32),
    #[error("n_epochs must be at least 1")]
    ZeroEpochs,
    #[error("row {row}, column {col}: non-finite value {value}")]
    NonFinite { row: usize, col: usize, value: f32 },
    #[error("row {row} is zero (norm {norm:e}): it has no direction for the cosine metric")]
    ZeroRow { row: usize, norm: f64 },
    #[error("neighbour table: {0}")]
    Knn(String),
    #[error("embedding has {got} points but there are {n} rows")]
    EmbeddingSize { n: usize, got: usize },
    #[error("embedding point {0} is not finite")]
    EmbeddingNonFinite(usize),
    #[error("trustworthiness needs 1 ≤ k < n/2 (as scikit-learn): k {k}, n {n}")]
    TrustK { k: usize, n: usize },
    #[error("nearest-neighbour search: {0}")]
    Search(#[from] MatchError),
}
