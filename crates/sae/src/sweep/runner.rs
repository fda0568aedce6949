//! [`run`]: trains every SAE of a plan side by side from one pass over a
//! [`BatchSource`], with grid-wide atomic checkpoints, resume, per-SAE
//! metrics logs and SAELens output files.
//!
//! Order of durable effects (each survives a kill at any point):
//! 1. `progress.json` with the run identity (`complete: false`);
//! 2. metrics lines; every `checkpoint_every` steps a checkpoint, made
//!    current by switching `checkpoints/LATEST` last (see [`super::checkpoint`]);
//!    at each of `snapshot_steps` every SAE's files under
//!    `<name>/snapshots/step-N/` (a replay after a kill rewrites them with
//!    the same bytes);
//! 3. the final SAE files of every SAE (each written atomically);
//! 4. `progress.json` with `complete: true`;
//! 5. the checkpoints folder is deleted.
//!
//! A rerun after a kill before 4 resumes from LATEST (or step 0), cutting
//! the metrics logs back to it, and ends with the same bytes; after 4 it
//! only finishes step 5.

use super::checkpoint::{self, Checkpoint};
use super::error::SweepError;
use super::identity::{ProgressFile, RunIdentity, SaeIdentity};
use super::layout::{snapshot_dir, PROGRESS_FILE};
use super::metrics::MetricsLog;
use super::progress::{SweepProgress, SweepStart};
use super::settings::SweepSettings;
use super::source::BatchSource;
use super::spec::{check_name, SaePlan};
use crate::config::EncoderPrecision;
use crate::engine::StepBuffers;
use crate::error::SaeError;
use crate::io::{save_sae, ExportMeta};
use crate::trainer::{StepMetrics, Trainer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a sweep did.
#[derive(Clone, Debug)]
pub struct SweepSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Total steps of the run.
    pub steps: u64,
    /// Step this invocation started at (> 0: resumed).
    pub start_step: u64,
    /// The folder already held the finished run; nothing was trained.
    pub already_complete: bool,
    /// Vectors trained on by this invocation (per SAE).
    pub vectors_trained: u64,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// Per SAE, in plan order.
    pub saes: Vec<SaeSummary>,
}

/// One trained SAE.
#[derive(Clone, Debug)]
pub struct SaeSummary {
    pub name: String,
    /// `<out>/<name>`: SAELens files and `metrics.jsonl`.
    pub dir: PathBuf,
    /// Metrics of the last step trained by this invocation.
    pub last: Option<StepMetrics>,
}

/// One SAE while training.
struct Live {
    name: String,
    /// The source lane it trains on.
    lane: usize,
    dir: PathBuf,
    trainer: Trainer,
    log: MetricsLog,
    last: Option<StepMetrics>,
}

/// The fixed inputs of one invocation.
struct Ctx<'a> {
    out: &'a Path,
    settings: &'a SweepSettings,
    run_id: RunIdentity,
    steps: u64,
    /// Seed of the batch order, for the exported cfg.
    data_seed: u64,
    /// Where the vectors of each lane come from, for the exported cfg.
    meta: Vec<ExportMeta>,
}

/// Trains the SAEs of `plan` on `source` into `out` (see the module doc);
/// resumes a run cut off in `out`, returns at once if it is complete.
/// Raising `stop` writes a checkpoint and returns [`SweepError::Interrupted`].
pub fn run(
    out: &Path,
    plan: &[SaePlan],
    settings: &SweepSettings,
    source: &mut dyn BatchSource,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<SweepSummary, SweepError> {
    let started = std::time::Instant::now();
    settings.validate()?;
    check_plan(plan, source.lanes())?;
    let d = source.d();
    let steps = settings.total_steps(source.vectors_per_epoch())?;
    // Before anything is written: a typo must not claim the folder.
    for p in plan {
        settings
            .train_config(d, p)
            .validate()
            .map_err(|e| SweepError::sae(&p.name, "configuring", e))?;
    }
    let run_id = identity(plan, settings, &*source, d, steps);
    let _lock = saelab_fsio::DirLock::acquire(out)?;
    saelab_fsio::clean_stale_temps(out)?;
    let ctx = Ctx {
        out,
        settings,
        run_id,
        steps,
        data_seed: settings.data_seed_for(plan),
        meta: (0..source.lanes()).map(|l| source.meta_lane(l)).collect(),
    };
    if open_progress(&ctx)? {
        // Finished before; only the cleanup may be missing.
        checkpoint::remove_all(out)?;
        return Ok(summary(&ctx, plan, 0, true, started));
    }
    let ck = checkpoint::latest(out, &ctx.run_id)?;
    checkpoint::remove_stale(
        out,
        checkpoint::latest_name(out)
            .as_deref()
            .filter(|_| ck.is_some()),
    )?;
    let start_step = ck.as_ref().map_or(0, |c| c.step);
    let mut live = plan
        .iter()
        .map(|p| open_sae(&ctx, p, d, ck.as_ref(), start_step))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(s) = settings.snapshot_steps.iter().find(|&&s| s >= steps) {
        progress.warn(&format!(
            "snapshot step {s} is not before the end of the run ({steps} steps): the final SAE stands for it"
        ));
    }
    if let Some(note) = saelab_kernels::bf16::bf16_path_note()
        .filter(|_| settings.encoder_precision == EncoderPrecision::Bf16)
    {
        progress.warn(&format!("the bf16 encoder product {note}"));
    }
    source
        .skip(start_step)
        .map_err(|e| SweepError::source(&format!("skipping to step {start_step}"), e))?;
    progress.start(&SweepStart {
        saes: live.len(),
        d,
        steps,
        start_step,
        batch: settings.batch,
        hook: source.meta().hook_name,
    });
    let trained = train(&ctx, &mut live, source, start_step, progress, stop);
    progress.end();
    trained?;
    finish(&ctx, &live)?;
    let mut s = summary(&ctx, plan, start_step, false, started);
    for (s, l) in s.saes.iter_mut().zip(live) {
        s.last = l.last;
    }
    Ok(s)
}

/// Names must be plain and unique (a plan may be built without a spec),
/// lanes within the source's.
fn check_plan(plan: &[SaePlan], lanes: usize) -> Result<(), SweepError> {
    if plan.is_empty() {
        return Err(SweepError::BadSpec {
            origin: "sweep".into(),
            msg: "the plan holds no SAEs".into(),
        });
    }
    for (i, p) in plan.iter().enumerate() {
        check_name(&p.name)?;
        if p.lane >= lanes {
            return Err(SweepError::BadSpec {
                origin: "sweep".into(),
                msg: format!(
                    "{} trains on lane {}; the source serves {lanes}",
                    p.name, p.lane
                ),
            });
        }
        if plan[..i].iter().any(|q| q.name == p.name) {
            return Err(SweepError::BadSpec {
                origin: "sweep".into(),
                msg: format!("two SAEs of the sweep share the name {}", p.name),
            });
        }
    }
    Ok(())
}

fn identity(
    plan: &[SaePlan],
    settings: &SweepSettings,
    source: &dyn BatchSource,
    d: usize,
    steps: u64,
) -> RunIdentity {
    RunIdentity {
        source: source.identity(),
        steps,
        batch: settings.batch,
        saes: plan
            .iter()
            .map(|p| SaeIdentity {
                name: p.name.clone(),
                train: settings.train_config(d, p),
                lane: p.lane,
            })
            .collect(),
    }
}

/// Checks or writes `progress.json`; `true` if the run is complete.
fn open_progress(ctx: &Ctx) -> Result<bool, SweepError> {
    match ProgressFile::load(ctx.out)? {
        Some(p) if p.run != ctx.run_id => Err(SweepError::DifferentRun {
            path: ctx.out.join(PROGRESS_FILE),
            fields: p.run.diff(&ctx.run_id),
        }),
        Some(p) => Ok(p.complete),
        None => {
            ProgressFile::new(ctx.run_id.clone(), false).save(ctx.out)?;
            Ok(false)
        }
    }
}

/// A fresh or resumed trainer and its log, cut back to `start_step`.
fn open_sae(
    ctx: &Ctx,
    p: &SaePlan,
    d: usize,
    ck: Option<&Checkpoint>,
    start_step: u64,
) -> Result<Live, SweepError> {
    let dir = ctx.out.join(&p.name);
    std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
    saelab_fsio::clean_stale_temps(&dir)?;
    let cfg = ctx.settings.train_config(d, p);
    let trainer = match ck {
        Some(ck) => {
            let st = ck.load_trainer(&p.name)?;
            Trainer::from_state(cfg, st).map_err(|e| SweepError::sae(&p.name, "resuming", e))?
        }
        None => Trainer::new(cfg).map_err(|e| SweepError::sae(&p.name, "configuring", e))?,
    };
    if trainer.steps() != start_step {
        return Err(SweepError::Corrupt {
            path: ctx.out.join("checkpoints"),
            msg: format!(
                "{}: trainer state is at step {}, the checkpoint says {start_step}",
                p.name,
                trainer.steps()
            ),
        });
    }
    Ok(Live {
        name: p.name.clone(),
        lane: p.lane,
        log: MetricsLog::open_truncated(&dir, start_step)?,
        dir,
        trainer,
        last: None,
    })
}

/// The training loop from `start_step` to the end.
fn train(
    ctx: &Ctx,
    live: &mut [Live],
    source: &mut dyn BatchSource,
    start_step: u64,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<(), SweepError> {
    let (steps, s) = (ctx.steps, ctx.settings);
    let want = s.batch * source.d();
    let mut batches = vec![Vec::with_capacity(want); source.lanes()];
    // The SAEs step one after another, so one set of step buffers serves
    // them all (at n 12288, batch 4096, ≈ 250 MB per SAE otherwise).
    let mut bufs = StepBuffers::default();
    let mut last_ckpt = start_step;
    for step in start_step..steps {
        if stop.load(Ordering::SeqCst) {
            if step > last_ckpt {
                write_checkpoint(ctx, live, step)?;
                progress.checkpoint(step);
            }
            return Err(SweepError::Interrupted {
                step,
                steps,
                out: ctx.out.to_path_buf(),
            });
        }
        let more = source.next_lanes(&mut batches).map_err(|e| {
            SweepError::source(&format!("reading the batch of step {}", step + 1), e)
        })?;
        if !more {
            return Err(SweepError::SourceEnded { step, steps });
        }
        if let Some(b) = batches.iter().find(|b| b.len() != want) {
            return Err(SweepError::BatchShape {
                step: step + 1,
                got: b.len(),
                want,
            });
        }
        for l in live.iter_mut() {
            step_one(ctx, l, &batches[l.lane], &mut bufs, last_ckpt)?;
        }
        if let Some(m) = live.first().and_then(|l| l.last.as_ref()) {
            progress.step(m);
        }
        let done = step + 1;
        if s.snapshot_steps.contains(&done) && done < steps {
            for l in live.iter() {
                save_snapshot(ctx, l, done)?;
            }
        }
        if done.is_multiple_of(s.checkpoint_every) && done < steps {
            write_checkpoint(ctx, live, done)?;
            last_ckpt = done;
            progress.checkpoint(done);
        }
    }
    Ok(())
}

/// One step of one SAE, logged every `log_every` steps and at the end.
fn step_one(
    ctx: &Ctx,
    l: &mut Live,
    batch: &[f32],
    bufs: &mut StepBuffers,
    last_ckpt: u64,
) -> Result<(), SweepError> {
    let m = match l.trainer.step_with(batch, bufs) {
        Ok(m) => m,
        Err(e @ SaeError::Diverged { .. }) => {
            return Err(SweepError::Diverged {
                name: l.name.clone(),
                last_checkpoint: last_ckpt,
                out: ctx.out.to_path_buf(),
                source: e,
            })
        }
        Err(e) => {
            let at = format!("at step {}", l.trainer.steps() + 1);
            return Err(SweepError::sae(&l.name, &at, e));
        }
    };
    if m.step.is_multiple_of(ctx.settings.log_every) || m.step == ctx.steps {
        l.log.write(&m)?;
    }
    l.last = Some(m);
    Ok(())
}

fn write_checkpoint(ctx: &Ctx, live: &[Live], step: u64) -> Result<(), SweepError> {
    let trainers: Vec<(&str, &Trainer)> =
        live.iter().map(|l| (l.name.as_str(), &l.trainer)).collect();
    checkpoint::write(ctx.out, step, &ctx.run_id, &trainers, || {
        live.iter().try_for_each(|l| l.log.sync())
    })
}

/// Final SAE files, then `complete`, then the checkpoints go.
fn finish(ctx: &Ctx, live: &[Live]) -> Result<(), SweepError> {
    for l in live {
        l.log.sync()?;
        save(ctx, l, &l.dir)?;
    }
    ProgressFile::new(ctx.run_id.clone(), true).save(ctx.out)?;
    checkpoint::remove_all(ctx.out)
}

/// The SAE as it is after `step`, into `snapshots/step-N/`: written into a
/// temporary folder renamed into place whole, so a `step-N` folder is
/// always complete (a replay after a kill finds it there and keeps it).
fn save_snapshot(ctx: &Ctx, l: &Live, step: u64) -> Result<(), SweepError> {
    let dir = snapshot_dir(&l.dir, step);
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(&l.dir).to_path_buf();
    let tmp = parent.join(format!(".{}.tmp", super::layout::step_dir_name(step)));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| SweepError::io(&tmp, e))?;
    }
    save(ctx, l, &tmp)?;
    std::fs::rename(&tmp, &dir).map_err(|e| SweepError::io(&dir, e))?;
    saelab_fsio::sync_dir(&parent)?;
    Ok(())
}

/// One SAE as it is now, in the SAELens layout, into `dir`.
fn save(ctx: &Ctx, l: &Live, dir: &Path) -> Result<(), SweepError> {
    let mut meta = ctx.meta[l.lane].clone();
    let enc = l.trainer.config().encoder_precision;
    let extra = json!({"saelab_train_config": l.trainer.config(), "data_seed": ctx.data_seed,
                       "steps": ctx.steps, "batch": ctx.settings.batch,
                       "trained_steps": l.trainer.steps(),
                       "saelab_encoder_product_path": enc.product_path()});
    if let serde_json::Value::Object(m) = extra {
        meta.extra.extend(m);
    }
    let freq = l.trainer.feature_frequency();
    save_sae(dir, l.trainer.sae(), &meta, Some(&freq))
        .map_err(|e| SweepError::sae(&l.name, "saving", e))
}

fn summary(
    ctx: &Ctx,
    plan: &[SaePlan],
    start_step: u64,
    already_complete: bool,
    started: std::time::Instant,
) -> SweepSummary {
    let trained = if already_complete {
        0
    } else {
        ctx.steps - start_step
    };
    SweepSummary {
        out: ctx.out.to_path_buf(),
        steps: ctx.steps,
        start_step,
        already_complete,
        vectors_trained: trained * ctx.settings.batch as u64,
        seconds: started.elapsed().as_secs_f64(),
        saes: plan
            .iter()
            .map(|p| SaeSummary {
                name: p.name.clone(),
                dir: ctx.out.join(&p.name),
                last: None,
            })
            .collect(),
    }
}
