//! `saelab stats`: how SAE features fire across token positions and
//! features (SPEC §4; the study's §4.1 figures). Flags →
//! `saelab_analysis::stats::run` → its files and the seven figures of
//! `saelab_report::recipes::stats`; the run itself is the library's.

use crate::rows::{self, RowArgs, TokenBar};
use anyhow::{bail, Context, Result};
use saelab_analysis::load_saes;
use saelab_analysis::stats::{self, DecileConfig, StatsConfig, StatsRunConfig};
use saelab_report::recipes;
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
    /// Moving-average window over positions (≥ 1; 1 = no smoothing).
    #[arg(long, default_value_t = 16)]
    pub ma_window: usize,
    /// Output folder: one sub-folder per SAE, plots at the top.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &StatsArgs) -> Result<()> {
    if a.n_rows == 0 {
        bail!("--n-rows must be ≥ 1");
    }
    if a.ma_window == 0 {
        bail!("--ma-window must be ≥ 1 (1 = no smoothing)");
    }
    // Two runs into one folder would overwrite each other's files.
    let _lock = saelab_fsio::DirLock::acquire(&a.out)?;
    let rows = rows::rows_config(&a.rows)?;
    let model = rows::load_model(&a.model, a.rows.precision)?;
    let saes = load_saes(&a.saes, a.hook.as_deref(), a.center_writing_weights, &model)?;
    let cfg = StatsRunConfig {
        stats: StatsConfig {
            ma_window: a.ma_window,
            deciles: DecileConfig {
                memory_budget_bytes: a.decile_budget_mb << 20,
                seed: rows.seed,
                ..DecileConfig::default()
            },
            ..StatsConfig::default()
        },
        rows,
        model_name: a.model.clone(),
        n_rows: a.n_rows,
    };
    let output = stats::run(&model, &saes, &cfg, &TokenBar::new("stats"))?;
    stats::write(&a.out, &output).with_context(|| format!("writing {}", a.out.display()))?;
    recipes::stats::write(&a.out, &output)?;
    eprintln!(
        "{}: {} SAE(s), {} tokens in {:.1} s",
        a.out.display(),
        output.saes.len(),
        output.rows * output.seq_len,
        output.seconds
    );
    Ok(())
}
