//! Error type for the SAE crate: every failure a caller can trigger with bad
//! input (shapes, configs, files, non-finite data) is a variant here, so no
//! user-controlled path panics.

use std::path::PathBuf;

/// Errors from building, training, saving and loading SAEs.
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    /// A configuration value is out of its valid range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A batch or tensor has the wrong length for the SAE's shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A batch holds NaN or Inf; `row` is the first offending row.
    #[error("non-finite value (NaN or Inf) in batch row {row}, column {col}")]
    NonFinite { row: usize, col: usize },
    /// Training produced a non-finite loss or gradient; the parameters are
    /// left as they were before this step.
    #[error("training diverged at step {step}: non-finite {what}")]
    Diverged { step: u64, what: &'static str },
    /// A cfg names an architecture we do not implement (`path`: the cfg).
    #[error("{path}: unknown architecture {name:?} (known: relu/standard, topk, batchtopk, jumprelu, matryoshka_batchtopk)")]
    UnknownArchitecture { path: PathBuf, name: String },
    /// A weights file lacks a tensor this architecture needs.
    #[error("missing tensor {name:?} in {path}")]
    MissingTensor { name: String, path: PathBuf },
    /// A cfg.json lacks a key or has one of the wrong type.
    #[error("bad cfg {path}: {msg}")]
    BadCfg { path: PathBuf, msg: String },
    /// A resume state was written by a trainer with a different config.
    #[error("resume state does not match the config: {0}")]
    StateMismatch(String),
    /// A resume state or weights file is malformed.
    #[error("corrupt file {path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// Filesystem failure, with the path involved.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SaeError>;

impl SaeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SaeError::Io {
            path: path.into(),
            source,
        }
    }
}
