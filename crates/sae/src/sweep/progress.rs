//! [`SweepProgress`]: what a sweep reports while it runs (the CLI draws a
//! progress bar from it; the study runner logs). Every method has a no-op
//! default.

use crate::trainer::StepMetrics;

/// What is about to be trained.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepStart {
    /// SAEs trained side by side.
    pub saes: usize,
    /// Input width.
    pub d: usize,
    /// Total steps of the run.
    pub steps: u64,
    /// Step this invocation starts at (> 0 when resuming).
    pub start_step: u64,
    /// Vectors per step.
    pub batch: usize,
    /// The hook trained on (from the source's meta).
    pub hook: String,
}

/// Callbacks of [`super::run`].
pub trait SweepProgress {
    /// Training starts (after resume).
    fn start(&self, _info: &SweepStart) {}
    /// Step `metrics.step` is done; `metrics` is the first SAE's.
    fn step(&self, _metrics: &StepMetrics) {}
    /// A checkpoint of every SAE at `step` is durable.
    fn checkpoint(&self, _step: u64) {}
    /// A warning worth showing (e.g. a slow kernel path).
    fn warn(&self, _msg: &str) {}
    /// Training ended (finished, interrupted or failed).
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl SweepProgress for NoProgress {}
