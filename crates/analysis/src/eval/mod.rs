//! Evaluation of an SAE (SPEC §3, the study's Figures 15–17): streaming
//! accumulators for reconstruction metrics ([`recon`]) and for the
//! language-model loss with the reconstruction spliced in ([`ce`]), input
//! preparation for SAELens SAEs ([`input`]), and the result files.
//!
//! The caller runs the model passes (clean, spliced, zero-ablated) and feeds
//! each batch to one [`ReconAccumulator`] and one [`CeAccumulator`] per SAE;
//! nothing grows with the number of tokens except counters.
//!
//! Output ([`EvalReport::write_all`]): `eval.json` ([`EvalReport`]),
//! `positions.csv` (per-position curves), `features.csv` (per-feature
//! density).
//!
//! [`run()`] is the whole `saelab eval` over a model and corpus, model passes
//! included ([`EvalConfig`] → [`EvalOutput`]); [`write`] writes its files
//! ([`files`]).

pub mod ce;
pub mod files;
pub mod input;
pub mod recon;
pub mod run;

pub use ce::{ce_recovered, kl_rows, CeAccumulator, CeCurves, CeReport};
pub use files::{summary_csv, write};
pub use input::{center_rows, saelens_center_writing_weights};
pub use recon::{ReconAccumulator, ReconConfig, ReconCurves, ReconReport};
pub use run::{run, EvalConfig, EvalOutput, SaeEval};

use crate::stats::StatsError;
use serde::Serialize;
use std::path::PathBuf;

/// Errors of the evaluation accumulators.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Inputs of the wrong shape or with non-finite values.
    #[error("shape error: {0}")]
    Shape(String),
    /// Invalid configuration.
    #[error("invalid eval config: {0}")]
    Config(String),
    /// From the SAE (encode / decode).
    #[error(transparent)]
    Sae(#[from] saelab_sae::SaeError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// JSON (de)serialization failed.
    #[error("{path}: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        msg: String,
    },
    /// Writing an output file failed (the error names it).
    #[error(transparent)]
    Fs(#[from] saelab_fsio::FsError),
    /// Making the token rows failed.
    #[error(transparent)]
    Rows(#[from] crate::rows::RowsError),
    /// A model pass failed; `what` says which.
    #[error("{what}: {source}")]
    Model {
        /// Which pass.
        what: String,
        /// The cause.
        source: saelab_lm::LmError,
    },
}

impl From<StatsError> for EvalError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Shape(m) => EvalError::Shape(m),
            StatsError::Config(m) => EvalError::Config(m),
            StatsError::Io { path, source } => EvalError::Io { path, source },
            StatsError::Json { path, msg } => EvalError::Json { path, msg },
            StatsError::Fs(e) => EvalError::Fs(e),
            StatsError::Rows(e) => EvalError::Rows(e),
            StatsError::Model { what, source } => EvalError::Model { what, source },
            StatsError::Sae { label, msg } => EvalError::Shape(format!("{label}: {msg}")),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, EvalError>;

/// The evaluation of one SAE.
///
/// JSON schema (`eval.json`): `{"schema": "saelab.eval.v1",
/// "label": string, "recon": ReconReport|null, "ce": CeReport|null}`
/// (see [`ReconReport`] and [`CeReport`] for their fields). `label` is the
/// caller's name for the SAE (e.g. its directory or hook).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// Format tag.
    pub schema: &'static str,
    /// Caller's name for the SAE.
    pub label: String,
    /// Reconstruction metrics.
    pub recon: Option<ReconReport>,
    /// LM-loss metrics.
    pub ce: Option<CeReport>,
}

impl EvalReport {
    /// A report from the finished accumulators.
    pub fn new(label: &str, recon: Option<ReconReport>, ce: Option<CeReport>) -> Self {
        EvalReport {
            schema: "saelab.eval.v1",
            label: label.to_string(),
            recon,
            ce,
        }
    }
}
