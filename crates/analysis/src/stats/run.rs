//! `saelab stats` as one library call: one model pass per batch of rows
//! reads every hook the SAEs need; each SAE's codes stream into its own
//! [`ActivationStats`], so memory does not grow with the number of rows
//! (except the exact deciles, bounded by the decile budget, beyond which a
//! stated sampling error applies).

use super::{ActivationStats, Result, StatsConfig, StatsError, StatsReport};
use crate::eval::center_rows;
use crate::loaded::LoadedSae;
use crate::progress::Progress;
use crate::rows::{batch_positions, distinct_hooks, token_rows, RowsConfig};
use saelab_data::packing::Packing;
use saelab_lm::{ForwardSpec, HookPoint, Model, Precision};
use serde::Serialize;
use std::path::PathBuf;

/// Settings of [`run`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRunConfig {
    /// Token rows and how they are fed to the model.
    pub rows: RowsConfig,
    /// How figures name the model (the caller's name for it).
    pub model_name: String,
    /// Rows (sequences) to analyse (≥ 1).
    pub n_rows: usize,
    /// Settings of each SAE's accumulator (`ma_window` ≥ 1).
    pub stats: StatsConfig,
}

/// One SAE's statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SaeStats {
    /// The SAE's label (its output folder).
    pub label: String,
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// The hook it read (TransformerLens name).
    pub hook: String,
    /// Whether its inputs were row-centred.
    pub centered: bool,
    /// Bytes its accumulator held at the end.
    pub memory_bytes: u64,
    /// The statistics.
    pub report: StatsReport,
}

/// Everything a stats run produces; [`super::write`] and the report's
/// figure recipes read only this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsOutput {
    /// The caller's name for the model (figure titles).
    pub model_name: String,
    /// The model's id.
    pub model: String,
    /// Arithmetic of the model's dense products.
    pub precision: Precision,
    /// The corpus's name.
    pub dataset: String,
    /// Rows analysed (fewer than asked if the corpus ran out).
    pub rows: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Row packing.
    pub packing: Packing,
    /// Positional intervention (`none`, `zero`, `shuffle`).
    pub pos_intervention: String,
    /// Seed of the intervention and of the decile sampling.
    pub seed: u64,
    /// Wall time of the model passes.
    pub seconds: f64,
    /// One entry per SAE, in the order given.
    pub saes: Vec<SaeStats>,
}

/// Activation statistics of `saes` over `cfg.n_rows` rows of the corpus.
pub fn run(
    model: &Model,
    saes: &[LoadedSae],
    cfg: &StatsRunConfig,
    progress: &dyn Progress,
) -> Result<StatsOutput> {
    if cfg.n_rows == 0 {
        return Err(StatsError::Config("n_rows (--n-rows) must be ≥ 1".into()));
    }
    let seq = cfg.rows.seq_len;
    let mut accs: Vec<ActivationStats> = saes
        .iter()
        .map(|s| ActivationStats::new(s.sae.config().d_sae, seq, cfg.stats.clone()))
        .collect::<Result<_>>()?;
    let tokens = token_rows(model, &cfg.rows, cfg.n_rows, progress)?;
    let n_rows = tokens.len() / seq;
    let hooks = distinct_hooks(saes.iter().map(|s| s.hook));
    progress.note(&format!(
        "stats: {} SAE(s) at {} hook(s) on {n_rows} rows × {seq} tokens of {}",
        saes.len(),
        hooks.len(),
        cfg.rows.dataset
    ));
    progress.start((n_rows * seq) as u64);
    let started = std::time::Instant::now();
    let passes = tokens
        .chunks(cfg.rows.batch_rows * seq)
        .enumerate()
        .try_for_each(|(bi, chunk)| {
            stats_batch(model, saes, &mut accs, &hooks, cfg, bi, chunk)?;
            progress.advance(chunk.len() as u64);
            Ok::<_, StatsError>(())
        });
    progress.finish();
    passes?;
    let seconds = started.elapsed().as_secs_f64();
    let saes = saes
        .iter()
        .zip(accs)
        .map(|(s, acc)| SaeStats {
            label: s.label.clone(),
            dir: s.dir.clone(),
            hook: s.hook.to_string(),
            centered: s.center,
            memory_bytes: acc.memory_bytes(),
            report: acc.finish(),
        })
        .collect();
    Ok(StatsOutput {
        model_name: cfg.model_name.clone(),
        model: model.info.id.clone(),
        precision: model.info.precision,
        dataset: cfg.rows.dataset.clone(),
        rows: n_rows,
        seq_len: seq,
        packing: cfg.rows.packing,
        pos_intervention: cfg.rows.pos_intervention.to_string(),
        seed: cfg.rows.seed,
        seconds,
        saes,
    })
}

/// One forward pass over the rows of `chunk` (batch `bi`), every SAE's
/// codes into its accumulator.
fn stats_batch(
    model: &Model,
    saes: &[LoadedSae],
    accs: &mut [ActivationStats],
    hooks: &[HookPoint],
    cfg: &StatsRunConfig,
    bi: usize,
    chunk: &[u32],
) -> Result<()> {
    let seq = cfg.rows.seq_len;
    let b = chunk.len() / seq;
    let mut spec = ForwardSpec::reads(hooks);
    spec.positions = batch_positions(cfg.rows.pos_intervention, cfg.rows.seed, bi, seq);
    let o = model
        .forward(chunk, b, seq, &mut spec)
        .map_err(|source| StatsError::Model {
            what: format!("forward pass, batch {bi}"),
            source,
        })?;
    for (s, acc) in saes.iter().zip(accs.iter_mut()) {
        let sae_err = |msg: String| StatsError::Sae {
            label: s.label.clone(),
            msg,
        };
        let mut x = o
            .hook(s.hook)
            .ok_or_else(|| sae_err(format!("hook {} missing from the pass", s.hook)))?
            .to_vec();
        if s.center {
            center_rows(&mut x, s.sae.config().d_in);
        }
        let codes = s.sae.encode(&x).map_err(|e| sae_err(e.to_string()))?;
        acc.push(&codes).map_err(|e| sae_err(e.to_string()))?;
    }
    Ok(())
}
