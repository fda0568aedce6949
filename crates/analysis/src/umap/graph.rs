//! The fuzzy simplicial set (UMAP's weighted kNN graph) from umap-rs, turned
//! into the edge list the optimiser samples — umap-learn's
//! `simplicial_set_embedding` preprocessing: edges weaker than
//! max_weight / n_epochs are dropped, and each kept edge is sampled every
//! max_weight / weight epochs.

use super::error::UmapError;
use super::knn::Knn;
use ndarray::ArrayView2;
use umap_rs::{GraphParams, ManifoldParams, Umap, UmapConfig};

/// umap-learn's disconnection distance for the cosine metric: an edge at
/// cosine distance ≥ 2 (antipodal) carries no information.
const COSINE_DISCONNECTION: f32 = 2.0;

/// Kept graph edges in row-major (head, tail) order, as umap-learn's COO.
pub(crate) struct Edges {
    pub head: Vec<u32>,
    pub tail: Vec<u32>,
    pub epochs_per_sample: Vec<f64>,
}

/// Builds the symmetrised fuzzy graph of `knn` with umap-rs (local
/// connectivity 1, fuzzy union) and keeps the edges worth sampling in
/// `n_epochs` epochs. `knn` must be validated and have `2 ≤ k < n`.
pub(crate) fn fuzzy_edges(knn: &Knn, n_epochs: usize) -> Result<Edges, UmapError> {
    let config = UmapConfig {
        n_components: 2,
        // a and b are unused by the graph; given so umap-rs skips its fit.
        manifold: ManifoldParams {
            a: Some(1.0),
            b: Some(1.0),
            ..Default::default()
        },
        graph: GraphParams {
            n_neighbors: knn.k,
            disconnection_distance: Some(COSINE_DISCONNECTION),
            ..Default::default()
        },
        ..Default::default()
    };
    let shape_err = |e: ndarray::ShapeError| UmapError::Knn(e.to_string());
    let idx = ArrayView2::from_shape((knn.n, knn.k), &knn.indices).map_err(shape_err)?;
    let dist = ArrayView2::from_shape((knn.n, knn.k), &knn.dists).map_err(shape_err)?;
    // learn_manifold reads only the row count of `data`.
    let data = ArrayView2::from_shape((knn.n, 0), &[][..]).map_err(shape_err)?;
    let manifold = Umap::new(config).learn_manifold(data, idx, dist);
    let graph = manifold.graph();

    let max_w = graph.data().iter().fold(0.0f32, |m, &w| m.max(w));
    let default_epochs = if knn.n <= 10_000 { 500 } else { 200 };
    let cut_epochs = if n_epochs > 10 {
        n_epochs
    } else {
        default_epochs
    };
    let threshold = max_w / cut_epochs as f32;
    let mut edges = Edges {
        head: Vec::new(),
        tail: Vec::new(),
        epochs_per_sample: Vec::new(),
    };
    for (row, vec) in graph.outer_iterator().enumerate() {
        for (col, &w) in vec.iter() {
            if w >= threshold && w > 0.0 {
                edges.head.push(row as u32);
                edges.tail.push(col as u32);
                // As umap-learn: n_samples = n_epochs·(w / max) in f32, then
                // n_epochs / n_samples in f64.
                let samples = n_epochs as f32 * (w / max_w);
                edges
                    .epochs_per_sample
                    .push(n_epochs as f64 / samples as f64);
            }
        }
    }
    Ok(edges)
}
