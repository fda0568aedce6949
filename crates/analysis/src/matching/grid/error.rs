//! Errors of the pair and grid runs: every message names the SAE directory
//! or output file and the problem.

use crate::matching::MatchError;
use std::path::PathBuf;
use thiserror::Error;

/// Result alias of [`crate::matching::grid`].
pub type Result<T> = std::result::Result<T, GridError>;

/// What can go wrong loading, comparing or writing a grid of SAEs.
#[derive(Debug, Error)]
pub enum GridError {
    /// The SAE path does not exist.
    #[error("{0}: no such directory")]
    Missing(PathBuf),
    /// The SAE path is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    /// The directory does not hold an SAE we can load.
    #[error("{dir}: not a loadable SAE directory")]
    Load {
        dir: PathBuf,
        #[source]
        source: saelab_sae::SaeError,
    },
    /// Reading an input file failed.
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An SAE config is not valid JSON.
    #[error("{path}: bad JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Two SAEs of a grid have different model widths.
    #[error(
        "cannot compare SAEs of different widths: {dir_a} has d = {d_a}, {dir_b} has d = {d_b}"
    )]
    Width {
        dir_a: PathBuf,
        d_a: usize,
        dir_b: PathBuf,
        d_b: usize,
    },
    /// A grid needs two SAEs at least.
    #[error("a grid needs at least 2 SAE directories (got {0})")]
    TooFew(usize),
    /// Comparing two SAEs failed (boxed: the matching error is large).
    #[error("comparing {a} with {b}")]
    Compare {
        a: String,
        b: String,
        #[source]
        source: Box<MatchError>,
    },
    /// The comparison has no feature comparison to take ratios from.
    #[error("comparing {a} with {b}: no feature comparison in the report")]
    NoFeatures { a: String, b: String },
    /// A pair result names an SAE the table was not given.
    #[error("pair {a} vs {b}: no SAE labelled {missing} among the grid's SAEs")]
    UnknownLabel {
        a: String,
        b: String,
        missing: String,
    },
    /// Writing an output file failed.
    #[error(transparent)]
    Write(#[from] saelab_fsio::FsError),
    /// Writing a CSV record failed.
    #[error("{path}: cannot write CSV")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}
