//! Running a plan: the [`Executor`] interface (one stage at a time, so a
//! scheduler such as a Slurm job array can run stages on other machines
//! through `saelab study run SPEC --stage HASH`), the local executor, and
//! [`run`], which runs every stage the cache does not hold in dependency
//! order, then writes `results.json`.
//!
//! Crash safety: every stage writes into its own folder and is complete
//! only once `stage.json` is written there, last; harvest and train resume
//! from their own checkpoints, the analyses start over. A stop request
//! (Ctrl-C) is passed to the running stage, which checkpoints and returns.

use crate::cache::{Cache, StageRecord, State, STAGE_SCHEMA};
use crate::plan::{plan, Plan, Stage};
use crate::spec::Spec;
use crate::stages;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A study failure: which stage, and why.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error("{kind} stage {hash}: {message}")]
    Stage {
        kind: String,
        hash: String,
        message: String,
    },
    #[error("no stage {0} in this study's plan (`saelab study plan SPEC` lists them)")]
    NoSuchStage(String),
    #[error("stage {stage} needs {dep}, which is not complete: run it first")]
    NotReady { stage: String, dep: String },
    #[error("stopped: completed stages are kept; run the same command again to continue")]
    Stopped,
    #[error(transparent)]
    Fs(#[from] saelab_fsio::FsError),
    #[error(transparent)]
    Results(#[from] saelab_results::ResultsError),
}

/// What a stage reports while it runs; the CLI draws it.
pub trait Progress: Sync {
    /// Stage `index` of `total` (among those to run) starts.
    fn stage_started(&self, index: usize, total: usize, stage: &Stage);
    /// Work inside the running stage: `done` of `total` units.
    fn stage_progress(&self, done: u64, total: u64, unit: &str);
    fn stage_finished(&self, stage: &Stage, seconds: f64, skipped: bool);
    /// A line of information.
    fn note(&self, text: &str);
}

/// Progress that says nothing (tests).
pub struct Quiet;

impl Progress for Quiet {
    fn stage_started(&self, _: usize, _: usize, _: &Stage) {}
    fn stage_progress(&self, _: u64, _: u64, _: &str) {}
    fn stage_finished(&self, _: &Stage, _: f64, _: bool) {}
    fn note(&self, _: &str) {}
}

/// Everything a stage runner needs.
pub struct Ctx<'a> {
    pub spec: &'a Spec,
    pub plan: &'a Plan,
    pub cache: &'a Cache,
    pub stop: &'a AtomicBool,
    pub progress: &'a dyn Progress,
}

/// Runs one stage whose inputs are complete; returns its output files.
pub trait Executor {
    fn run_stage(&self, ctx: &Ctx, stage: &Stage) -> Result<Vec<String>, StudyError>;
}

/// Runs stages in this process.
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn run_stage(&self, ctx: &Ctx, stage: &Stage) -> Result<Vec<String>, StudyError> {
        stages::run(ctx, stage).map_err(|e| match e {
            stages::StageError::Stopped => StudyError::Stopped,
            other => StudyError::Stage {
                kind: stage.kind.clone(),
                hash: crate::identity::short(&stage.hash).to_string(),
                message: other.to_string(),
            },
        })
    }
}

/// Options of [`run`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run only this stage (full hash or its first 16 digits).
    pub stage: Option<String>,
    /// Leave results.json (and the report) alone.
    pub no_results: bool,
}

/// What [`run`] did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub study_dir: std::path::PathBuf,
    pub ran: usize,
    pub skipped: usize,
    pub seconds: f64,
    pub results: Option<std::path::PathBuf>,
}

/// Plans `spec`, runs what the cache does not hold (or the one stage
/// asked for), then gathers `results.json`.
pub fn run(
    spec: &Spec,
    opts: &RunOptions,
    executor: &dyn Executor,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<RunSummary, StudyError> {
    let started = Instant::now();
    let plan = plan(spec)?;
    let cache = Cache::new(spec.cache_dir());
    let study_dir = spec.study_dir();
    // A whole run owns the study folder; single stages (a scheduler runs
    // several at once) lock only their own stage folder.
    let _lock = match opts.stage {
        None => Some(saelab_fsio::DirLock::acquire(&study_dir)?),
        Some(_) => None,
    };
    let ctx = Ctx {
        spec,
        plan: &plan,
        cache: &cache,
        stop,
        progress,
    };
    let todo: Vec<&Stage> = match &opts.stage {
        Some(h) => {
            let s = plan
                .stage(h)
                .ok_or_else(|| StudyError::NoSuchStage(h.clone()))?;
            for d in &s.deps {
                let dep = plan
                    .stage(d)
                    .ok_or_else(|| StudyError::NoSuchStage(d.clone()))?;
                if cache.state(dep) != State::Done {
                    return Err(StudyError::NotReady {
                        stage: crate::identity::short(&s.hash).into(),
                        dep: format!("{} {}", dep.kind, crate::identity::short(&dep.hash)),
                    });
                }
            }
            vec![s]
        }
        None => plan.stages.iter().collect(),
    };
    let pending: Vec<&Stage> = todo
        .iter()
        .copied()
        .filter(|s| cache.state(s) != State::Done)
        .collect();
    let skipped = todo.len() - pending.len();
    for (i, stage) in pending.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return Err(StudyError::Stopped);
        }
        progress.stage_started(i, pending.len(), stage);
        let t0 = Instant::now();
        let outputs = executor.run_stage(&ctx, stage)?;
        let seconds = t0.elapsed().as_secs_f64();
        cache.complete(stage, &record(stage, outputs, seconds))?;
        progress.stage_finished(stage, seconds, false);
    }
    let results = if opts.no_results || opts.stage.is_some() {
        None
    } else {
        let wall = started.elapsed().as_secs_f64();
        Some(write_results_and_report(&ctx, &study_dir, wall)?.0)
    };
    Ok(RunSummary {
        study_dir,
        ran: pending.len(),
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        results,
    })
}

/// Gathers `results.json` from the complete stages and writes it, then
/// the report built from it; returns both paths.
fn write_results_and_report(
    ctx: &Ctx,
    study_dir: &std::path::Path,
    wall_seconds: f64,
) -> Result<(PathBuf, PathBuf), StudyError> {
    let r = crate::results::gather(ctx, wall_seconds)?;
    let results = crate::results::write(study_dir, &r)?;
    let report =
        saelab_report::study::write(study_dir, &saelab_report::study::build(&r)).map_err(|e| {
            StudyError::Stage {
                kind: "report".into(),
                hash: String::new(),
                message: e.to_string(),
            }
        })?;
    Ok((results, report))
}

/// Rebuilds `results.json` and `report.html` from the stages that are
/// complete, running nothing. The wall time of the last run is kept from
/// the existing `results.json`, so rebuilding twice gives the same bytes.
pub fn report(spec: &Spec, progress: &dyn Progress) -> Result<(PathBuf, PathBuf), StudyError> {
    let plan = plan(spec)?;
    let cache = Cache::new(spec.cache_dir());
    let study_dir = spec.study_dir();
    let _lock = saelab_fsio::DirLock::acquire(&study_dir)?;
    let never = AtomicBool::new(false);
    let ctx = Ctx {
        spec,
        plan: &plan,
        cache: &cache,
        stop: &never,
        progress,
    };
    let wall = crate::results::read(&study_dir.join(crate::results::RESULTS_FILE))
        .map_or(0.0, |r| r.wall_seconds);
    write_results_and_report(&ctx, &study_dir, wall)
}

fn record(stage: &Stage, outputs: Vec<String>, seconds: f64) -> StageRecord {
    StageRecord {
        schema: STAGE_SCHEMA.into(),
        kind: stage.kind.clone(),
        hash: stage.hash.clone(),
        deps: stage.deps.clone(),
        inputs: serde_json::to_value(&stage.work).unwrap_or_default(),
        outputs,
        seconds,
        work_units: crate::status::work_units(stage),
        saelab_version: env!("CARGO_PKG_VERSION").into(),
        machine: crate::machine::detect(),
    }
}
