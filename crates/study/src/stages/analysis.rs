//! The eval and stats stages: one model pass per batch serves every SAE,
//! through `saelab_analysis::{eval, stats}::run` (what `saelab eval` and
//! `saelab stats` call). Eval gives the train × eval matrix; stats gives
//! per-position and per-feature statistics per layer under one
//! intervention, plus CE per position with each layer's SAE spliced in.

use super::{corpus_path, load_model, StageError};
use crate::exec::Ctx;
use crate::plan::{EvalWork, SaeRef, StatsWork};
use crate::results::{
    write_stage_result, CeCurves, EvalEntry, EvalMetrics, EvalResult, LayerStats, StatsResult,
};
use saelab_analysis::eval::{EvalConfig, SaeEval};
use saelab_analysis::stats::run::StatsRunConfig;
use saelab_analysis::stats::StatsConfig;
use saelab_analysis::{load_saes, LoadedSae, Progress, RowsConfig};
use saelab_data::packing::Packing;
use saelab_lm::{Model, PosIntervention};
use std::path::Path;

/// Token progress of an analysis shown on the stage bar.
struct Tokens<'a, 'b> {
    ctx: &'a Ctx<'b>,
    total: std::cell::Cell<u64>,
    done: std::cell::Cell<u64>,
}

impl<'a, 'b> Tokens<'a, 'b> {
    fn new(ctx: &'a Ctx<'b>) -> Self {
        Tokens {
            ctx,
            total: 0.into(),
            done: 0.into(),
        }
    }
}

impl Progress for Tokens<'_, '_> {
    fn start(&self, tokens: u64) {
        self.total.set(tokens);
    }
    fn advance(&self, tokens: u64) {
        self.done.set(self.done.get() + tokens);
        self.ctx
            .progress
            .stage_progress(self.done.get(), self.total.get(), "tokens");
    }
}

fn load(ctx: &Ctx, model: &Model, refs: &[SaeRef]) -> Result<Vec<LoadedSae>, StageError> {
    let dirs: Vec<_> = refs
        .iter()
        .map(|r| ctx.cache.sae_dir(&r.train_stage, &r.name))
        .collect();
    load_saes(&dirs, None, None, model).map_err(StageError::msg)
}

#[allow(clippy::too_many_arguments)]
fn rows(
    source: &str,
    corpus: &str,
    text_field: &str,
    seq_len: usize,
    batch_rows: usize,
    intervention: &str,
    seed: u64,
) -> Result<RowsConfig, StageError> {
    Ok(RowsConfig {
        corpus: corpus_path(source)?,
        dataset: corpus.to_string(),
        text_field: text_field.to_string(),
        seq_len,
        packing: Packing::BosRows,
        batch_rows,
        pos_intervention: intervention
            .parse::<PosIntervention>()
            .map_err(StageError::msg)?,
        seed,
    })
}

fn stop_check(ctx: &Ctx) -> Result<(), StageError> {
    if ctx.stop.load(std::sync::atomic::Ordering::SeqCst) {
        Err(StageError::Stopped)
    } else {
        Ok(())
    }
}

pub fn eval(ctx: &Ctx, w: &EvalWork, dir: &Path) -> Result<Vec<String>, StageError> {
    stop_check(ctx)?;
    let model = load_model(&w.model, &w.precision)?;
    let saes = load(ctx, &model, &w.saes)?;
    let cfg = EvalConfig {
        rows: rows(
            &w.source,
            &w.corpus,
            &w.text_field,
            w.seq_len,
            w.batch_rows,
            &w.intervention,
            w.seed,
        )?,
        model_name: w.model.clone(),
        tokens: w.tokens,
        skip_bos: false,
        splice_keep_bos: w.splice_keep_bos,
    };
    let out = saelab_analysis::eval::run(&model, &saes, &cfg, &Tokens::new(ctx))
        .map_err(StageError::msg)?;
    saelab_analysis::eval::write(dir, &out).map_err(StageError::msg)?;
    let result = EvalResult {
        corpus: w.corpus.clone(),
        intervention: w.intervention.clone(),
        tokens: (out.rows * out.seq_len) as u64,
        saes: w
            .saes
            .iter()
            .zip(&out.saes)
            .map(|(r, e)| EvalEntry {
                id: r.id.clone(),
                metrics: metrics(e),
                ce_per_position: ce_curves(e),
            })
            .collect(),
    };
    write_stage_result(dir, &result).map_err(StageError::msg)?;
    Ok(vec![
        "summary.json".into(),
        "summary.csv".into(),
        crate::results::STAGE_RESULT.into(),
    ])
}

fn metrics(e: &SaeEval) -> EvalMetrics {
    let mut m = EvalMetrics::default();
    if let Some(r) = &e.report.recon {
        m.mse = r.mse;
        m.normalized_mse = r.nmse.unwrap_or(f64::NAN);
        m.fvu = r.fvu.unwrap_or(f64::NAN);
        m.explained_variance = r.explained_variance.unwrap_or(f64::NAN);
        m.l0 = r.l0;
        m.dead_fraction = r.dead_fraction;
    }
    if let Some(c) = &e.report.ce {
        m.ce_clean = c.ce_clean;
        m.ce_spliced = c.ce_spliced;
        m.ce_zero = c.ce_zero.unwrap_or(f64::NAN);
        m.delta_ce = c.delta_ce;
        m.ce_recovered = c.ce_recovered;
        m.kl = c.kl.unwrap_or(f64::NAN);
    }
    m
}

fn ce_curves(e: &SaeEval) -> CeCurves {
    match &e.report.ce {
        Some(c) => CeCurves {
            clean: c.per_position.ce_clean.clone(),
            spliced: c.per_position.ce_spliced.clone(),
            zero: c.per_position.ce_zero.clone().unwrap_or_default(),
        },
        None => CeCurves::default(),
    }
}

pub fn stats(ctx: &Ctx, w: &StatsWork, dir: &Path) -> Result<Vec<String>, StageError> {
    stop_check(ctx)?;
    let model = load_model(&w.model, &w.precision)?;
    let saes = load(ctx, &model, &w.saes)?;
    let rows_cfg = rows(
        &w.source,
        &w.corpus,
        &w.text_field,
        w.seq_len,
        8,
        &w.intervention,
        w.seed,
    )?;
    let cfg = StatsRunConfig {
        rows: rows_cfg.clone(),
        model_name: w.model.clone(),
        n_rows: w.rows,
        stats: StatsConfig {
            ma_window: w.ma_window,
            ..StatsConfig::default()
        },
    };
    let out = saelab_analysis::stats::run::run(&model, &saes, &cfg, &Tokens::new(ctx))
        .map_err(StageError::msg)?;
    saelab_analysis::stats::write(dir, &out).map_err(StageError::msg)?;
    // CE per position under the same intervention, each layer's SAE spliced.
    let ce = if w.ce_per_position {
        stop_check(ctx)?;
        let ecfg = EvalConfig {
            rows: rows_cfg,
            model_name: w.model.clone(),
            tokens: (w.rows * w.seq_len) as u64,
            skip_bos: false,
            splice_keep_bos: false,
        };
        let e = saelab_analysis::eval::run(&model, &saes, &ecfg, &Tokens::new(ctx))
            .map_err(StageError::msg)?;
        saelab_analysis::eval::write(&dir.join("eval"), &e).map_err(StageError::msg)?;
        Some(e)
    } else {
        None
    };
    let layers = w
        .saes
        .iter()
        .zip(&w.layers)
        .enumerate()
        .map(|(i, (r, &layer))| {
            let s = &out.saes[i].report;
            let p = &s.summary.positions;
            LayerStats {
                id: r.id.clone(),
                layer,
                position_mean: p.mean.clone(),
                position_std: p.std.clone(),
                position_density: p.density.clone(),
                position_mean_ma: p.mean_ma_excl0.clone(),
                feature_mean: s.features.mean.clone(),
                feature_std: s.features.std.clone(),
                feature_density: s.features.density.clone(),
                deciles: if w.intervention == "none" {
                    s.deciles.excl_pos0.clone()
                } else {
                    Vec::new()
                },
                ce_per_position: ce.as_ref().map(|e| ce_curves(&e.saes[i])),
                fvu: ce
                    .as_ref()
                    .and_then(|e| e.saes[i].report.recon.as_ref())
                    .and_then(|r| r.fvu),
            }
        })
        .collect();
    let result = StatsResult {
        corpus: w.corpus.clone(),
        intervention: w.intervention.clone(),
        rows: out.rows,
        layers,
    };
    write_stage_result(dir, &result).map_err(StageError::msg)?;
    Ok(vec![
        "summary.json".into(),
        crate::results::STAGE_RESULT.into(),
    ])
}
