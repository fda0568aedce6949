//! Errors of a sweep: every message names the SAE, file or setting
//! concerned, and says what to do when there is something to do.

use crate::error::SaeError;
use saelab_fsio::FsError;
use std::path::PathBuf;

/// An error of the batch source, whatever crate it comes from.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A sweep file or spec is malformed or inconsistent.
    #[error("{origin}: {msg}")]
    BadSpec { origin: String, msg: String },
    /// A setting is out of range.
    #[error("invalid sweep settings: {0}")]
    BadSettings(String),
    /// The output folder holds another run.
    #[error(
        "{path}: holds a different training run (differs in: {}); use another output folder",
        .fields.join(", ")
    )]
    DifferentRun { path: PathBuf, fields: Vec<String> },
    /// The stop flag was raised; a checkpoint at `step` was written.
    #[error(
        "interrupted at step {step} of {steps}; checkpoint written to {out}: run the same command again to resume"
    )]
    Interrupted { step: u64, steps: u64, out: PathBuf },
    /// An SAE's loss or gradient became non-finite.
    #[error(
        "{name}: {source}; the last checkpoint (step {last_checkpoint}) is kept in {out}: rerun with a lower lr in a new output folder, or resume after fixing the data"
    )]
    Diverged {
        name: String,
        last_checkpoint: u64,
        out: PathBuf,
        #[source]
        source: SaeError,
    },
    /// Building, stepping, loading or saving one SAE failed.
    #[error("{name}: {what}: {source}")]
    Sae {
        name: String,
        what: String,
        #[source]
        source: SaeError,
    },
    /// The batch source failed.
    #[error("batch source: {what}: {source}")]
    Source {
        what: String,
        #[source]
        source: SourceError,
    },
    /// The source ran dry before the planned steps.
    #[error("the batch source ended at step {step} of {steps}")]
    SourceEnded { step: u64, steps: u64 },
    /// A batch of the wrong length.
    #[error("the batch source gave {got} floats at step {step}, expected {want} (batch × d)")]
    BatchShape { step: u64, got: usize, want: usize },
    /// A run-state file (progress.json, a checkpoint) is unreadable.
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// Plain I/O on a path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Atomic writes, locks.
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl SweepError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SweepError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sae(name: &str, what: &str, source: SaeError) -> Self {
        SweepError::Sae {
            name: name.to_string(),
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn source(what: &str, source: SourceError) -> Self {
        SweepError::Source {
            what: what.to_string(),
            source,
        }
    }
}
