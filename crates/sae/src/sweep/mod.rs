//! Training many SAEs side by side from one pass over a batch source: the
//! plan ([`SweepSpec`] → [`SaePlan`]s), the shared [`SweepSettings`], the
//! data seam ([`BatchSource`]) and [`run`], which is crash-consistent: a
//! run killed at any point (even `kill -9` mid-checkpoint or mid-save)
//! resumes and ends with the same bytes as an uninterrupted one.
//!
//! - [`spec`]: sweep files / grids → plan;
//! - [`settings`]: shared settings and their validation;
//! - [`source`]: the [`BatchSource`] trait and an in-memory source;
//! - [`identity`]: what resuming must match, `progress.json`;
//! - `checkpoint`: grid-wide atomic checkpoints behind `LATEST`;
//! - `metrics`: the per-SAE `metrics.jsonl`;
//! - [`progress`]: callbacks for progress bars and logs;
//! - [`layout`]: the output folder's file names;
//! - `runner`: the orchestration ([`run`]).

mod checkpoint;
pub mod error;
pub mod identity;
pub mod layout;
mod metrics;
pub mod progress;
mod runner;
pub mod settings;
pub mod source;
pub mod spec;

pub use error::{SourceError, SweepError};
pub use identity::{ProgressFile, RunIdentity, SaeIdentity};
pub use progress::{NoProgress, SweepProgress, SweepStart};
pub use runner::{run, SaeSummary, SweepSummary};
pub use settings::SweepSettings;
pub use source::{BatchSource, MemorySource};
pub use spec::{plan_per_lane, ArchDefaults, GridSpec, PlanRequest, SaePlan, SaeSpec, SweepSpec};
