//! Feature matching between two SAEs (SPEC §5, issue #4): top-n cosine
//! profiles, matching ratios in both directions, MMCS, chance levels,
//! Top-n histograms, and the exact one-to-one assignment with R_H and the
//! Paulo & Belrose shared fraction.
//!
//! Modules:
//! - [`vectors`]: normalized feature / neuron vectors from an SAE;
//! - [`topn`]: blocked, bounded-memory top-n search (both directions in one
//!   GEMM pass);
//! - [`metrics`]: ratio, MMCS, histograms, chance level;
//! - [`lap`]: dense and sparse exact LAP solvers (also scipy-like entry
//!   points on plain matrices);
//! - [`assignment`]: assignment of vector sets with the sparse candidate
//!   graph and its dual optimality certificate;
//! - [`error`]: the error type [`MatchError`];
//! - [`grid`]: pairs and grids of SAE directories with their settings, the
//!   study's Tables 1 and 2 and the ratio matrix, and their output files.
//!
//! [`compare`] runs everything [`MatchOptions`] asks for and returns a
//! [`MatchReport`].
//!
//! # JSON schema of [`MatchReport`] (`schema` = `"saelab.match.v1"`)
//!
//! ```text
//! {
//!   "schema": "saelab.match.v1",
//!   "label_a": str, "label_b": str,          // A = reference, B = query
//!   "threshold": f32, "top_n": int, "hist_bins": int,
//!   "chance_queries": int, "seed": u64,
//!   "comparisons": [{                        // one per (vector kind, unit)
//!     "kind": "decoder" | "encoder",
//!     "unit": "features" | "neurons",
//!     "n_a": int, "n_b": int, "dim": int,    // vector counts and length
//!     "zero_norm_a": int, "zero_norm_b": int,// vectors treated as zero
//!     "b_in_a": Direction,                   // queries B against reference A
//!     "a_in_b": Direction,                   // queries A against reference B
//!     "assignment": null | {
//!       "pairs": int, "total": f64, "mean_cosine": f64,
//!       "fraction_above": f64,               // R_H at threshold, over min(n_a, n_b)
//!       "path": {"kind": "dense", "fallback": bool, "sparse_rounds": int}
//!             | {"kind": "sparse", "m": int, "rounds": int, "edges": int,
//!                "edges_added": int, "rows_checked_exactly": int},
//!       "certificate": {"certified": bool, "dual_gap": f64, "max_violation": f64}
//!     }
//!   }],
//!   "shared": null | {                       // decoder+encoder features with assignment
//!     "threshold": f32, "denominator": int, "shared_count": int,
//!     "shared": f64, "decoder_pairs_encoder_above": f64
//!   }
//! }
//! Direction = {
//!   "reference": str, "query": str, "n_ref": int, "n_query": int,
//!   "k": int,                                // min(top_n, n_ref)
//!   "ratio": f64,                            // R(ref←query) = mean_q 1[max > τ]
//!   "mmcs": f64,                             // mean_q max cosine
//!   "top_mean": [f64; k],                    // mean Top-1..Top-k cosine
//!   "chance_analytic": f64,                  // √(2 ln n_ref)/√dim
//!   "chance_monte_carlo": f64,               // seeded MC estimate
//!   "histograms": [{"rank": int, "lo": -1.0, "hi": 1.0, "counts": [u64; hist_bins]}]
//! }
//! ```
//!
//! The per-query top-n lists ([`Direction::top`]) and the assignment pairs
//! ([`Comparison::assignment_pairs`]) are large (n × top_n, n pairs) and are
//! left out of the JSON (`#[serde(skip)]`); they stay in the struct so the
//! CLI can write them as CSV.

pub mod assignment;
pub mod error;
pub mod grid;
pub mod lap;
pub mod metrics;
pub mod topn;
pub mod vectors;

pub use assignment::{
    assign, assign_with_profiles, shared_fraction, Assignment, AssignmentOptions, AssignmentPath,
    AssignmentStrategy, Certificate, SharedFraction,
};
pub use error::{MatchError, Result};
pub use lap::{linear_sum_assignment, sparse_linear_sum_assignment, LsaResult};
pub use metrics::{
    chance_level_analytic, chance_level_monte_carlo, matching_ratio, mmcs, random_unit_vectors,
    top_n_histograms, Histogram,
};
pub use topn::{top_n, top_n_both, TileConfig, TopN};
pub use vectors::{vector_pair, Unit, UnitVectors, VectorKind, ZERO_NORM};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_sae::Sae;
use serde::Serialize;
use std::collections::HashMap;

/// Schema identifier written into every [`MatchReport`].
pub const SCHEMA: &str = "saelab.match.v1";

/// Which feature vectors to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorSelection {
    /// Rows of W_dec.
    Decoder,
    /// Columns of W_enc.
    Encoder,
    /// Both (enables the shared fraction when `assignment` is on).
    Both,
}

impl VectorSelection {
    fn kinds(self) -> Vec<VectorKind> {
        match self {
            VectorSelection::Decoder => vec![VectorKind::Decoder],
            VectorSelection::Encoder => vec![VectorKind::Encoder],
            VectorSelection::Both => vec![VectorKind::Decoder, VectorKind::Encoder],
        }
    }
}

/// What [`compare`] computes.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchOptions {
    /// Matching threshold τ (strict `>`), default 0.7.
    pub threshold: f32,
    /// Neighbours per query in the profile, default 4.
    pub top_n: usize,
    /// Feature vectors to compare, default decoder.
    pub vectors: VectorSelection,
    /// Also compare neuron vectors (requires equal n), default off.
    pub neurons: bool,
    /// Compute the exact one-to-one assignment, default off.
    pub assignment: bool,
    /// Bins of the Top-k histograms over [−1, 1], default 200 (width 0.01).
    pub hist_bins: usize,
    /// Random queries of the Monte Carlo chance level, default 256.
    pub chance_queries: usize,
    /// Seed of the Monte Carlo chance level, default 0.
    pub seed: u64,
    /// Labels of A and B in the report and in error messages.
    pub labels: (String, String),
    /// Assignment solver options.
    pub assignment_options: AssignmentOptions,
    /// Tiles of the top-n pass.
    pub tile: TileConfig,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            threshold: 0.7,
            top_n: 4,
            vectors: VectorSelection::Decoder,
            neurons: false,
            assignment: false,
            hist_bins: 200,
            chance_queries: 256,
            seed: 0,
            labels: ("A".into(), "B".into()),
            assignment_options: AssignmentOptions::default(),
            tile: TileConfig::default(),
        }
    }
}

/// One direction of a comparison: every query vector against the reference
/// set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Direction {
    /// Label of the reference SAE.
    pub reference: String,
    /// Label of the query SAE.
    pub query: String,
    /// Reference vectors.
    pub n_ref: usize,
    /// Query vectors.
    pub n_query: usize,
    /// Entries per query: min(top_n, n_ref).
    pub k: usize,
    /// Matching ratio R(reference←query) at τ.
    pub ratio: f64,
    /// Mean max cosine.
    pub mmcs: f64,
    /// Mean of the Top-1..Top-k cosines.
    pub top_mean: Vec<f64>,
    /// √(2 ln n_ref)/√dim.
    pub chance_analytic: f64,
    /// Monte Carlo mean max cosine of random unit vectors of these shapes.
    pub chance_monte_carlo: f64,
    /// Histograms of the Top-1..Top-k cosines.
    pub histograms: Vec<Histogram>,
    /// Per-query top-k (indices into the reference, cosines); not in JSON.
    #[serde(skip)]
    pub top: TopN,
}

/// Summary of an assignment for the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssignmentSummary {
    /// min(n_a, n_b).
    pub pairs: usize,
    /// Σ cosine of the matched pairs.
    pub total: f64,
    /// total / pairs.
    pub mean_cosine: f64,
    /// R_H: fraction of pairs with cosine > τ.
    pub fraction_above: f64,
    /// Which solver path produced it.
    pub path: AssignmentPath,
    /// Optimality certificate.
    pub certificate: Certificate,
}

/// Comparison of one vector kind and unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Decoder or encoder.
    pub kind: VectorKind,
    /// Features or neurons.
    pub unit: Unit,
    /// Vectors in A.
    pub n_a: usize,
    /// Vectors in B.
    pub n_b: usize,
    /// Vector length.
    pub dim: usize,
    /// Zero-norm vectors of A (cosine 0 with everything).
    pub zero_norm_a: usize,
    /// Zero-norm vectors of B.
    pub zero_norm_b: usize,
    /// Queries B against reference A (R(A←B), the study's Table 1 ratio
    /// when A is the reference SAE).
    pub b_in_a: Direction,
    /// Queries A against reference B.
    pub a_in_b: Direction,
    /// Assignment summary (with `assignment` on).
    pub assignment: Option<AssignmentSummary>,
    /// The full assignment (pairs and cosines); not in JSON.
    #[serde(skip)]
    pub assignment_pairs: Option<Assignment>,
}

/// Everything [`compare`] computed; see the module docs for the schema.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatchReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Label of A (reference in `b_in_a`).
    pub label_a: String,
    /// Label of B.
    pub label_b: String,
    /// τ.
    pub threshold: f32,
    /// Requested top-n.
    pub top_n: usize,
    /// Histogram bins.
    pub hist_bins: usize,
    /// Monte Carlo queries.
    pub chance_queries: usize,
    /// Monte Carlo seed.
    pub seed: u64,
    /// One entry per (kind, unit), features before neurons.
    pub comparisons: Vec<Comparison>,
    /// Paulo & Belrose shared fraction (decoder and encoder features with
    /// assignment).
    pub shared: Option<SharedFraction>,
}

impl MatchReport {
    /// The comparison of a given kind and unit, if computed.
    pub fn get(&self, kind: VectorKind, unit: Unit) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.kind == kind && c.unit == unit)
    }
}

fn validate(opts: &MatchOptions) -> Result<()> {
    if !opts.threshold.is_finite() {
        return Err(MatchError::InvalidOption(format!(
            "threshold must be finite (got {})",
            opts.threshold
        )));
    }
    if opts.top_n == 0 {
        return Err(MatchError::InvalidOption("top_n must be at least 1".into()));
    }
    // A chance level from no random queries would read as 0.0, a value
    // that looks like a measurement.
    if opts.chance_queries == 0 {
        return Err(MatchError::InvalidOption(
            "chance_queries must be at least 1 (the Monte Carlo chance level needs random queries)"
                .into(),
        ));
    }
    if opts.hist_bins == 0 {
        return Err(MatchError::InvalidOption(
            "hist_bins must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Monte Carlo chance levels, memoized by shape so that decoder and
/// encoder comparisons of the same shapes share one estimate. Each shape
/// gets its own RNG stream derived from the seed, so a value does not
/// depend on which other comparisons were run.
struct ChanceCache {
    seed: u64,
    queries: usize,
    tile: TileConfig,
    done: HashMap<(usize, usize), f64>,
}

impl ChanceCache {
    fn get(&mut self, n_ref: usize, dim: usize) -> Result<f64> {
        if let Some(&v) = self.done.get(&(n_ref, dim)) {
            return Ok(v);
        }
        let stream = (n_ref as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ dim as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ stream);
        let v = chance_level_monte_carlo(&mut rng, n_ref, dim, self.queries, &self.tile)?;
        self.done.insert((n_ref, dim), v);
        Ok(v)
    }
}

fn direction(
    top: TopN,
    reference: &str,
    query: &str,
    dim: usize,
    opts: &MatchOptions,
    chance: &mut ChanceCache,
) -> Result<Direction> {
    let max = top.max_values();
    let top_mean = (0..top.k).map(|r| mmcs(&top.rank_values(r))).collect();
    Ok(Direction {
        reference: reference.to_string(),
        query: query.to_string(),
        n_ref: top.n_refs,
        n_query: top.n_queries,
        k: top.k,
        ratio: matching_ratio(&max, opts.threshold),
        mmcs: mmcs(&max),
        top_mean,
        chance_analytic: chance_level_analytic(top.n_refs, dim),
        chance_monte_carlo: chance.get(top.n_refs, dim)?,
        histograms: top_n_histograms(&top, opts.hist_bins)?,
        top,
    })
}

/// Compares two SAEs as `opts` asks: for each selected vector kind (and
/// neurons if asked), the top-n profiles in both directions with ratios,
/// MMCS, chance levels and histograms, and optionally the exact assignment;
/// the shared fraction when decoder and encoder assignments are both
/// computed.
///
/// Errors: different d (features), different n (neurons), NaN/inf weights
/// (naming SAE and tensor), invalid options.
pub fn compare(a: &Sae, b: &Sae, opts: &MatchOptions) -> Result<MatchReport> {
    validate(opts)?;
    let (la, lb) = (opts.labels.0.as_str(), opts.labels.1.as_str());
    let mut chance = ChanceCache {
        seed: opts.seed,
        queries: opts.chance_queries,
        tile: opts.tile,
        done: HashMap::new(),
    };
    let kinds = opts.vectors.kinds();
    let mut units = vec![Unit::Features];
    if opts.neurons {
        units.push(Unit::Neurons);
    }
    let mut comparisons = Vec::new();
    // Encoder feature vectors kept for the shared fraction.
    let mut enc_vectors: Option<(UnitVectors, UnitVectors)> = None;
    for &unit in &units {
        for &kind in &kinds {
            let (va, vb) = vector_pair(a, la, b, lb, kind, unit)?;
            // When the sparse assignment follows, one GEMM pass with k = max(top_n, m)
            // serves both the profiles and the candidate graph.
            let ao = &opts.assignment_options;
            let sparse = opts.assignment && ao.uses_sparse(va.count, vb.count);
            let k = if sparse {
                opts.top_n.max(ao.candidates)
            } else {
                opts.top_n
            };
            let (b_top, a_top) = top_n_both(&va, &vb, k, k, &opts.tile)?;
            let full = if !opts.assignment {
                None
            } else if sparse {
                Some(assign_with_profiles(&va, &vb, ao, &b_top, &a_top)?)
            } else {
                Some(assign(&va, &vb, ao)?)
            };
            let (b_top, a_top) = if k > opts.top_n {
                (b_top.truncated(opts.top_n), a_top.truncated(opts.top_n))
            } else {
                (b_top, a_top)
            };
            let b_in_a = direction(b_top, la, lb, va.dim, opts, &mut chance)?;
            let a_in_b = direction(a_top, lb, la, va.dim, opts, &mut chance)?;
            let summary = full.as_ref().map(|asg| {
                let pairs = asg.pairs.len();
                AssignmentSummary {
                    pairs,
                    total: asg.total,
                    mean_cosine: if pairs == 0 {
                        0.0
                    } else {
                        asg.total / pairs as f64
                    },
                    fraction_above: asg.fraction_above(opts.threshold),
                    path: asg.path.clone(),
                    certificate: asg.certificate.clone(),
                }
            });
            comparisons.push(Comparison {
                kind,
                unit,
                n_a: va.count,
                n_b: vb.count,
                dim: va.dim,
                zero_norm_a: va.zero_norm,
                zero_norm_b: vb.zero_norm,
                b_in_a,
                a_in_b,
                assignment: summary,
                assignment_pairs: full,
            });
            if unit == Unit::Features && kind == VectorKind::Encoder {
                enc_vectors = Some((va, vb));
            }
        }
    }
    let shared = match (
        comparisons
            .iter()
            .find(|c| c.unit == Unit::Features && c.kind == VectorKind::Decoder)
            .and_then(|c| c.assignment_pairs.as_ref()),
        comparisons
            .iter()
            .find(|c| c.unit == Unit::Features && c.kind == VectorKind::Encoder)
            .and_then(|c| c.assignment_pairs.as_ref()),
        enc_vectors.as_ref(),
    ) {
        (Some(dec), Some(enc), Some((ea, eb))) => {
            Some(shared_fraction(dec, enc, ea, eb, opts.threshold)?)
        }
        _ => None,
    };
    Ok(MatchReport {
        schema: SCHEMA,
        label_a: la.to_string(),
        label_b: lb.to_string(),
        threshold: opts.threshold,
        top_n: opts.top_n,
        hist_bins: opts.hist_bins,
        chance_queries: opts.chance_queries,
        seed: opts.seed,
        comparisons,
        shared,
    })
}
