//! `saelab stats`: how SAE features fire across token positions and
//! features (SPEC §4; the study's §4.1 figures). One model pass per batch of
//! rows reads every hook the SAEs need; each SAE's codes stream into its
//! own accumulator, so memory does not grow with the number of rows (except
//! the exact deciles, bounded by --decile-budget-mb, beyond which a stated
//! sampling error applies). Plots put one panel per SAE (per layer when
//! given one SAE per layer).

use crate::eval::write_text;
use crate::rows::{self, token_rows, RowArgs};
use crate::saes;
use anyhow::{bail, Context, Result};
use saelab_analysis::eval::center_rows;
use saelab_analysis::stats::{ActivationStats, DecileConfig, StatsConfig, StatsReport};
use saelab_lm::ForwardSpec;
use saelab_report::{Figure, Panel, Series};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// SAE directory (ours, SAELens, sparsify); repeat for several (e.g. one per layer).
    #[arg(long = "sae", required = true)]
    pub saes: Vec<PathBuf>,
    /// Model: `smollm2-135m` (offline default), a .gguf file, an HF folder, or a hub name.
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Rows (sequences) to analyse.
    #[arg(long = "n-rows", default_value_t = 128)]
    pub n_rows: usize,
    /// Hook point for every SAE (default: each SAE's config).
    #[arg(long)]
    pub hook: Option<String>,
    /// Centre residual rows before encoding (SAELens center_writing_weights);
    /// default: what the SAE's cfg.json says, else off.
    #[arg(long)]
    pub center_writing_weights: Option<bool>,
    /// Memory for exact deciles, per SAE, in MiB; beyond it per-feature
    /// reservoir samples with a stated rank-error bound.
    #[arg(long, default_value_t = 2048)]
    pub decile_budget_mb: u64,
    /// Moving-average window over positions.
    #[arg(long, default_value_t = 16)]
    pub ma_window: usize,
    /// Output folder: one sub-folder per SAE, plots at the top.
    #[arg(long)]
    pub out: PathBuf,
}

/// Most features drawn in the per-feature decile scatter (evenly spaced by
/// median rank), to keep the SVG readable.
const DECILE_PLOT_FEATURES: usize = 1000;

pub fn run(a: &StatsArgs) -> Result<()> {
    let pos = rows::pos_intervention(&a.rows)?;
    if a.n_rows == 0 {
        bail!("--n-rows must be ≥ 1");
    }
    let model = rows::load_model(&a.model, a.rows.precision)?;
    let saes = saes::load(&a.saes, a.hook.as_deref(), a.center_writing_weights, &model)?;
    let seq = a.rows.seq_len;
    let tokens = token_rows(&model, &a.rows, a.n_rows)?;
    let n_rows = tokens.len() / seq;
    let hooks = rows::distinct_hooks(&saes);
    let cfg = StatsConfig {
        ma_window: a.ma_window.max(1),
        deciles: DecileConfig {
            memory_budget_bytes: a.decile_budget_mb << 20,
            seed: a.rows.seed,
            ..DecileConfig::default()
        },
        ..StatsConfig::default()
    };
    let mut accs: Vec<ActivationStats> = saes
        .iter()
        .map(|s| ActivationStats::new(s.sae.config().d_sae, seq, cfg.clone()))
        .collect::<std::result::Result<_, _>>()?;
    eprintln!(
        "stats: {} SAE(s) at {} hook(s) on {n_rows} rows × {seq} tokens of {}",
        saes.len(),
        hooks.len(),
        a.rows.dataset
    );
    let bar = rows::token_bar("stats", (n_rows * seq) as u64);
    let started = std::time::Instant::now();
    let br = a.rows.batch_rows.max(1);
    for (bi, chunk) in tokens.chunks(br * seq).enumerate() {
        let b = chunk.len() / seq;
        let mut spec = ForwardSpec::reads(&hooks);
        spec.positions = rows::batch_positions(pos, a.rows.seed, bi, seq);
        let o = model
            .forward(chunk, b, seq, &mut spec)
            .with_context(|| format!("forward pass, batch {bi}"))?;
        for (s, acc) in saes.iter().zip(accs.iter_mut()) {
            let mut x = o.hook(s.hook).context("hook missing")?.to_vec();
            if s.center {
                center_rows(&mut x, s.sae.config().d_in);
            }
            let codes = s.sae.encode(&x)?;
            acc.push(&codes)
                .with_context(|| format!("statistics of {}", s.label))?;
        }
        bar.inc((b * seq) as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut reports = Vec::new();
    let mut summary = Vec::new();
    for (s, acc) in saes.iter().zip(accs) {
        let mem = acc.memory_bytes();
        let rep = acc.finish();
        let dir = a.out.join(&s.label);
        std::fs::create_dir_all(&dir)?;
        rep.write_all(&dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        summary.push(serde_json::json!({
            "sae": s.label, "dir": s.dir, "hook": s.hook.to_string(), "centered": s.center,
            "memory_bytes": mem, "decile_mode": rep.summary.deciles.mode,
            "mean_excl_pos0": rep.summary.positions.excl_pos0, "all_positions": rep.summary.positions.all,
            "never_fired_excl0": rep.summary.features.never_fired_excl0,
        }));
        reports.push((format!("{} · {}", s.label, s.hook), rep));
    }
    let title = format!(
        "{} · {} · pos {} · {n_rows}×{seq}",
        a.model, a.rows.dataset, a.rows.pos_intervention
    );
    write_plots(&a.out, &title, &reports)?;
    let meta = serde_json::json!({
        "schema": "saelab.stats-summary.v1", "model": model.info.id, "precision": model.info.precision, "dataset": a.rows.dataset,
        "rows": n_rows, "seq_len": seq, "packing": a.rows.packing,
        "pos_intervention": a.rows.pos_intervention, "seed": a.rows.seed, "seconds": secs,
        "saes": summary,
    });
    write_text(
        &a.out.join("summary.json"),
        &serde_json::to_string_pretty(&meta)?,
    )?;
    eprintln!(
        "{}: {} SAE(s), {} tokens in {secs:.1} s",
        a.out.display(),
        reports.len(),
        n_rows * seq
    );
    Ok(())
}

fn indexed(v: &[f64], from: usize) -> Vec<(f64, f64)> {
    v.iter()
        .enumerate()
        .skip(from)
        .map(|(t, &y)| (t as f64, y))
        .collect()
}

/// The study's figures, one panel per SAE: mean vs position with and
/// without BOS (moving average overlaid), position mean vs std, feature
/// mean vs std and vs density, per-feature deciles, the threshold sweep.
fn write_plots(
    out: &std::path::Path,
    title: &str,
    reports: &[(String, StatsReport)],
) -> Result<()> {
    let cols = if reports.len() >= 9 {
        4
    } else {
        reports.len().clamp(1, 3)
    };
    let fig = |name: &str| Figure::new(format!("{name} — {title}"), cols);
    let (mut mean_pos, mut mean_pos_nobos, mut pos_ms) = (
        fig("mean activation vs position"),
        fig("mean activation vs position, without position 0"),
        fig("per-position mean vs std"),
    );
    let (mut feat_ms, mut feat_md, mut dec, mut sweep) = (
        fig("per-feature mean vs std (positions ≥ 1)"),
        fig("per-feature mean vs density (positions ≥ 1)"),
        fig("per-feature deciles (positions ≥ 1), features sorted by median"),
        fig("features whose median / mean is below a threshold"),
    );
    for (label, r) in reports {
        let p = &r.summary.positions;
        let ma = format!("moving avg ({})", p.ma_window);
        mean_pos.panels.push(
            Panel::new(label, "position", "mean nonzero activation")
                .with(Series::line("mean", indexed(&p.mean, 0)))
                .with(Series::line(&ma, indexed(&p.mean_ma, 0))),
        );
        mean_pos_nobos.panels.push(
            Panel::new(label, "position", "mean nonzero activation")
                .with(Series::line("mean", indexed(&p.mean, 1)))
                .with(Series::line(&ma, indexed(&p.mean_ma_excl0, 1))),
        );
        pos_ms.panels.push(
            Panel::new(label, "mean", "std").with(Series::scatter(
                "positions ≥ 1",
                p.mean
                    .iter()
                    .zip(&p.std)
                    .skip(1)
                    .map(|(&m, &s)| (m, s))
                    .collect(),
            )),
        );
        let f = &r.features;
        let fired: Vec<usize> = (0..f.count.len()).filter(|&i| f.count[i] > 0).collect();
        feat_ms
            .panels
            .push(Panel::new(label, "mean", "std").with(Series::scatter(
                "",
                fired.iter().map(|&i| (f.mean[i], f.std[i])).collect(),
            )));
        let mut pd = Panel::new(label, "mean", "density");
        pd.y_log = true;
        feat_md.panels.push(pd.with(Series::scatter(
            "",
            fired.iter().map(|&i| (f.mean[i], f.density[i])).collect(),
        )));
        let d = &r.deciles;
        let mut order: Vec<usize> = (0..d.excl_pos0.len())
            .filter(|&i| d.count_excl0[i] > 0)
            .collect();
        order.sort_by(|&x, &y| d.excl_pos0[x][4].total_cmp(&d.excl_pos0[y][4]));
        let step = order.len().div_ceil(DECILE_PLOT_FEATURES).max(1);
        let picked: Vec<(usize, usize)> = order.iter().copied().enumerate().step_by(step).collect();
        let mut dp = Panel::new(label, "feature (rank of median)", "activation");
        for (q, name) in [(0usize, "q10"), (4, "median"), (8, "q90"), (9, "max")] {
            dp.series.push(Series::scatter(
                name,
                picked
                    .iter()
                    .map(|&(rank, i)| (rank as f64, d.excl_pos0[i][q]))
                    .collect(),
            ));
        }
        dec.panels.push(dp);
        let s = &r.summary.sweep;
        sweep.panels.push(
            Panel::new(label, "threshold", "features below")
                .with(Series::line(
                    "median",
                    s.thresholds
                        .iter()
                        .zip(&s.below_median)
                        .map(|(&t, &c)| (t, c as f64))
                        .collect(),
                ))
                .with(Series::line(
                    "mean",
                    s.thresholds
                        .iter()
                        .zip(&s.below_mean)
                        .map(|(&t, &c)| (t, c as f64))
                        .collect(),
                )),
        );
    }
    for (f, name) in [
        (mean_pos, "position_mean.svg"),
        (mean_pos_nobos, "position_mean_no_bos.svg"),
        (pos_ms, "position_mean_std.svg"),
        (feat_ms, "feature_mean_std.svg"),
        (feat_md, "feature_mean_density.svg"),
        (dec, "feature_deciles.svg"),
        (sweep, "threshold_sweep.svg"),
    ] {
        f.write(&out.join(name))?;
    }
    Ok(())
}
