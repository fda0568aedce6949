//! `saelab eval` as one library call. Per batch of rows: one clean pass
//! reads every hook the SAEs need and gives the clean logits; one
//! zero-ablation pass per hook; one spliced pass per SAE (its
//! reconstruction replaces the residual at its hook). Reconstruction
//! metrics, CE / ΔCE / CE recovered / KL and per-position curves stream
//! into one [`ReconAccumulator`] and one [`CeAccumulator`] per SAE.

use super::Result;
use super::{center_rows, CeAccumulator, EvalError, EvalReport, ReconAccumulator, ReconConfig};
use crate::loaded::LoadedSae;
use crate::progress::Progress;
use crate::rows::{batch_positions, distinct_hooks, token_rows, RowsConfig};
use saelab_data::packing::Packing;
use saelab_lm::ops::next_token_ce;
use saelab_lm::{ForwardSpec, HookPoint, Model, Positions, Precision, Splice};
use serde::Serialize;
use std::path::PathBuf;

/// Settings of [`run`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvalConfig {
    /// Token rows and how they are fed to the model (`seq_len` ≥ 2: CE
    /// predicts the next token).
    pub rows: RowsConfig,
    /// How figures name the model (the caller's name for it).
    pub model_name: String,
    /// Tokens to evaluate (≥ 1; rounded up to whole rows).
    pub tokens: u64,
    /// Leave position 0 (BOS) out of the aggregate reconstruction metrics.
    pub skip_bos: bool,
    /// Keep the clean residual at position 0 in the spliced pass (SAELens
    /// `exclude_special_tokens_from_reconstruction`).
    pub splice_keep_bos: bool,
}

/// One SAE's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SaeEval {
    /// The SAE's label (its output folder).
    pub label: String,
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// The hook it read and was spliced at (TransformerLens name).
    pub hook: String,
    /// Whether its inputs were row-centred.
    pub centered: bool,
    /// Dictionary size.
    pub d_sae: usize,
    /// Reconstruction and CE metrics with per-position curves and
    /// per-feature density (`eval.json`, `positions.csv`, `features.csv`).
    pub report: EvalReport,
}

/// Everything an eval run produces; [`super::write`] and the report's
/// figure recipe read only this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalOutput {
    /// The caller's name for the model (figure titles).
    pub model_name: String,
    /// The model's id.
    pub model: String,
    /// Arithmetic of the model's dense products.
    pub precision: Precision,
    /// The corpus's name.
    pub dataset: String,
    /// Rows evaluated (fewer than asked if the corpus ran out).
    pub rows: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Row packing.
    pub packing: Packing,
    /// Positional intervention (`none`, `zero`, `shuffle`).
    pub pos_intervention: String,
    /// Seed of the intervention.
    pub seed: u64,
    /// Whether position 0 was left out of the aggregate reconstruction metrics.
    pub skip_bos: bool,
    /// Whether the spliced pass kept the clean residual at position 0.
    pub splice_keep_bos: bool,
    /// Wall time of the model passes.
    pub seconds: f64,
    /// One entry per SAE, in the order given.
    pub saes: Vec<SaeEval>,
}

/// Accumulators of one SAE.
struct Acc {
    recon: ReconAccumulator,
    ce: CeAccumulator,
}

/// What every SAE of one batch shares.
struct Batch<'a> {
    tokens: &'a [u32],
    rows: usize,
    seq: usize,
    index: usize,
    positions: Positions,
}

/// Evaluates `saes` on `model` over `cfg.tokens` tokens of the corpus.
pub fn run(
    model: &Model,
    saes: &[LoadedSae],
    cfg: &EvalConfig,
    progress: &dyn Progress,
) -> Result<EvalOutput> {
    let seq = cfg.rows.seq_len;
    if cfg.tokens == 0 {
        return Err(EvalError::Config("tokens (--tokens) must be ≥ 1".into()));
    }
    if seq < 2 {
        return Err(EvalError::Config(
            "seq_len (--seq-len) must be ≥ 2 (CE predicts the next token)".into(),
        ));
    }
    let mut accs = new_accumulators(saes, cfg)?;
    let want_rows = cfg.tokens.div_ceil(seq as u64) as usize;
    let tokens = token_rows(model, &cfg.rows, want_rows, progress)?;
    let n_rows = tokens.len() / seq;
    let hooks = distinct_hooks(saes.iter().map(|s| s.hook));
    progress.note(&format!(
        "eval: {} SAE(s) at {} hook(s) on {n_rows} rows × {seq} tokens of {} ({} model passes per batch)",
        saes.len(),
        hooks.len(),
        cfg.rows.dataset,
        1 + hooks.len() + saes.len()
    ));
    progress.start((n_rows * seq) as u64);
    let started = std::time::Instant::now();
    let passes = tokens
        .chunks(cfg.rows.batch_rows * seq)
        .enumerate()
        .try_for_each(|(index, chunk)| {
            let batch = Batch {
                tokens: chunk,
                rows: chunk.len() / seq,
                seq,
                index,
                positions: batch_positions(cfg.rows.pos_intervention, cfg.rows.seed, index, seq),
            };
            eval_batch(model, saes, &mut accs, &hooks, &batch, cfg.splice_keep_bos)?;
            progress.advance(chunk.len() as u64);
            Ok::<_, EvalError>(())
        });
    progress.finish();
    passes?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(EvalOutput {
        model_name: cfg.model_name.clone(),
        model: model.info.id.clone(),
        precision: model.info.precision,
        dataset: cfg.rows.dataset.clone(),
        rows: n_rows,
        seq_len: seq,
        packing: cfg.rows.packing,
        pos_intervention: cfg.rows.pos_intervention.to_string(),
        seed: cfg.rows.seed,
        skip_bos: cfg.skip_bos,
        splice_keep_bos: cfg.splice_keep_bos,
        seconds,
        saes: saes
            .iter()
            .zip(&accs)
            .map(|(s, acc)| SaeEval {
                label: s.label.clone(),
                dir: s.dir.clone(),
                hook: s.hook.to_string(),
                centered: s.center,
                d_sae: s.sae.config().d_sae,
                report: EvalReport::new(&s.label, Some(acc.recon.finish()), Some(acc.ce.finish())),
            })
            .collect(),
    })
}

fn new_accumulators(saes: &[LoadedSae], cfg: &EvalConfig) -> Result<Vec<Acc>> {
    saes.iter()
        .map(|s| {
            Ok(Acc {
                recon: ReconAccumulator::new(
                    s.sae.config().d_in,
                    s.sae.config().d_sae,
                    ReconConfig {
                        seq_len: Some(cfg.rows.seq_len),
                        skip_position0: cfg.skip_bos,
                    },
                )?,
                ce: CeAccumulator::new(cfg.rows.seq_len)?,
            })
        })
        .collect()
}

/// The model error of pass `what`.
fn model_err(what: String) -> impl FnOnce(saelab_lm::LmError) -> EvalError {
    move |source| EvalError::Model { what, source }
}

/// One forward pass with logits; `splice` replaces the residual at a hook.
fn logits_pass(
    model: &Model,
    batch: &Batch,
    reads: &[HookPoint],
    splice: Option<Splice>,
    what: impl FnOnce() -> String,
) -> Result<saelab_lm::ForwardOutput> {
    let mut spec = ForwardSpec {
        reads: reads.to_vec(),
        splice,
        logits: true,
        positions: batch.positions.clone(),
    };
    let out = model
        .forward(batch.tokens, batch.rows, batch.seq, &mut spec)
        .map_err(model_err(what()))?;
    if out.logits.is_none() {
        return Err(EvalError::Shape("a model pass returned no logits".into()));
    }
    Ok(out)
}

fn logits(o: &saelab_lm::ForwardOutput) -> &[f32] {
    o.logits.as_deref().unwrap_or_default()
}

/// The clean pass, one zero-ablation pass per hook, one spliced pass per SAE.
fn eval_batch(
    model: &Model,
    saes: &[LoadedSae],
    accs: &mut [Acc],
    hooks: &[HookPoint],
    batch: &Batch,
    keep_bos: bool,
) -> Result<()> {
    let (b, seq, bi) = (batch.rows, batch.seq, batch.index);
    let vocab = model.info.vocab_size;
    let clean = logits_pass(model, batch, hooks, None, || {
        format!("clean pass, batch {bi}")
    })?;
    let clean_logits = logits(&clean);
    let ce_clean = next_token_ce(clean_logits, batch.tokens, b, seq, vocab);
    let mut ce_zero = Vec::new();
    for &h in hooks {
        let mut zero =
            |x: &mut [f32], _rows: usize, _d: usize| -> std::result::Result<(), String> {
                x.fill(0.0);
                Ok(())
            };
        let splice = Some(Splice {
            hook: h,
            f: &mut zero,
        });
        let o = logits_pass(model, batch, &[], splice, || {
            format!("zero-ablation pass at {h}, batch {bi}")
        })?;
        ce_zero.push((h, next_token_ce(logits(&o), batch.tokens, b, seq, vocab)));
    }
    for (s, acc) in saes.iter().zip(accs.iter_mut()) {
        let x_raw = clean.hook(s.hook).ok_or_else(|| {
            EvalError::Shape(format!("hook {} missing from the clean pass", s.hook))
        })?;
        let x_hat = reconstruct(s, x_raw, &mut acc.recon)?;
        let spliced = spliced_pass(model, batch, s, &x_hat, keep_bos)?;
        let lg = logits(&spliced);
        let ce_sp = next_token_ce(lg, batch.tokens, b, seq, vocab);
        let z = ce_zero
            .iter()
            .find(|(h, _)| *h == s.hook)
            .map(|(_, v)| v.as_slice());
        acc.ce.push_ce(&ce_clean, &ce_sp, z)?;
        acc.ce.push_kl_logits(clean_logits, lg, vocab)?;
    }
    Ok(())
}

/// Encodes and decodes the clean residual `x_raw` (centred first if the SAE
/// wants it), adds the batch to `recon`, and returns the reconstruction in
/// the model's (uncentred) coordinates.
fn reconstruct(s: &LoadedSae, x_raw: &[f32], recon: &mut ReconAccumulator) -> Result<Vec<f32>> {
    let d = s.sae.config().d_in;
    let mut x = x_raw.to_vec();
    if s.center {
        center_rows(&mut x, d);
    }
    let (xt, norm) = s.sae.preprocess(&x);
    let codes = s.sae.encode_normalized(&xt);
    let mut x_hat = s.sae.decode(&codes, norm.as_ref())?;
    recon.push(&x, &x_hat, &codes)?;
    if s.center {
        // Back to the uncentred model's coordinates: the removed row mean
        // is invisible to LayerNorm, so add it back only to keep the
        // spliced residual close to the clean one.
        for (xh, xr) in x_hat.chunks_mut(d).zip(x_raw.chunks(d)) {
            let m = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            xh.iter_mut().for_each(|v| *v = (*v as f64 + m) as f32);
        }
    }
    Ok(x_hat)
}

/// The pass with `x_hat` spliced in at the SAE's hook (position 0 kept
/// clean with `keep_bos`).
fn spliced_pass(
    model: &Model,
    batch: &Batch,
    s: &LoadedSae,
    x_hat: &[f32],
    keep_bos: bool,
) -> Result<saelab_lm::ForwardOutput> {
    let seq = batch.seq;
    let mut replace = |x: &mut [f32], _rows: usize, d: usize| -> std::result::Result<(), String> {
        if x.len() != x_hat.len() {
            return Err(format!(
                "splice got {} values, expected {}",
                x.len(),
                x_hat.len()
            ));
        }
        for (r, (dst, src)) in x.chunks_mut(d).zip(x_hat.chunks(d)).enumerate() {
            if !(keep_bos && r.is_multiple_of(seq)) {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    };
    let splice = Some(Splice {
        hook: s.hook,
        f: &mut replace,
    });
    logits_pass(model, batch, &[], splice, || {
        format!("spliced pass of {}, batch {}", s.label, batch.index)
    })
}
