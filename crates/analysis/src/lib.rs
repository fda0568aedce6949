//! Analysis of trained SAEs: evaluation against the language model
//! ([`eval`]), activation statistics over positions and features
//! ([`stats`]), and feature matching between SAEs ([`matching`]). The
//! model-pass runs ([`eval::run`], [`stats::run`]) take a loaded model, SAEs
//! loaded by [`loaded::load_saes`] and token rows from a corpus
//! ([`rows`]), and report through [`progress::Progress`]. [`convergence`]
//! measures how a training run's seed pairs converge, from its snapshots.

pub mod convergence;
pub mod eval;
pub mod loaded;
pub mod matching;
pub mod progress;
pub mod rows;
pub mod stats;
pub mod umap;

pub use loaded::{load_saes, LoadError, LoadedSae};
pub use progress::{NoProgress, Progress};
pub use rows::{RowsConfig, RowsError};
