//! What `saelab study plan` shows: every stage with its hash, state (done /
//! partial / to run), folder, inputs and an estimated time. Estimates come
//! from rates measured on this project's machines (the units each stage
//! of the SmolLM2 study ran per second on the 2-core Xeon, f32, session 14:
//! bench/RESULTS.md), replaced by the rate of this cache's own completed
//! stages of the same kind when there are any.
//!
//! The `--json` output is [`PlanView`]; its fields are stable (documented
//! in the README): a stage has `kind`, `hash`, `state`, `dir`, `deps`,
//! `inputs`, `estimate_seconds`, and for train `saes`.

use crate::cache::{Cache, State};
use crate::plan::{Plan, Stage, Work};
use serde::{Deserialize, Serialize};

/// Schema tag of the `--json` plan.
pub const PLAN_SCHEMA: &str = "saelab.plan.v1";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanView {
    pub schema: String,
    pub study: String,
    pub cache: String,
    pub stages: Vec<StageView>,
    /// Distinct SAEs of the grid.
    pub n_saes: usize,
    /// Estimated seconds for the stages not done.
    pub estimate_seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageView {
    pub kind: String,
    pub hash: String,
    pub state: State,
    pub dir: String,
    pub deps: Vec<String>,
    pub inputs: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saes: Option<Vec<SaeView>>,
    pub estimate_seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeView {
    pub id: String,
    pub name: String,
    pub key: crate::grid::SaeKey,
}

/// Work units of a stage (the unit of its rate) and the default rate in
/// units per second.
fn units(stage: &Stage) -> (f64, f64) {
    match &stage.work {
        Work::Harvest(h) => {
            let tokens = if h.tokens == 0 { 1e6 } else { h.tokens as f64 };
            forward_units(&h.hooks, tokens)
        }
        // Units are row × latent × 576/768 per step; the SmolLM2 study's
        // TopK steps with AuxK ran 6.4e7 of them per second.
        Work::Train(t) => {
            let steps = t
                .settings
                .steps
                .or(t
                    .settings
                    .tokens
                    .map(|x| x / t.settings.batch.max(1) as u64))
                .unwrap_or(256) as f64;
            let per_step: f64 = t.saes.iter().map(|s| s.key.n as f64).sum::<f64>()
                * t.settings.batch as f64
                * 576.0
                / 768.0;
            // Streamed: the forward pass of every batch, in train units.
            let forward = t.stream.as_ref().map_or(0.0, |h| {
                let (tokens, rate) = forward_units(&h.hooks, steps * t.settings.batch as f64);
                tokens * 6.4e7 / rate
            });
            (steps * per_step + forward, 6.4e7)
        }
        // One clean, one zero-ablated and one spliced pass per SAE, with
        // logits: ≈ 800 tokens/s per pass (the SmolLM2 study).
        Work::Eval(e) => (e.tokens as f64 * (2.0 + e.saes.len() as f64), 800.0),
        Work::Stats(s) => {
            let passes = if s.ce_per_position { 3.0 } else { 1.0 };
            // ≈ 210 units/s in the SmolLM2 study (5 layers, a spliced
            // pass per layer besides the clean one).
            ((s.rows * s.seq_len) as f64 * passes, 210.0)
        }
        // kNN search plus 200–500 epochs of SGD: ≈ 1000 features/s at d 576.
        Work::Umap(u) => (u.saes.iter().map(|s| s.n as f64).sum(), 1000.0),
        // Encoder + decoder cosines and an assignment: ≈ 0.5 s per pair
        // at n 2304 (the SmolLM2 study).
        Work::Match(m) => {
            let n = (m.a.n.max(1) * m.b.n.max(1)) as f64;
            (n, 2304.0 * 2304.0 * 2.0)
        }
    }
}

/// A forward pass over `tokens` to the deepest of `hooks`: SmolLM2 in f32
/// to blocks.8 ≈ 4700 tokens/s (to blocks.20 ≈ 2000, the SmolLM2 study);
/// deeper hooks cost more.
fn forward_units(hooks: &[String], tokens: f64) -> (f64, f64) {
    let deepest = hooks
        .iter()
        .filter_map(|s| s.split('.').nth(1)?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    (tokens * (deepest + 1.0) / 9.0, 4700.0)
}

/// Work units and seconds of the stage's run, for its record.
pub fn work_units(stage: &Stage) -> f64 {
    units(stage).0
}

/// The plan with states and estimates.
pub fn view(plan: &Plan, cache: &Cache) -> PlanView {
    let mut measured: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for s in &plan.stages {
        if let Some(r) = cache.record(s) {
            let e = measured.entry(s.kind.clone()).or_default();
            e.0 += r.work_units;
            e.1 += r.seconds;
        }
    }
    let mut total = 0.0;
    let stages = plan
        .stages
        .iter()
        .map(|s| {
            let state = cache.state(s);
            let (u, default_rate) = units(s);
            let rate = match measured.get(&s.kind) {
                Some(&(w, secs)) if secs > 1.0 && w > 0.0 => w / secs,
                _ => default_rate,
            };
            let est = if state == State::Done { 0.0 } else { u / rate };
            total += est;
            StageView {
                kind: s.kind.clone(),
                hash: s.hash.clone(),
                state,
                dir: cache.stage_dir(s).display().to_string(),
                deps: s.deps.clone(),
                inputs: serde_json::to_value(&s.work).unwrap_or_default(),
                saes: match &s.work {
                    Work::Train(t) => Some(
                        t.saes
                            .iter()
                            .map(|p| SaeView {
                                id: p.id.clone(),
                                name: p.name.clone(),
                                key: p.key.clone(),
                            })
                            .collect(),
                    ),
                    _ => None,
                },
                estimate_seconds: est,
            }
        })
        .collect();
    PlanView {
        schema: PLAN_SCHEMA.into(),
        study: plan.study.clone(),
        cache: cache.root().display().to_string(),
        stages,
        n_saes: plan.saes.len(),
        estimate_seconds: total,
    }
}

/// A human table of the plan.
pub fn table(v: &PlanView) -> String {
    let mut out = format!(
        "study {}: {} stages, {} SAEs, cache {}\n",
        v.study,
        v.stages.len(),
        v.n_saes,
        v.cache
    );
    for s in &v.stages {
        let what = match &s.saes {
            Some(saes) => format!("{} SAEs", saes.len()),
            None => String::new(),
        };
        out.push_str(&format!(
            "  {:<8} {}  {:<8} {:>8}  {}\n",
            s.kind,
            crate::identity::short(&s.hash),
            s.state.to_string(),
            human_seconds(s.estimate_seconds),
            what
        ));
    }
    out.push_str(&format!(
        "estimated time for what is not done: {}\n",
        human_seconds(v.estimate_seconds)
    ));
    out
}

pub fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
