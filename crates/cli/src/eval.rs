//! `saelab eval`: how good SAEs are on a model and corpus. Per batch of
//! rows: one clean pass reads every hook the SAEs need and gives the clean
//! logits; one zero-ablation pass per hook; one spliced pass per SAE (the
//! reconstruction replaces the residual at its hook). Reconstruction
//! metrics, CE / ΔCE / CE recovered / KL, per-position curves, SVG plots.

use crate::rows::{self, token_rows, RowArgs};
use crate::saes;
use anyhow::{bail, Context, Result};
use saelab_analysis::eval::{
    center_rows, CeAccumulator, EvalReport, ReconAccumulator, ReconConfig,
};
use saelab_lm::ops::next_token_ce;
use saelab_lm::{ForwardSpec, Splice};
use saelab_report::{Figure, Panel, Series};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// SAE directory (ours, SAELens, sparsify); repeat for several.
    #[arg(long = "sae", required = true)]
    pub saes: Vec<PathBuf>,
    /// Model: `smollm2-135m` (offline default), a .gguf file, an HF folder, or a hub name.
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Tokens to evaluate (rounded up to whole rows).
    #[arg(long, default_value_t = 16_384)]
    pub tokens: u64,
    /// Hook point for every SAE (default: each SAE's config).
    #[arg(long)]
    pub hook: Option<String>,
    /// Centre residual rows before encoding (SAELens center_writing_weights);
    /// default: what the SAE's cfg.json says, else off.
    #[arg(long)]
    pub center_writing_weights: Option<bool>,
    /// Leave position 0 (BOS) out of the aggregate reconstruction metrics.
    #[arg(long)]
    pub skip_bos: bool,
    /// Keep the clean residual at position 0 in the spliced pass (SAELens
    /// `exclude_special_tokens_from_reconstruction`): BOS residuals are
    /// outliers whose reconstruction error otherwise reaches every later token.
    #[arg(long)]
    pub splice_keep_bos: bool,
    /// Output folder: summary.json/csv, one sub-folder per SAE, plots.
    #[arg(long)]
    pub out: PathBuf,
}

struct Acc {
    recon: ReconAccumulator,
    ce: CeAccumulator,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let pos = rows::pos_intervention(&a.rows)?;
    let model = rows::load_model(&a.model, a.rows.precision)?;
    let saes = saes::load(&a.saes, a.hook.as_deref(), a.center_writing_weights, &model)?;
    let seq = a.rows.seq_len;
    if seq < 2 {
        bail!("--seq-len must be ≥ 2 (CE predicts the next token)");
    }
    let want_rows = a.tokens.div_ceil(seq as u64).max(1) as usize;
    let tokens = token_rows(&model, &a.rows, want_rows)?;
    let n_rows = tokens.len() / seq;
    let vocab = model.info.vocab_size;
    let hooks = rows::distinct_hooks(&saes);
    let mut accs: Vec<Acc> = saes
        .iter()
        .map(|s| {
            Ok(Acc {
                recon: ReconAccumulator::new(
                    s.sae.config().d_in,
                    s.sae.config().d_sae,
                    ReconConfig {
                        seq_len: Some(seq),
                        skip_position0: a.skip_bos,
                    },
                )?,
                ce: CeAccumulator::new(seq)?,
            })
        })
        .collect::<Result<_>>()?;

    let br = a.rows.batch_rows.max(1);
    let passes = 1 + hooks.len() + saes.len();
    eprintln!(
        "eval: {} SAE(s) at {} hook(s) on {n_rows} rows × {seq} tokens of {} ({passes} model passes per batch)",
        saes.len(),
        hooks.len(),
        a.rows.dataset
    );
    let bar = rows::token_bar("eval", (n_rows * seq) as u64);
    let started = std::time::Instant::now();
    for (bi, chunk) in tokens.chunks(br * seq).enumerate() {
        let b = chunk.len() / seq;
        // Same permutation stream as `saelab harvest` (keyed by batch index).
        let positions = rows::batch_positions(pos, a.rows.seed, bi, seq);
        let mut clean_spec = ForwardSpec::reads(&hooks);
        clean_spec.logits = true;
        clean_spec.positions = positions.clone();
        let clean = model
            .forward(chunk, b, seq, &mut clean_spec)
            .with_context(|| format!("clean pass, batch {bi}"))?;
        let clean_logits = clean.logits.as_deref().context("no logits")?;
        let ce_clean = next_token_ce(clean_logits, chunk, b, seq, vocab);
        let mut ce_zero = Vec::new();
        for &h in &hooks {
            let mut zero =
                |x: &mut [f32], _rows: usize, _d: usize| -> std::result::Result<(), String> {
                    x.fill(0.0);
                    Ok(())
                };
            let mut spec = ForwardSpec {
                reads: vec![],
                splice: Some(Splice {
                    hook: h,
                    f: &mut zero,
                }),
                logits: true,
                positions: positions.clone(),
            };
            let o = model
                .forward(chunk, b, seq, &mut spec)
                .with_context(|| format!("zero-ablation pass at {h}, batch {bi}"))?;
            let lg = o.logits.as_deref().context("no logits")?;
            ce_zero.push((h, next_token_ce(lg, chunk, b, seq, vocab)));
        }
        for (s, acc) in saes.iter().zip(accs.iter_mut()) {
            let x_raw = clean
                .hook(s.hook)
                .context("hook missing from the clean pass")?;
            let mut x = x_raw.to_vec();
            if s.center {
                center_rows(&mut x, s.sae.config().d_in);
            }
            let (xt, norm) = s.sae.preprocess(&x);
            let codes = s.sae.encode_normalized(&xt);
            let mut x_hat = s.sae.decode(&codes, norm.as_ref())?;
            acc.recon.push(&x, &x_hat, &codes)?;
            if s.center {
                // Back to the uncentred model's coordinates: the removed
                // row mean is invisible to LayerNorm, so add it back only
                // to keep the spliced residual close to the clean one.
                let d = s.sae.config().d_in;
                for (xh, xr) in x_hat.chunks_mut(d).zip(x_raw.chunks(d)) {
                    let m = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    xh.iter_mut().for_each(|v| *v = (*v as f64 + m) as f32);
                }
            }
            let keep_bos = a.splice_keep_bos;
            let mut replace =
                |x: &mut [f32], _rows: usize, d: usize| -> std::result::Result<(), String> {
                    if x.len() != x_hat.len() {
                        return Err(format!(
                            "splice got {} values, expected {}",
                            x.len(),
                            x_hat.len()
                        ));
                    }
                    for (r, (dst, src)) in x.chunks_mut(d).zip(x_hat.chunks(d)).enumerate() {
                        if !(keep_bos && r % seq == 0) {
                            dst.copy_from_slice(src);
                        }
                    }
                    Ok(())
                };
            let mut spec = ForwardSpec {
                reads: vec![],
                splice: Some(Splice {
                    hook: s.hook,
                    f: &mut replace,
                }),
                logits: true,
                positions: positions.clone(),
            };
            let o = model
                .forward(chunk, b, seq, &mut spec)
                .with_context(|| format!("spliced pass of {}, batch {bi}", s.label))?;
            let lg = o.logits.as_deref().context("no logits")?;
            let ce_sp = next_token_ce(lg, chunk, b, seq, vocab);
            let z = ce_zero
                .iter()
                .find(|(h, _)| *h == s.hook)
                .map(|(_, v)| v.as_slice());
            acc.ce.push_ce(&ce_clean, &ce_sp, z)?;
            acc.ce.push_kl_logits(clean_logits, lg, vocab)?;
        }
        bar.inc((b * seq) as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut summary = Vec::new();
    let mut csv = String::from(
        "sae,hook,d_sae,tokens,mse,normalized_mse,fvu,explained_variance,l0,dead_fraction,ce_clean,ce_spliced,ce_zero,delta_ce,ce_recovered,kl\n",
    );
    let mut fig = Figure::new(
        format!(
            "per-position CE and SAE loss ({}, {}, pos {})",
            a.model, a.rows.dataset, a.rows.pos_intervention
        ),
        2,
    );
    for (s, acc) in saes.iter().zip(&accs) {
        let rep = EvalReport::new(&s.label, Some(acc.recon.finish()), Some(acc.ce.finish()));
        let dir = a.out.join(&s.label);
        std::fs::create_dir_all(&dir)?;
        rep.write_all(&dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        let v = serde_json::to_value(&rep)?;
        let f = |path: &[&str]| -> String {
            let mut x = &v;
            for p in path {
                x = &x[*p];
            }
            match x {
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            }
        };
        let mut line = vec![
            s.label.clone(),
            s.hook.to_string(),
            s.sae.config().d_sae.to_string(),
        ];
        line.extend(SUMMARY_COLUMNS.iter().map(|(part, key)| f(&[part, key])));
        csv.push_str(&line.join(","));
        csv.push('\n');
        summary.push(
            serde_json::json!({"sae": s.label, "dir": s.dir, "hook": s.hook.to_string(),
            "centered": s.center, "recon": v["recon"].clone(), "ce": v["ce"].clone()}),
        );
        let curve = |part: &str, key: &str| indexed_curve(&v[part]["per_position"][key]);
        fig.panels.push(
            Panel::new(format!("{} · {}", s.label, s.hook), "position", "CE (nats)")
                .with(Series::line("clean", curve("ce", "ce_clean")))
                .with(Series::line("spliced", curve("ce", "ce_spliced")))
                .with(Series::line("zero-ablated", curve("ce", "ce_zero"))),
        );
        let mse = curve("recon", "mse");
        let mut p = Panel::new(format!("{} · SAE loss", s.label), "position", "MSE");
        p.y_log = true;
        fig.panels.push(p.with(Series::line("mse", mse)));
    }
    let meta = serde_json::json!({
        "schema": "saelab.eval-summary.v1",
        "model": model.info.id, "precision": model.info.precision, "dataset": a.rows.dataset, "rows": n_rows, "seq_len": seq,
        "packing": a.rows.packing, "pos_intervention": a.rows.pos_intervention, "seed": a.rows.seed,
        "skip_bos": a.skip_bos, "splice_keep_bos": a.splice_keep_bos, "seconds": secs, "saes": summary,
    });
    write_text(
        &a.out.join("summary.json"),
        &serde_json::to_string_pretty(&meta)?,
    )?;
    write_text(&a.out.join("summary.csv"), &csv)?;
    fig.write(&a.out.join("per_position.svg"))?;
    eprint!("{csv}");
    eprintln!(
        "{}: {} SAE(s), {} tokens in {secs:.1} s",
        a.out.display(),
        saes.len(),
        n_rows * seq
    );
    Ok(())
}

/// `summary.csv` columns after sae, hook, d_sae: (report part, key).
const SUMMARY_COLUMNS: [(&str, &str); 13] = [
    ("recon", "tokens"),
    ("recon", "mse"),
    ("recon", "nmse"),
    ("recon", "fvu"),
    ("recon", "explained_variance"),
    ("recon", "l0"),
    ("recon", "dead_fraction"),
    ("ce", "ce_clean"),
    ("ce", "ce_spliced"),
    ("ce", "ce_zero"),
    ("ce", "delta_ce"),
    ("ce", "ce_recovered"),
    ("ce", "kl"),
];

/// (position, value) points of a JSON array, skipping nulls.
fn indexed_curve(v: &serde_json::Value) -> Vec<(f64, f64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(t, y)| y.as_f64().map(|y| (t as f64, y)))
                .collect()
        })
        .unwrap_or_default()
}

/// Atomic text write (temp file + rename).
pub fn write_text(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
