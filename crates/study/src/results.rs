//! `results.json` (schema `saelab.results.v1`, documented in the README):
//! every number the study reports, each entry naming the stage that
//! produced it. Stages write their typed `result.json` here
//! ([`write_stage_result`]); [`gather`] reads them back — the one place
//! these files are written and read — and derives the study's tables.

use crate::cache::State;
use crate::exec::{Ctx, StudyError};

pub use saelab_results::{
    read, read_stage_result, write, write_stage_result, CeCurves, CorpusEntry, DirectionPair,
    EvalEntry, EvalMetrics, EvalResult, Histogram, LayerMatrix, LayerStats, MatchResult,
    PositionEntry, Results, SaeResult, SaeTraining, StageEntry, StatsResult, Table1Row, Table2Row,
    TrainEvalCell, TrainResult, UmapEntry, UmapResult, RESULTS_FILE, RESULTS_SCHEMA, STAGE_RESULT,
};

/// Gathers every complete stage's result into [`Results`].
pub fn gather(ctx: &Ctx, wall_seconds: f64) -> Result<Results, StudyError> {
    let cache = ctx.cache;
    let mut r = Results {
        schema: RESULTS_SCHEMA.into(),
        study: ctx.spec.name.clone(),
        spec: serde_json::to_value(ctx.spec).map_err(|e| StudyError::Stage {
            kind: "results".into(),
            hash: String::new(),
            message: format!("spec does not serialize: {e}"),
        })?,
        saelab_version: env!("CARGO_PKG_VERSION").into(),
        machine: crate::machine::detect(),
        wall_seconds,
        stages: Vec::new(),
        corpora: ctx
            .spec
            .corpora
            .iter()
            .map(|(n, c)| CorpusEntry {
                name: n.clone(),
                source: c.source.clone(),
                tokens: c.tokens,
                stands_for: c.stands_for.clone(),
            })
            .collect(),
        d_model: None,
        saes: Vec::new(),
        table1: Vec::new(),
        table2: Vec::new(),
        layer_matrix: None,
        matches: Vec::new(),
        train_eval: Vec::new(),
        positions: Vec::new(),
        umap: Vec::new(),
        missing: Vec::new(),
    };
    for s in &ctx.plan.stages {
        let rec = cache.record(s);
        r.stages.push(StageEntry {
            kind: s.kind.clone(),
            hash: s.hash.clone(),
            state: cache.state(s),
            dir: cache.stage_dir(s),
            seconds: rec.map(|x| x.seconds),
        });
    }
    crate::tables::fill(ctx, &mut r)?;
    Ok(r)
}

/// The work of a stage, for the table builders.
pub(crate) fn done_stages<'a>(ctx: &'a Ctx, kind: &str) -> Vec<&'a crate::plan::Stage> {
    ctx.plan
        .stages
        .iter()
        .filter(|s| s.kind == kind && ctx.cache.state(s) == State::Done)
        .collect()
}
