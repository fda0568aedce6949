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

pub mod ce;
pub mod input;
pub mod recon;

pub use ce::{ce_recovered, kl_rows, CeAccumulator, CeCurves, CeReport};
pub use input::{center_rows, saelens_center_writing_weights};
pub use recon::{ReconAccumulator, ReconConfig, ReconCurves, ReconReport};

use crate::stats::output::{cell, cell_opt, num, write_files};
use crate::stats::StatsError;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
}

impl From<StatsError> for EvalError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Shape(m) => EvalError::Shape(m),
            StatsError::Config(m) => EvalError::Config(m),
            StatsError::Io { path, source } => EvalError::Io { path, source },
            StatsError::Json { path, msg } => EvalError::Json { path, msg },
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

    /// `positions.csv`: `position,tokens,mse,nmse,l0,ce_clean,ce_spliced,
    /// ce_zero,delta_ce,ce_recovered,kl`, one line per position t of the
    /// longest curve. CE columns at t are the loss of predicting token t + 1
    /// (empty at the last position); reconstruction columns are empty
    /// without `seq_len`, optional metrics empty when not computed.
    pub fn positions_csv(&self) -> String {
        let rc = self.recon.as_ref().and_then(|r| r.per_position.as_ref());
        let cc = self.ce.as_ref().map(|c| &c.per_position);
        let len = [
            rc.map_or(0, |r| r.mse.len()),
            cc.map_or(0, |c| c.ce_clean.len()),
            cc.and_then(|c| c.kl.as_ref()).map_or(0, |k| k.len()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let mut s = String::from(
            "position,tokens,mse,nmse,l0,ce_clean,ce_spliced,ce_zero,delta_ce,ce_recovered,kl\n",
        );
        for t in 0..len {
            let tokens = rc
                .and_then(|r| r.tokens.get(t))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{t},{tokens},{},{},{},{},{},{},{},{},{}",
                cell(rc.map(|r| r.mse.as_slice()), t),
                cell_opt(rc.map(|r| r.nmse.as_slice()), t),
                cell(rc.map(|r| r.l0.as_slice()), t),
                cell(cc.map(|c| c.ce_clean.as_slice()), t),
                cell(cc.map(|c| c.ce_spliced.as_slice()), t),
                cell(cc.and_then(|c| c.ce_zero.as_deref()), t),
                cell(cc.map(|c| c.delta_ce.as_slice()), t),
                cell_opt(cc.and_then(|c| c.ce_recovered.as_deref()), t),
                cell(cc.and_then(|c| c.kl.as_deref()), t),
            );
        }
        s
    }

    /// `features.csv`: `feature,fire_count,density` (empty without
    /// reconstruction metrics).
    pub fn features_csv(&self) -> String {
        let mut s = String::from("feature,fire_count,density\n");
        if let Some(r) = &self.recon {
            for (i, (c, d)) in r.fire_count.iter().zip(&r.density).enumerate() {
                let _ = writeln!(s, "{i},{c},{}", num(*d));
            }
        }
        s
    }

    /// Writes `eval.json` (pretty JSON), `positions.csv` and `features.csv`
    /// into `dir` (created if missing), each atomically; one directory per SAE.
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| EvalError::Json {
            path: dir.join("eval.json"),
            msg: e.to_string(),
        })?;
        let files = [
            ("eval.json", json),
            ("positions.csv", self.positions_csv()),
            ("features.csv", self.features_csv()),
        ];
        write_files(dir, &files).map_err(|(path, source)| EvalError::Io { path, source })
    }
}
