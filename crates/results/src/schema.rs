//! The typed results: each stage's `result.json` and the study's
//! `results.json` (schema [`RESULTS_SCHEMA`]).

use crate::key::SaeKey;
use crate::machine::Machine;
use crate::stage::StageEntry;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Schema tag of `results.json`.
pub const RESULTS_SCHEMA: &str = "saelab.results.v1";

/// A train stage's result: each SAE's training curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainResult {
    pub steps: u64,
    pub saes: Vec<SaeTraining>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeTraining {
    pub id: String,
    pub name: String,
    /// `metrics.jsonl` as logged.
    pub curve: Vec<saelab_sae::StepMetrics>,
}

/// Reconstruction and CE metrics of one SAE on one corpus.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub mse: f64,
    pub normalized_mse: f64,
    pub fvu: f64,
    pub explained_variance: f64,
    pub l0: f64,
    pub dead_fraction: f64,
    pub ce_clean: f64,
    pub ce_spliced: f64,
    pub ce_zero: f64,
    pub delta_ce: f64,
    pub ce_recovered: Option<f64>,
    pub kl: f64,
}

/// CE per position (clean / spliced / zero-ablated).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CeCurves {
    pub clean: Vec<f64>,
    pub spliced: Vec<f64>,
    pub zero: Vec<f64>,
}

/// An eval stage's result: per SAE, its metrics on the stage's corpus.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalResult {
    pub corpus: String,
    pub intervention: String,
    pub tokens: u64,
    pub saes: Vec<EvalEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalEntry {
    pub id: String,
    pub metrics: EvalMetrics,
    pub ce_per_position: CeCurves,
}

/// Per-position and per-feature statistics of one SAE (one layer) under
/// one intervention.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerStats {
    pub id: String,
    pub layer: usize,
    /// Mean nonzero activation per position (position 0 first).
    pub position_mean: Vec<f64>,
    pub position_std: Vec<f64>,
    pub position_density: Vec<f64>,
    /// Moving average of `position_mean` over positions ≥ 1.
    pub position_mean_ma: Vec<f64>,
    /// Per feature over positions ≥ 1: mean and std of nonzero
    /// activations, firing density.
    pub feature_mean: Vec<f64>,
    pub feature_std: Vec<f64>,
    pub feature_density: Vec<f64>,
    /// Per feature q10..q100 of nonzero activations (positions ≥ 1).
    pub deciles: Vec<[f64; 10]>,
    /// CE per position with this SAE spliced in (when computed).
    pub ce_per_position: Option<CeCurves>,
    pub fvu: Option<f64>,
}

/// A stats stage's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsResult {
    pub corpus: String,
    pub intervention: String,
    pub rows: usize,
    pub layers: Vec<LayerStats>,
}

/// Matching of one pair, both directions. "a in b" = share of a's
/// features whose best cosine in b exceeds τ.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MatchResult {
    pub category: String,
    pub a: String,
    pub b: String,
    pub threshold: f64,
    pub decoder: DirectionPair,
    pub encoder: Option<DirectionPair>,
    /// Fraction of one-to-one (decoder) assignment pairs above τ.
    pub assignment_ratio: Option<f64>,
    /// Paulo & Belrose shared fraction (decoder and encoder assignments).
    pub shared_fraction: Option<f64>,
    /// Chance level of the best cosine (√(2 ln n)/√d).
    pub chance: f64,
    /// Top-1..top-n cosine histograms: (vectors, unit, direction) → counts.
    pub histograms: Vec<Histogram>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DirectionPair {
    pub a_in_b: f64,
    pub b_in_a: f64,
    pub mmcs_a_in_b: f64,
    pub mmcs_b_in_a: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// decoder / encoder.
    pub vectors: String,
    /// feature / neuron.
    pub unit: String,
    /// `a_in_b` or `b_in_a`.
    pub direction: String,
    /// Bin edges (cosine), len bins + 1.
    pub edges: Vec<f64>,
    /// counts[r][bin] for top-(r+1).
    pub counts: Vec<Vec<u64>>,
}

/// One SAE of the study with its final training metrics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeResult {
    pub id: String,
    pub label: String,
    pub key: SaeKey,
    /// Folder of its SAELens files.
    pub dir: PathBuf,
    pub train_stage: String,
    pub final_metrics: Option<saelab_sae::StepMetrics>,
    pub curve: Vec<saelab_sae::StepMetrics>,
}

/// A row of Table 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table1Row {
    pub category: String,
    pub a: String,
    pub b: String,
    /// What differs: "wiki vs speeches", "n 2304 vs 4608", ...
    pub differs: String,
    pub decoder: DirectionPair,
    pub encoder: Option<DirectionPair>,
    pub assignment_ratio: Option<f64>,
    pub chance: f64,
    pub stage: String,
}

/// A row of Table 2: feature-count difference between dictionary sizes,
/// n_L·R(L in S) − n_S·R(S in L) (the study's "weighted by the matching
/// ratio"; reproduces its 400 / 366 / 156 from its Table 1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table2Row {
    pub small: String,
    pub large: String,
    pub n_small: usize,
    pub n_large: usize,
    pub large_in_small: f64,
    pub small_in_large: f64,
    pub difference: f64,
    pub stage: String,
}

/// Layer × layer matching (study Fig 13): `ratio[i][j]` = share of layer
/// i's features with a match in layer j's SAE (`None` on the diagonal
/// and for pairs not matched).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMatrix {
    pub layers: Vec<usize>,
    pub saes: Vec<String>,
    pub ratio: Vec<Vec<Option<f64>>>,
}

/// The train × eval matrix (cross-dataset FVU and ΔCE).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainEvalCell {
    pub sae: String,
    pub train: String,
    pub eval: String,
    pub metrics: EvalMetrics,
    pub stage: String,
}

/// Per-position curves of one layer under one intervention.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PositionEntry {
    pub intervention: String,
    pub stage: String,
    pub stats: LayerStats,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusEntry {
    pub name: String,
    pub source: String,
    pub tokens: u64,
    pub stands_for: Option<String>,
}

/// `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub study: String,
    /// The study spec as run (the `study` crate's `Spec`, as JSON).
    pub spec: serde_json::Value,
    pub saelab_version: String,
    pub machine: Machine,
    /// Wall time of the run that wrote this file (not of cached stages).
    pub wall_seconds: f64,
    pub stages: Vec<StageEntry>,
    pub corpora: Vec<CorpusEntry>,
    /// Width of the hooked residual stream (the SAEs' d_in), when known.
    #[serde(default)]
    pub d_model: Option<usize>,
    pub saes: Vec<SaeResult>,
    pub table1: Vec<Table1Row>,
    pub table2: Vec<Table2Row>,
    pub layer_matrix: Option<LayerMatrix>,
    /// Every matched pair with its histograms.
    pub matches: Vec<(String, MatchResult)>,
    pub train_eval: Vec<TrainEvalCell>,
    pub positions: Vec<PositionEntry>,
    /// UMAP of decoder directions, one per SAE of the stats layers.
    #[serde(default)]
    pub umap: Vec<UmapEntry>,
    /// Sections without data, and why.
    pub missing: Vec<String>,
}

/// A umap stage's result: one embedding per SAE.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UmapResult {
    pub saes: Vec<UmapEntry>,
}

/// A 2-D UMAP of one SAE's decoder directions (study Fig 18).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UmapEntry {
    pub id: String,
    pub layer: usize,
    pub stage: String,
    pub n_neighbors: usize,
    pub min_dist: f64,
    pub seed: u64,
    /// Trustworthiness (k 10) of the embedding, as sklearn computes it.
    pub trustworthiness: Option<f64>,
    /// One point per feature, feature order.
    pub points: Vec<[f32; 2]>,
}
