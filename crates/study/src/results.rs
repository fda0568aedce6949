//! `results.json` (schema `saelab.results.v1`, documented in the README):
//! every number the study reports, each entry naming the stage that
//! produced it. Stages write their typed `result.json` here
//! ([`write_stage_result`]); [`gather`] reads them back — the one place
//! these files are written and read — and derives the study's tables.

use crate::cache::State;
use crate::exec::{Ctx, StudyError};
use crate::grid::SaeKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Schema tag of `results.json`.
pub const RESULTS_SCHEMA: &str = "saelab.results.v1";
/// A stage's own typed result file.
pub const STAGE_RESULT: &str = "result.json";

/// Writes a stage's `result.json` atomically.
pub fn write_stage_result<T: Serialize>(dir: &Path, r: &T) -> Result<(), saelab_fsio::FsError> {
    saelab_fsio::write_json_atomic(&dir.join(STAGE_RESULT), r)
}

/// Reads a stage's `result.json`.
pub fn read_stage_result<T: DeserializeOwned>(dir: &Path) -> Result<T, StudyError> {
    let path = dir.join(STAGE_RESULT);
    let text = std::fs::read_to_string(&path).map_err(|e| saelab_fsio::FsError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| StudyError::Stage {
        kind: "results".into(),
        hash: path.display().to_string(),
        message: format!("bad result file: {e}"),
    })
}

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
pub struct StageEntry {
    pub kind: String,
    pub hash: String,
    pub state: State,
    pub dir: PathBuf,
    pub seconds: Option<f64>,
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
    pub spec: crate::spec::Spec,
    pub saelab_version: String,
    pub machine: crate::machine::Machine,
    /// Wall time of the run that wrote this file (not of cached stages).
    pub wall_seconds: f64,
    pub stages: Vec<StageEntry>,
    pub corpora: Vec<CorpusEntry>,
    pub saes: Vec<SaeResult>,
    pub table1: Vec<Table1Row>,
    pub table2: Vec<Table2Row>,
    pub layer_matrix: Option<LayerMatrix>,
    /// Every matched pair with its histograms.
    pub matches: Vec<(String, MatchResult)>,
    pub train_eval: Vec<TrainEvalCell>,
    pub positions: Vec<PositionEntry>,
    /// Sections without data, and why.
    pub missing: Vec<String>,
}

/// Writes `results.json` into the study folder; returns its path.
pub fn write(study_dir: &Path, r: &Results) -> Result<PathBuf, StudyError> {
    let path = study_dir.join("results.json");
    saelab_fsio::write_json_atomic(&path, r)?;
    Ok(path)
}

/// Reads `results.json`.
pub fn read(path: &Path) -> Result<Results, StudyError> {
    let text = std::fs::read_to_string(path).map_err(|e| saelab_fsio::FsError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| StudyError::Stage {
        kind: "results".into(),
        hash: path.display().to_string(),
        message: format!("bad results file: {e}"),
    })
}

/// Gathers every complete stage's result into [`Results`].
pub fn gather(ctx: &Ctx, wall_seconds: f64) -> Result<Results, StudyError> {
    let cache = ctx.cache;
    let mut r = Results {
        schema: RESULTS_SCHEMA.into(),
        study: ctx.spec.name.clone(),
        spec: ctx.spec.clone(),
        saelab_version: env!("CARGO_PKG_VERSION").into(),
        machine: crate::machine::Machine::detect(),
        wall_seconds,
        stages: Vec::new(),
        corpora: ctx
            .spec
            .corpora
            .iter()
            .map(|(n, c)| CorpusEntry {
                name: n.clone(),
                source: c.source.clone(),
                tokens: c.tokens,
                stands_for: c.stands_for.clone(),
            })
            .collect(),
        saes: Vec::new(),
        table1: Vec::new(),
        table2: Vec::new(),
        layer_matrix: None,
        matches: Vec::new(),
        train_eval: Vec::new(),
        positions: Vec::new(),
        missing: Vec::new(),
    };
    for s in &ctx.plan.stages {
        let rec = cache.record(s);
        r.stages.push(StageEntry {
            kind: s.kind.clone(),
            hash: s.hash.clone(),
            state: cache.state(s),
            dir: cache.stage_dir(s),
            seconds: rec.map(|x| x.seconds),
        });
    }
    crate::tables::fill(ctx, &mut r)?;
    Ok(r)
}

/// The work of a stage, for the table builders.
pub(crate) fn done_stages<'a>(ctx: &'a Ctx, kind: &str) -> Vec<&'a crate::plan::Stage> {
    ctx.plan
        .stages
        .iter()
        .filter(|s| s.kind == kind && ctx.cache.state(s) == State::Done)
        .collect()
}
