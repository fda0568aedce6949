//! The study spec: one TOML file describes one study (model, corpora,
//! hooks, the SAE grid with dataset and layer as axes, training settings,
//! and the analyses). Parsing rejects unknown keys; [`Spec::load`] then
//! validates every cross-reference before any stage runs, so a typo is an
//! error naming the file, the entry and the problem — never a silent
//! default. The README's "Study spec" section documents every key; the
//! presets in `experiments/` carry the same documentation as comments.

use saelab_sae::defaults;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A spec error: the file, the entry and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {entry}: {problem}")]
pub struct SpecError {
    pub file: PathBuf,
    pub entry: String,
    pub problem: String,
}

/// Architectures a spec may name (the `sae` crate's names).
pub const ARCHS: &[&str] = &["topk", "batchtopk", "jumprelu", "relu", "matryoshka"];

/// Hook sites an SAE may read (TransformerLens names, `blocks.L.hook_<site>`).
pub const SITES: &[&str] = &["resid_pre", "resid_mid", "resid_post"];

pub use saelab_results::CATEGORIES;

/// Positional interventions (SPEC §1.4).
pub const INTERVENTIONS: &[&str] = &["none", "zero", "shuffle"];

/// The whole study.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Study name: the study folder is `<out>` or `runs/study-<name>`.
    pub name: String,
    /// Study folder (results.json, report, plan); relative to the working
    /// directory.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Stage cache shared between studies (default `runs/cache`): two
    /// specs that need the same store or SAE share its stage.
    #[serde(default)]
    pub cache: Option<PathBuf>,
    pub model: ModelSpec,
    /// Corpora by name.
    pub corpora: BTreeMap<String, CorpusSpec>,
    #[serde(default)]
    pub harvest: HarvestSpec,
    #[serde(default)]
    pub train: TrainSpec,
    /// Per-architecture coefficients.
    #[serde(default)]
    pub coefficients: Coefficients,
    /// The value of each axis that a grid block does not list.
    pub baseline: Baseline,
    /// Grid blocks: each is the cross product of its axes.
    #[serde(default)]
    pub grid: Vec<GridBlock>,
    #[serde(default)]
    pub eval: Option<EvalSpec>,
    #[serde(default)]
    pub stats: Option<StatsSpec>,
    #[serde(default, rename = "match")]
    pub matching: Option<MatchSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `smollm2-135m` (offline default), a .gguf file, an HF folder, or a
    /// hub name such as `gpt2`.
    pub name: String,
    /// Arithmetic of the model's dense products: `f32` or `bf16`.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Layers of the model, for validating `layer` values when the model
    /// is not at hand at plan time (default: read from the model when it
    /// is an offline name; 30 for SmolLM2).
    #[serde(default)]
    pub n_layers: Option<usize>,
}

fn default_precision() -> String {
    "f32".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSpec {
    /// An offline corpus name, a local .txt/.jsonl/.parquet file or folder,
    /// or `hf:OWNER/NAME[/SUBDIR]` (a hub dataset's parquet files).
    pub source: String,
    /// Tokens harvested for training (rounded up to whole rows).
    pub tokens: u64,
    /// Text field of .jsonl / .parquet corpora.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// What this corpus stands in for (free text, shown in the report).
    #[serde(default)]
    pub stands_for: Option<String>,
}

fn default_text_field() -> String {
    "text".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarvestSpec {
    #[serde(default = "d_seq_len")]
    pub seq_len: usize,
    /// `concat` (BOS at document starts) or `bos_rows`.
    #[serde(default = "d_packing")]
    pub packing: String,
    /// Stored element type: f32, f16, bf16.
    #[serde(default = "d_dtype")]
    pub dtype: String,
    #[serde(default = "d_batch_rows")]
    pub batch_rows: usize,
    #[serde(default = "d_rows_per_shard")]
    pub rows_per_shard: usize,
    /// Hook site of every SAE: resid_pre, resid_mid or resid_post.
    #[serde(default = "d_site")]
    pub site: String,
}

fn d_seq_len() -> usize {
    128
}
fn d_packing() -> String {
    "concat".into()
}
fn d_dtype() -> String {
    "f16".into()
}
fn d_batch_rows() -> usize {
    16
}
fn d_rows_per_shard() -> usize {
    1024
}
fn d_site() -> String {
    "resid_pre".into()
}

impl Default for HarvestSpec {
    fn default() -> Self {
        HarvestSpec {
            seq_len: d_seq_len(),
            packing: d_packing(),
            dtype: d_dtype(),
            batch_rows: d_batch_rows(),
            rows_per_shard: d_rows_per_shard(),
            site: d_site(),
        }
    }
}

/// Training settings shared by every SAE of the study.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Where the activations come from: `store` (a harvest stage per
    /// corpus; shared between train stages and studies) or `model` (a
    /// forward pass per batch of rows, every hook of a corpus in one pass,
    /// no store on disk: `saelab train --dataset`).
    #[serde(default = "d_source")]
    pub source: String,
    /// Activation vectors per step.
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// Training tokens (whole batches); default: one pass over the store.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Training steps instead of tokens.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Adam learning rate (an axis too: `lr = [...]` in a grid block).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warm-up steps.
    #[serde(default)]
    pub lr_warmup_steps: u64,
    /// `none`, `cosine` or `linear` decay to zero over the run.
    #[serde(default = "d_decay")]
    pub lr_decay: String,
    /// zeros (the study), mean, geometric-median (SAELens).
    #[serde(default = "d_bdec")]
    pub b_dec_init: String,
    /// f32 or bf16 (dense encoder product only).
    #[serde(default = "default_precision")]
    pub encoder_precision: String,
    #[serde(default = "d_true")]
    pub auxk: bool,
    /// Seed of the batch order (default: the baseline seed).
    #[serde(default)]
    pub data_seed: Option<u64>,
    #[serde(default = "d_buffer")]
    pub buffer_vectors: usize,
    #[serde(default = "d_ckpt")]
    pub checkpoint_every: u64,
    #[serde(default = "d_log")]
    pub log_every: u64,
}

pub use saelab_results::f32_default;

fn d_batch() -> usize {
    defaults::BATCH
}
fn d_lr() -> f64 {
    f32_default(defaults::LR)
}
fn d_source() -> String {
    "store".into()
}
fn d_decay() -> String {
    "none".into()
}
fn d_bdec() -> String {
    "zeros".into()
}
fn d_true() -> bool {
    true
}
fn d_buffer() -> usize {
    defaults::BUFFER_VECTORS
}
fn d_ckpt() -> u64 {
    defaults::CHECKPOINT_EVERY
}
fn d_log() -> u64 {
    defaults::LOG_EVERY
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            source: d_source(),
            batch: d_batch(),
            tokens: None,
            steps: None,
            lr: d_lr(),
            lr_warmup_steps: 0,
            lr_decay: d_decay(),
            b_dec_init: d_bdec(),
            encoder_precision: default_precision(),
            auxk: true,
            data_seed: None,
            buffer_vectors: d_buffer(),
            checkpoint_every: d_ckpt(),
            log_every: d_log(),
        }
    }
}

/// Architecture coefficients (SPEC §2.2–2.5 defaults when absent).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coefficients {
    #[serde(default)]
    pub relu: Option<ReluCoeffs>,
    #[serde(default)]
    pub jumprelu: Option<JumpReluCoeffs>,
    #[serde(default)]
    pub matryoshka: Option<MatryoshkaCoeffs>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReluCoeffs {
    pub l1_coeff: f64,
}

pub use saelab_results::JumpReluCoeffs;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatryoshkaCoeffs {
    pub group_sizes: Vec<usize>,
}

/// One value per axis: what a grid block leaves out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub dataset: String,
    pub layer: usize,
    #[serde(default = "d_arch")]
    pub arch: String,
    pub n: usize,
    #[serde(default = "d_k")]
    pub k: usize,
    #[serde(default = "d_seed")]
    pub seed: u64,
}

fn d_arch() -> String {
    "topk".into()
}
fn d_k() -> usize {
    defaults::K
}
fn d_seed() -> u64 {
    defaults::SEED
}

/// A grid block: the cross product of the listed axes; an axis left out
/// takes the baseline value. An empty list is an error.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridBlock {
    /// A label for messages and the report.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub dataset: Option<Vec<String>>,
    #[serde(default)]
    pub layer: Option<Vec<usize>>,
    #[serde(default)]
    pub arch: Option<Vec<String>>,
    #[serde(default)]
    pub n: Option<Vec<usize>>,
    #[serde(default)]
    pub k: Option<Vec<usize>>,
    #[serde(default)]
    pub seed: Option<Vec<u64>>,
    #[serde(default)]
    pub lr: Option<Vec<f64>>,
    /// JumpReLU L0 coefficients (an axis for the study's JumpReLU row).
    #[serde(default)]
    pub l0_coeff: Option<Vec<f64>>,
}

/// The train × eval matrix: every SAE evaluated on each listed corpus.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Corpora (declared names) to evaluate on.
    pub corpora: Vec<String>,
    /// Tokens per evaluation (whole rows).
    #[serde(default = "d_eval_tokens")]
    pub tokens: u64,
    #[serde(default = "d_eval_batch_rows")]
    pub batch_rows: usize,
    /// Which SAEs: `all` or `baseline-dataset` (only SAEs trained with the
    /// baseline's settings but the dataset, i.e. the dataset axis).
    #[serde(default = "d_all")]
    pub saes: String,
    /// Keep the clean residual at position 0 in the spliced pass.
    #[serde(default)]
    pub splice_keep_bos: bool,
}

fn d_eval_tokens() -> u64 {
    12_800
}
fn d_eval_batch_rows() -> usize {
    8
}
fn d_all() -> String {
    "all".into()
}

/// Activation statistics per position and per feature, per layer and
/// intervention (study §4.1).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSpec {
    /// Corpus (declared name) whose rows are analysed (BOS at position 0).
    pub corpus: String,
    /// Layers: the baseline SAE at each layer (each must be in the grid).
    pub layers: Vec<usize>,
    /// Dataset of those SAEs (default: the baseline's), for a layer sweep
    /// trained on another corpus.
    #[serde(default)]
    pub sae_dataset: Option<String>,
    #[serde(default = "d_interventions")]
    pub interventions: Vec<String>,
    #[serde(default = "d_stats_rows")]
    pub rows: usize,
    #[serde(default = "d_ma")]
    pub ma_window: usize,
    /// Also evaluate CE per position under each intervention (study Fig
    /// 15, 17) on the stats corpus.
    #[serde(default = "d_true")]
    pub ce_per_position: bool,
    /// Also embed the decoder directions of those SAEs with UMAP (study
    /// Fig 18).
    #[serde(default = "d_true")]
    pub umap: bool,
}

fn d_interventions() -> Vec<String> {
    vec!["none".into()]
}
fn d_stats_rows() -> usize {
    100
}
fn d_ma() -> usize {
    8
}

/// Feature matching (study §4.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Categories of pairs to match: dataset, seed, dictionary,
    /// architecture, sparsity, layer, lr.
    pub categories: Vec<String>,
    #[serde(default = "d_tau")]
    pub threshold: f64,
    #[serde(default = "d_top_n")]
    pub top_n: usize,
    /// Exact one-to-one assignment (R_H) beside the threshold ratio.
    #[serde(default = "d_true")]
    pub assignment: bool,
    /// Encoder vectors too (Fig 11, finding g).
    #[serde(default = "d_true")]
    pub encoder: bool,
    /// Neuron vectors too (equal n only).
    #[serde(default)]
    pub neurons: bool,
}

fn d_tau() -> f64 {
    0.7
}
fn d_top_n() -> usize {
    4
}

impl Spec {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_path_buf(),
            entry: "file".into(),
            problem: e.to_string(),
        })?;
        Spec::parse(&text, path)
    }

    /// Parses and validates TOML text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let spec: Spec = toml::from_str(text).map_err(|e| SpecError {
            file: path.to_path_buf(),
            entry: toml_entry(&e, text),
            problem: e.message().trim().to_string(),
        })?;
        crate::validate::validate(&spec, path)?;
        Ok(spec)
    }

    /// The study folder.
    pub fn study_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("study-{}", self.name)))
    }

    /// The stage cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join("cache"))
    }

    /// The hook name an SAE at `layer` reads.
    pub fn hook(&self, layer: usize) -> String {
        format!("blocks.{layer}.hook_{}", self.harvest.site)
    }
}

/// Where in the TOML a parse error is: `line N` and the line's text.
fn toml_entry(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let content = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} (`{content}`)")
        }
        None => "document".into(),
    }
}
