//! Convergence of training runs, measured the way the study asks its
//! questions: how many decoder features two SAEs that differ only in their
//! init seed share (matching ratio at τ in both directions, MMCS, the
//! one-to-one assignment ratio), at every snapshot a sweep saved
//! (`saelab train --snapshot-tokens`, `<name>/snapshots/step-N/`) and at the
//! end of a finished run. While the overlap still rises with tokens, a
//! Table 1 ratio measures under-training, not datasets or seeds.
//!
//! Pairs are found from the run's `progress.json`: SAEs whose trainer
//! configs are equal up to the seed, taken in seed order (s₀ vs s₁, s₁ vs
//! s₂, …). The training FVU, L0 and dead fraction beside each point come
//! from the SAEs' `metrics.jsonl` (mean of the logged batches in the last
//! [`FVU_WINDOW`] of the steps up to the point).

use crate::matching::{compare, MatchError, MatchOptions, Unit, VectorKind};
use saelab_sae::sweep::layout::{snapshot_dir, step_dir_name, METRICS_FILE, SNAPSHOTS_DIR};
use saelab_sae::sweep::{ProgressFile, SaeIdentity, SweepError};
use saelab_sae::{load_sae, ArchSpec, SaeError, StepMetrics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Schema tag of [`ConvergenceTable`].
pub const SCHEMA: &str = "saelab.convergence.v1";

/// Fraction of the steps up to a point whose logged batches make its
/// training metrics (one batch alone is noisy).
pub const FVU_WINDOW: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum ConvergenceError {
    #[error("{path}: {msg}")]
    Run { path: PathBuf, msg: String },
    #[error(transparent)]
    Sweep(#[from] Box<SweepError>),
    #[error("loading SAE {dir}: {source}")]
    Sae { dir: PathBuf, source: SaeError },
    #[error("matching {a} with {b}: {source}")]
    Match {
        a: PathBuf,
        b: PathBuf,
        source: Box<MatchError>,
    },
}

type Result<T> = std::result::Result<T, ConvergenceError>;

/// What [`measure`] computes.
#[derive(Clone, Debug)]
pub struct ConvergenceOptions {
    /// Matching threshold τ (strict `>`), the study's 0.7.
    pub threshold: f32,
    /// Also the exact one-to-one assignment ratio R_H (costs a LAP solve
    /// per point).
    pub assignment: bool,
}

impl Default for ConvergenceOptions {
    fn default() -> Self {
        ConvergenceOptions {
            threshold: 0.7,
            assignment: true,
        }
    }
}

/// The seed-pair overlap of one or more runs against training tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceTable {
    pub schema: String,
    /// τ.
    pub threshold: f32,
    /// One entry per (run, pair, step), runs in the order given, steps
    /// ascending.
    pub points: Vec<ConvergencePoint>,
}

impl ConvergenceTable {
    /// Writes the table as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ConvergenceError::Run {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        saelab_fsio::write_atomic(path, text.as_bytes()).map_err(|e| ConvergenceError::Run {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }
}

/// One seed pair at one training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergencePoint {
    /// The run folder.
    pub run: PathBuf,
    /// `<a> vs <b>`.
    pub pair: String,
    /// What the pair trains with (arch, n, k, lr, warm-up, decay, batch,
    /// AuxK, b_dec init), seed left out: the series label.
    pub recipe: String,
    /// Steps trained.
    pub step: u64,
    /// Vectors trained on (step × batch).
    pub tokens: u64,
    /// R(a←b): fraction of b's decoder features with a partner in a above τ.
    pub ratio_b_in_a: f64,
    /// R(b←a).
    pub ratio_a_in_b: f64,
    /// Mean of the two directions' mean max cosine.
    pub mmcs: f64,
    /// R_H of the one-to-one assignment (with `assignment`).
    pub assignment_ratio: Option<f64>,
    /// Training metrics of a and b near the step (see the module doc).
    pub train: [Option<TrainPoint>; 2],
}

/// Logged training metrics of one SAE near a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    pub fvu: f64,
    pub l0: f64,
    pub dead_fraction: f64,
}

/// Measures every seed pair of every run at each of its saved steps.
pub fn measure(runs: &[PathBuf], opts: &ConvergenceOptions) -> Result<ConvergenceTable> {
    let mut points = Vec::new();
    for run in runs {
        points.extend(measure_run(run, opts)?);
    }
    Ok(ConvergenceTable {
        schema: SCHEMA.into(),
        threshold: opts.threshold,
        points,
    })
}

fn measure_run(run: &Path, opts: &ConvergenceOptions) -> Result<Vec<ConvergencePoint>> {
    let progress =
        ProgressFile::load(run)
            .map_err(Box::new)?
            .ok_or_else(|| ConvergenceError::Run {
                path: run.to_path_buf(),
                msg: "no progress.json: not a `saelab train` run folder".into(),
            })?;
    let pairs = seed_pairs(&progress.run.saes);
    if pairs.is_empty() {
        return Err(ConvergenceError::Run {
            path: run.join("progress.json"),
            msg: "no two SAEs differ only in their seed: train with two or more --seed".into(),
        });
    }
    let batch = progress.run.batch as u64;
    let mut out = Vec::new();
    for (a, b) in pairs {
        let (da, db) = (run.join(&a.name), run.join(&b.name));
        let mut steps = common_snapshots(&da, &db)?;
        if progress.complete {
            steps.push(progress.run.steps);
        }
        let final_step = progress.complete.then_some(progress.run.steps);
        let logs = [read_metrics(&da)?, read_metrics(&db)?];
        for step in steps {
            let dir = |d: &Path| match final_step == Some(step) {
                true => d.to_path_buf(),
                false => snapshot_dir(d, step),
            };
            let mut p = compare_pair(&dir(&da), &dir(&db), opts)?;
            p.run = run.to_path_buf();
            p.pair = format!("{} vs {}", a.name, b.name);
            p.recipe = recipe(a, batch);
            p.step = step;
            p.tokens = step * batch;
            p.train = [train_point(&logs[0], step), train_point(&logs[1], step)];
            out.push(p);
        }
    }
    Ok(out)
}

/// Pairs of SAEs equal up to the seed (same lane, i.e. hook), each group in
/// seed order; equal seeds are not a pair.
fn seed_pairs(saes: &[SaeIdentity]) -> Vec<(&SaeIdentity, &SaeIdentity)> {
    let key = |s: &SaeIdentity| {
        let mut t = s.train.clone();
        t.seed = 0;
        (s.lane, serde_json::to_string(&t).unwrap_or_default())
    };
    let mut groups: Vec<((usize, String), Vec<&SaeIdentity>)> = Vec::new();
    for s in saes {
        let k = key(s);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(s),
            None => groups.push((k, vec![s])),
        }
    }
    let mut pairs = Vec::new();
    for (_, mut g) in groups {
        g.sort_by_key(|s| s.train.seed);
        g.dedup_by_key(|s| s.train.seed);
        pairs.extend(g.windows(2).map(|w| (w[0], w[1])));
    }
    pairs
}

/// A short label of what a pair trains with.
fn recipe(s: &SaeIdentity, batch: u64) -> String {
    let t = &s.train;
    let sched = &t.schedule;
    let k = match &t.sae.arch {
        ArchSpec::TopK { k }
        | ArchSpec::BatchTopK { k, .. }
        | ArchSpec::MatryoshkaBatchTopK { k, .. } => format!(" k{k}"),
        _ => String::new(),
    };
    let mut r = format!(
        "{} n{}{k} lr {:e} B {batch}",
        t.sae.arch.name(),
        t.sae.d_sae,
        t.lr
    );
    if sched.warmup_steps > 0 {
        r.push_str(&format!(" warm-up {}", sched.warmup_steps));
    }
    if sched.decay != saelab_sae::Decay::None {
        r.push_str(&format!(" {:?} decay", sched.decay).to_lowercase());
    }
    if !t.aux.enabled {
        r.push_str(" no AuxK");
    }
    let b_dec = serde_json::to_value(t.b_dec_init).unwrap_or_default();
    r.push_str(&format!(" b_dec {}", b_dec.as_str().unwrap_or("?")));
    r
}

/// Snapshot steps both SAEs hold, ascending.
fn common_snapshots(a: &Path, b: &Path) -> Result<Vec<u64>> {
    let sa = snapshot_steps(a)?;
    let sb = snapshot_steps(b)?;
    Ok(sa.into_iter().filter(|s| sb.contains(s)).collect())
}

fn snapshot_steps(sae_dir: &Path) -> Result<Vec<u64>> {
    let dir = sae_dir.join(SNAPSHOTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(run_err(&dir, e)),
    };
    let mut steps = Vec::new();
    for e in entries {
        let name = e.map_err(|e| run_err(&dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(s) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            // A snapshot folder is renamed into place whole, so one named
            // step-N is complete.
            if name == step_dir_name(s) && dir.join(&*name).is_dir() {
                steps.push(s);
            }
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

fn run_err(path: &Path, e: std::io::Error) -> ConvergenceError {
    ConvergenceError::Run {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Decoder-feature matching of two SAEs (the pair's fields are filled in
/// by the caller).
fn compare_pair(a: &Path, b: &Path, opts: &ConvergenceOptions) -> Result<ConvergencePoint> {
    let load = |d: &Path| {
        load_sae(d).map_err(|source| ConvergenceError::Sae {
            dir: d.to_path_buf(),
            source,
        })
    };
    let (sa, sb) = (load(a)?, load(b)?);
    let mo = MatchOptions {
        threshold: opts.threshold,
        assignment: opts.assignment,
        ..MatchOptions::default()
    };
    let rep = compare(&sa, &sb, &mo).map_err(|source| ConvergenceError::Match {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        source: Box::new(source),
    })?;
    let c = rep
        .get(VectorKind::Decoder, Unit::Features)
        .ok_or_else(|| ConvergenceError::Run {
            path: a.to_path_buf(),
            msg: "the decoder comparison is missing".into(),
        })?;
    Ok(ConvergencePoint {
        run: PathBuf::new(),
        pair: String::new(),
        recipe: String::new(),
        step: 0,
        tokens: 0,
        ratio_b_in_a: c.b_in_a.ratio,
        ratio_a_in_b: c.a_in_b.ratio,
        mmcs: 0.5 * (c.b_in_a.mmcs + c.a_in_b.mmcs),
        assignment_ratio: c.assignment.as_ref().map(|s| s.fraction_above),
        train: [None, None],
    })
}

fn read_metrics(sae_dir: &Path) -> Result<Vec<StepMetrics>> {
    let path = sae_dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| run_err(&path, e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(m) => out.push(m),
            // A run still going (or killed) may have a half-written last
            // line; the resume cuts it.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(ConvergenceError::Run {
                    path: path.clone(),
                    msg: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok(out)
}

/// Mean of the logged metrics in `(step·(1 − FVU_WINDOW), step]` (the
/// last logged line at or before `step` if none falls inside).
fn train_point(log: &[StepMetrics], step: u64) -> Option<TrainPoint> {
    let lo = (step as f64 * (1.0 - FVU_WINDOW)).floor() as u64;
    let mut inside: Vec<&StepMetrics> = log
        .iter()
        .filter(|m| m.step > lo && m.step <= step)
        .collect();
    if inside.is_empty() {
        inside.extend(log.iter().rfind(|m| m.step <= step));
    }
    if inside.is_empty() {
        return None;
    }
    let mean =
        |f: fn(&StepMetrics) -> f64| inside.iter().map(|m| f(m)).sum::<f64>() / inside.len() as f64;
    Some(TrainPoint {
        fvu: mean(|m| m.fvu),
        l0: mean(|m| m.l0),
        dead_fraction: mean(|m| m.dead_fraction),
    })
}
