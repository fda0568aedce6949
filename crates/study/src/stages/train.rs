//! The train stage: every SAE that reads one store (one hook, one
//! schedule) trained side by side in one pass, through
//! [`crate::sources::train_from_store`] (what `saelab train` calls), into
//! `<stage>/<sae label>/`; checkpoints and resume are the sweep's. With
//! `train.source = "model"` the stage's SAEs of every hook of a corpus train
//! side by side on one forward pass, through [`crate::streamed::train_lanes`]
//! (what `saelab train --dataset` calls).

use super::{corpus_path, load_model, StageError};
use crate::exec::Ctx;
use crate::grid::SaeKey;
use crate::plan::{HarvestWork, Stage, TrainWork, Work};
use crate::results::{SaeTraining, TrainResult};
use saelab_sae::sweep::{
    PlanRequest, SaePlan, SweepError, SweepProgress, SweepSettings, SweepSummary,
};
use saelab_sae::{ArchSpec, BDecInit, Decay, EncoderPrecision, LrSchedule, StepMetrics};
use std::path::Path;

pub fn run(ctx: &Ctx, stage: &Stage, w: &TrainWork, dir: &Path) -> Result<Vec<String>, StageError> {
    let plan: Vec<SaePlan> = w
        .saes
        .iter()
        .map(|s| SaePlan {
            name: s.name.clone(),
            arch: arch_spec(&s.key),
            n: s.key.n,
            seed: s.key.seed,
            lane: s.lane,
        })
        .collect();
    let trained = match &w.stream {
        Some(rows) => from_model(ctx, w, rows, &plan, dir),
        None => from_store(ctx, stage, w, &plan, dir),
    };
    let summary = trained?;
    let result = TrainResult {
        steps: summary.steps,
        saes: w
            .saes
            .iter()
            .map(|s| {
                Ok(SaeTraining {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    curve: read_metrics(&dir.join(&s.name).join("metrics.jsonl"))?,
                })
            })
            .collect::<Result<_, StageError>>()?,
    };
    crate::results::write_stage_result(dir, &result).map_err(StageError::msg)?;
    let mut outputs = vec![crate::results::STAGE_RESULT.to_string()];
    for s in &w.saes {
        for f in [
            "sae_weights.safetensors",
            "cfg.json",
            "sparsity.safetensors",
            "saelab_cfg.json",
            "metrics.jsonl",
        ] {
            outputs.push(format!("{}/{f}", s.name));
        }
    }
    Ok(outputs)
}

type Trained = Result<SweepSummary, StageError>;

/// Trains the plan on the store of the stage's harvest stage.
fn from_store(ctx: &Ctx, stage: &Stage, w: &TrainWork, plan: &[SaePlan], dir: &Path) -> Trained {
    let store_stage = ctx
        .plan
        .stage(stage.deps.first().map_or("", String::as_str))
        .filter(|s| matches!(s.work, Work::Harvest(_)))
        .ok_or_else(|| StageError::msg("a train stage must read a harvest stage"))?;
    let store = ctx.cache.stage_dir(store_stage).join("store");
    let default_steps = || {
        saelab_data::store::StoreManifest::load(&store)
            .map(|m| m.tokens / w.settings.batch as u64)
            .map_err(StageError::msg)
    };
    let settings = settings(w, default_steps)?;
    let progress = Bar {
        ctx,
        steps: settings.steps.unwrap_or(0),
    };
    crate::sources::train_from_store(
        &store,
        Some(&w.hook),
        PlanRequest::Plan(plan),
        &settings,
        dir,
        &progress,
        ctx.stop,
    )
    .map_err(sweep_error)
}

/// Trains the plan on activations computed by the model, every hook of
/// the stage (one lane each) from one forward pass.
fn from_model(
    ctx: &Ctx,
    w: &TrainWork,
    rows: &HarvestWork,
    plan: &[SaePlan],
    dir: &Path,
) -> Trained {
    // The spec check requires train.tokens or train.steps with this source.
    let default_steps = || {
        Err(StageError::msg(
            "train.source = \"model\" needs train.tokens or train.steps",
        ))
    };
    let settings = settings(w, default_steps)?;
    let model = std::sync::Arc::new(load_model(&rows.model, &rows.precision)?);
    let corpus = corpus_path(&rows.source)?;
    let cfg = super::harvest::config(rows)?;
    let progress = Bar {
        ctx,
        steps: settings.steps.unwrap_or(0),
    };
    crate::streamed::train_lanes(
        model, &corpus, &cfg, plan, &settings, dir, &progress, ctx.stop,
    )
    .map_err(sweep_error)
}

/// A stop request is the stage's `Stopped`, anything else its message.
fn sweep_error(e: crate::sources::TrainError) -> StageError {
    match e {
        crate::sources::TrainError::Sweep(SweepError::Interrupted { .. }) => StageError::Stopped,
        e => StageError::msg(e),
    }
}

/// The architecture with its coefficients.
pub(crate) fn arch_spec(k: &SaeKey) -> ArchSpec {
    let kk = k.k.unwrap_or(saelab_sae::defaults::K);
    match k.arch.as_str() {
        "batchtopk" => ArchSpec::BatchTopK {
            k: kk,
            threshold_ema_rate: saelab_sae::defaults::THRESHOLD_EMA_RATE,
        },
        "matryoshka" => ArchSpec::MatryoshkaBatchTopK {
            k: kk,
            group_sizes: k.coeffs.group_sizes.clone().unwrap_or_default(),
            threshold_ema_rate: saelab_sae::defaults::THRESHOLD_EMA_RATE,
        },
        "relu" => ArchSpec::Relu {
            l1_coeff: k.coeffs.l1_coeff.unwrap_or_else(crate::grid::default_l1) as f32,
        },
        "jumprelu" => {
            let j = k
                .coeffs
                .jumprelu
                .clone()
                .unwrap_or_else(crate::grid::default_jumprelu);
            ArchSpec::JumpRelu {
                l0_coeff: j.l0_coeff as f32,
                bandwidth: j.bandwidth as f32,
                init_threshold: j.init_threshold as f32,
                apply_b_dec_to_input: false,
            }
        }
        _ => ArchSpec::TopK { k: kk },
    }
}

/// Sweep settings of a train stage; `steps` resolved here so a decay
/// schedule knows where it ends.
fn settings(
    w: &TrainWork,
    default_steps: impl FnOnce() -> Result<u64, StageError>,
) -> Result<SweepSettings, StageError> {
    let t = &w.settings;
    let steps = match (t.steps, t.tokens) {
        (Some(s), _) => s,
        (None, Some(tok)) => tok / t.batch as u64,
        (None, None) => default_steps()?,
    };
    let decay = match t.lr_decay.as_str() {
        "cosine" => Decay::Cosine,
        "linear" => Decay::Linear,
        _ => Decay::None,
    };
    let cadence = w.cadence.clone().unwrap_or(crate::plan::Cadence {
        checkpoint_every: 500,
        log_every: 50,
    });
    Ok(SweepSettings {
        lr: w.lr as f32,
        lr_schedule: LrSchedule {
            warmup_steps: t.lr_warmup_steps,
            decay,
            decay_start: t.lr_warmup_steps,
            total_steps: steps,
            min_lr_ratio: 0.0,
        },
        batch: t.batch,
        steps: Some(steps),
        tokens: None,
        b_dec_init: match t.b_dec_init.as_str() {
            "mean" => BDecInit::Mean,
            "geometric-median" => BDecInit::GeometricMedian,
            _ => BDecInit::Zeros,
        },
        encoder_precision: if t.encoder_precision == "bf16" {
            EncoderPrecision::Bf16
        } else {
            EncoderPrecision::F32
        },
        auxk: t.auxk,
        buffer_vectors: t.buffer_vectors,
        data_seed: Some(t.data_seed),
        checkpoint_every: cadence.checkpoint_every,
        log_every: cadence.log_every,
        ..SweepSettings::default()
    })
}

/// The training curve of one SAE.
fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, StageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StageError::msg(format!("{}: {e}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| StageError::msg(format!("{}: bad line: {e}", path.display())))
        })
        .collect()
}

/// Steps of the sweep shown on the stage bar.
struct Bar<'a, 'b> {
    ctx: &'a Ctx<'b>,
    steps: u64,
}

impl SweepProgress for Bar<'_, '_> {
    fn step(&self, m: &StepMetrics) {
        self.ctx
            .progress
            .stage_progress(m.step, self.steps, "steps");
    }
    fn warn(&self, msg: &str) {
        self.ctx.progress.note(msg);
    }
}
