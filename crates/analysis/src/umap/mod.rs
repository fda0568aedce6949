//! 2-D UMAP of SAE decoder directions (SPEC §5, study Fig 18): the rows of
//! W_dec, unit-normalised, embedded with the cosine metric, n_neighbors 15,
//! min_dist 0.1 — umap-learn's defaults — plus the trustworthiness score
//! ([`trustworthiness`]) used to check the embedding against umap-learn's.
//!
//! **Pipeline** (each stage umap-learn's):
//! 1. [`cosine_knn`]: the exact kNN table by the project's blocked top-n
//!    cosine search ([`crate::matching::top_n`]); row i holds i itself
//!    first at distance 0 (umap-learn's `n_neighbors` counts the point
//!    itself), then its n_neighbors − 1 nearest rows by 1 − cos.
//! 2. The fuzzy simplicial set from the table, by the **umap-rs** crate
//!    (`Umap::learn_manifold`: smooth kNN distances, membership strengths,
//!    fuzzy union), cosine disconnection distance 2 as umap-learn; then
//!    umap-learn's edge pruning and sampling schedule.
//! 3. Initial layout ([`UmapInit`]), rescaled to [0, 10]².
//! 4. SGD for n_epochs (default 500 for n ≤ 10 000, else 200), with the
//!    (a, b) curve parameters least-squares fitted as umap-learn does.
//!
//! **Why umap-rs, and why only for the graph.** umap-rs (0.4.5, pure Rust,
//! ndarray + rayon) takes a precomputed kNN table, which lets us use our
//! exact cosine search. Reading its source: (a) it is not seeded — the
//! optimiser draws negative samples from `rand::rng()`, seeded from the OS,
//! and there is no way to pass a seed or RNG; (b) so it cannot be made
//! deterministic by any thread count (a 1-thread rayon pool would only
//! remove the Hogwild races, not the OS seed), and its optimiser also moves
//! edge tails in a stale copy of the embedding; (c) it panics on invalid
//! input (n_neighbors < 2, n ≤ n_neighbors, min_dist outside [0, spread],
//! shape mismatches, n ≥ 2³²) — all checked here first, so [`embed_rows`]
//! returns errors instead. Its graph construction is deterministic (every
//! row computed independently), so we use that and run our own sequential,
//! seeded optimiser (`sgd.rs`, ~80 lines following umap-learn's
//! `optimize_layout_euclidean` as umap-learn runs it when `random_state` is
//! set), and our own (a, b) fit (umap-rs's gradient-descent fit misses the
//! least-squares optimum). The alternative `annembed` needs a LAPACK/BLAS
//! system library (`ndarray-linalg`/`lax`) and its own graph/embedding
//! variant, so it was not taken.
//!
//! **Determinism.** Same rows, parameters and seed → bit-identical
//! embedding for a fixed rayon thread count. The optimiser and
//! initialisation are sequential and thread-independent; the kNN cosines
//! come from the `gemm` crate whose tile shapes follow the thread count,
//! which can move a cosine by an ulp and so, rarely, reorder two
//! near-tied neighbours.
//!
//! **Initialisation.** umap-learn defaults to a spectral layout; umap-rs
//! has none. [`UmapInit::Pca`] (the default) and [`UmapInit::Random`] are
//! umap-learn's other built-ins. Measured on a trained TopK SAE (n 2304,
//! d 576), trustworthiness (k 10) for seeds 49, 1, 2, 3: ours with PCA
//! 0.719 0.720 0.727 0.721, ours random 0.727 0.716 0.722 0.719,
//! umap-learn (spectral) 0.721 0.723 0.720 0.719 — the same within seed
//! noise. PCA is the default: like spectral it places the clusters by the
//! data's global structure rather than by chance.

mod ab;
mod error;
mod graph;
mod init;
mod knn;
mod rng;
mod rows;
mod sgd;
mod trust;

pub use error::UmapError;
pub use init::UmapInit;
pub use knn::Knn;
pub use trust::trustworthiness;

/// UMAP settings; the defaults are the study's (umap-learn's defaults with
/// the cosine metric).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UmapParams {
    /// Neighbours per point, the point itself included (umap-learn
    /// convention). At least 2, and fewer than the number of rows.
    pub n_neighbors: usize,
    /// Minimum distance between embedded points, in [0, 1].
    pub min_dist: f32,
    /// SGD epochs; `None`: 500 for n ≤ 10 000 rows, else 200 (umap-learn).
    pub n_epochs: Option<usize>,
    /// Seed of every random draw (initial layout, negative samples).
    pub seed: u64,
    /// Starting layout (default PCA; see the module doc).
    pub init: UmapInit,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            n_neighbors: 15,
            min_dist: 0.1,
            n_epochs: None,
            seed: 49,
            init: UmapInit::Pca,
        }
    }
}

impl UmapParams {
    fn validate(&self, n: usize) -> Result<(), UmapError> {
        if self.n_neighbors < 2 {
            return Err(UmapError::NeighborsTooSmall(self.n_neighbors));
        }
        if n <= self.n_neighbors {
            return Err(UmapError::TooFewRows {
                n,
                n_neighbors: self.n_neighbors,
            });
        }
        if !(0.0..=1.0).contains(&self.min_dist) {
            return Err(UmapError::MinDist(self.min_dist));
        }
        if self.n_epochs == Some(0) {
            return Err(UmapError::ZeroEpochs);
        }
        Ok(())
    }

    /// The epoch count used for `n` points.
    pub fn epochs_for(&self, n: usize) -> usize {
        self.n_epochs.unwrap_or(if n <= 10_000 { 500 } else { 200 })
    }
}

/// A 2-D embedding, one point per input row.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub points: Vec<[f32; 2]>,
}

/// Embeds the rows of the row-major `n × d` matrix `rows` (normalised
/// inside; a zero or non-finite row is an error naming it) in 2-D.
pub fn embed_rows(
    rows: &[f32],
    n: usize,
    d: usize,
    params: &UmapParams,
) -> Result<Embedding, UmapError> {
    params.validate(n)?;
    let knn = cosine_knn(rows, n, d, params.n_neighbors)?;
    embed_knn(rows, n, d, &knn, params)
}

/// Stage 1 alone: the exact cosine kNN table of the rows, `n_neighbors`
/// per row including the row itself (see the module doc).
pub fn cosine_knn(rows: &[f32], n: usize, d: usize, n_neighbors: usize) -> Result<Knn, UmapError> {
    UmapParams {
        n_neighbors,
        ..Default::default()
    }
    .validate(n)?;
    let unit = rows::unit_rows(rows, n, d)?;
    knn::cosine_knn(&unit, n_neighbors)
}

/// Stages 2–4: the embedding of the rows from their kNN table (from
/// [`cosine_knn`] with `params.n_neighbors`). The rows are used only by
/// the PCA initialisation.
pub fn embed_knn(
    rows: &[f32],
    n: usize,
    d: usize,
    knn: &Knn,
    params: &UmapParams,
) -> Result<Embedding, UmapError> {
    params.validate(n)?;
    knn.validate()?;
    if knn.n != n || knn.k != params.n_neighbors {
        return Err(UmapError::Knn(format!(
            "table is {} points × {} neighbours, expected {n} × {}",
            knn.n, knn.k, params.n_neighbors
        )));
    }
    let unit = rows::unit_rows(rows, n, d)?;
    let n_epochs = params.epochs_for(n);
    let edges = graph::fuzzy_edges(knn, n_epochs)?;
    let (a, b) = ab::find_ab_params(1.0, params.min_dist as f64);
    let mut init_rng = rng::Stream::new(params.seed, rng::INIT_STREAM);
    let mut points = init::initial_layout(&unit, params.init, &mut init_rng);
    let mut sgd_rng = rng::Stream::new(params.seed, rng::SGD_STREAM);
    sgd::optimize(&mut points, &edges, a, b, n_epochs, &mut sgd_rng);
    Ok(Embedding { points })
}
