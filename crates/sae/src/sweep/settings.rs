//! [`SweepSettings`]: everything of a sweep that is shared by its SAEs
//! (optimizer, batch, length, data order, cadences), their validation, and
//! the per-SAE [`TrainConfig`] built from them.

use super::error::SweepError;
use super::spec::SaePlan;
use crate::config::{BDecInit, EncoderPrecision, LrSchedule, SaeConfig, TrainConfig};
use crate::defaults;
use serde::{Deserialize, Serialize};

/// Settings shared by every SAE of a sweep. Unset fields of a serialized
/// form take the crate defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSettings {
    /// Adam learning rate.
    pub lr: f32,
    /// Learning-rate warm-up / decay.
    pub lr_schedule: LrSchedule,
    /// Linear warm-up of the L1/L0 coefficient over this many steps.
    pub coeff_warmup_steps: u64,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f32>,
    /// Activation vectors per step (> 0).
    pub batch: usize,
    /// Training steps; `None` with `tokens` also `None`: one pass over the
    /// source (more steps than one pass start another epoch).
    pub steps: Option<u64>,
    /// Training tokens instead of steps (rounded down to whole batches).
    pub tokens: Option<u64>,
    /// Decoder-bias initialization from the first batch.
    pub b_dec_init: BDecInit,
    /// Arithmetic of the dense encoder product.
    pub encoder_precision: EncoderPrecision,
    /// AuxK on.
    pub auxk: bool,
    /// Shuffle buffer of the batch source, in vectors (raised to `batch`).
    pub buffer_vectors: usize,
    /// Seed of the batch order (default: the first SAE's seed).
    pub data_seed: Option<u64>,
    /// Checkpoint every N steps (> 0).
    pub checkpoint_every: u64,
    /// Log metrics every N steps (> 0).
    pub log_every: u64,
    /// Steps after which every SAE is also saved, as it is then, to
    /// `<name>/snapshots/step-N/` (convergence curves: one run, several
    /// budgets). Steps at or past the end are ignored (the final SAE is
    /// that snapshot).
    pub snapshot_steps: Vec<u64>,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            lr: defaults::LR,
            lr_schedule: LrSchedule::default(),
            coeff_warmup_steps: 0,
            max_grad_norm: None,
            batch: defaults::BATCH,
            steps: None,
            tokens: None,
            b_dec_init: BDecInit::Zeros,
            encoder_precision: EncoderPrecision::F32,
            auxk: true,
            buffer_vectors: defaults::BUFFER_VECTORS,
            data_seed: None,
            checkpoint_every: defaults::CHECKPOINT_EVERY,
            log_every: defaults::LOG_EVERY,
            snapshot_steps: Vec::new(),
        }
    }
}

impl SweepSettings {
    /// Range checks that would otherwise panic or silently misbehave later
    /// (a zero cadence divides by zero).
    pub fn validate(&self) -> Result<(), SweepError> {
        let bad = |m: &str| Err(SweepError::BadSettings(m.to_string()));
        if self.batch == 0 {
            return bad("batch must be ≥ 1");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be ≥ 1");
        }
        if self.log_every == 0 {
            return bad("log_every must be ≥ 1");
        }
        if self.steps.is_some() && self.tokens.is_some() {
            return bad("give steps or tokens, not both");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be finite and > 0");
        }
        if self.snapshot_steps.contains(&0) {
            return bad("snapshot steps must be ≥ 1 (step 0 is the untrained SAE)");
        }
        Ok(())
    }

    /// The batch-order seed: `data_seed`, else the first SAE's seed.
    pub fn data_seed_for(&self, plan: &[SaePlan]) -> u64 {
        self.data_seed
            .unwrap_or_else(|| plan.first().map_or(defaults::SEED, |p| p.seed))
    }

    /// The shuffle buffer a source should use (never below one batch).
    pub fn effective_buffer(&self) -> usize {
        self.buffer_vectors.max(self.batch)
    }

    /// Steps to train, given the vectors of one pass over the source
    /// (`None`: unknown, so `steps` or `tokens` must be set).
    pub fn total_steps(&self, vectors_per_epoch: Option<u64>) -> Result<u64, SweepError> {
        let b = self.batch.max(1) as u64;
        let steps = match (self.steps, self.tokens, vectors_per_epoch) {
            (Some(s), _, _) => s,
            (None, Some(t), _) => t / b,
            (None, None, Some(v)) => v / b,
            (None, None, None) => {
                return Err(SweepError::BadSettings(
                    "the batch source does not know its size: give steps or tokens".into(),
                ))
            }
        };
        if steps == 0 {
            return Err(SweepError::BadSettings(format!(
                "0 training steps ({} vectors make no full batch of {})",
                self.tokens.or(vectors_per_epoch).unwrap_or(0),
                self.batch
            )));
        }
        Ok(steps)
    }

    /// The trainer config of one SAE on inputs of width `d`.
    pub fn train_config(&self, d: usize, p: &SaePlan) -> TrainConfig {
        let mut sae = SaeConfig::new(d, p.n, p.arch.clone());
        sae.input_unit_norm = true;
        let mut cfg = TrainConfig::new(sae);
        cfg.seed = p.seed;
        cfg.lr = self.lr;
        cfg.schedule = self.lr_schedule.clone();
        cfg.coeff_warmup_steps = self.coeff_warmup_steps;
        cfg.max_grad_norm = self.max_grad_norm;
        cfg.aux.enabled = self.auxk;
        cfg.b_dec_init = self.b_dec_init;
        cfg.encoder_precision = self.encoder_precision;
        cfg
    }
}
