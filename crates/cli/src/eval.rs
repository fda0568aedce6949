//! `saelab eval`: how good SAEs are on a model and corpus (reconstruction
//! metrics, CE / ΔCE / CE recovered / KL with the reconstruction spliced
//! in, per-position curves). Flags → `saelab_analysis::eval::run` → its
//! files and figure; the run itself is the library's.

use crate::rows::{self, RowArgs, TokenBar};
use anyhow::{bail, Context, Result};
use saelab_analysis::eval::{self, EvalConfig};
use saelab_analysis::load_saes;
use saelab_report::recipes;
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
    /// Tokens to evaluate (rounded up to whole rows; ≥ 1).
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

pub fn run(a: &EvalArgs) -> Result<()> {
    if a.tokens == 0 {
        bail!("--tokens must be ≥ 1 (tokens to evaluate, rounded up to whole rows)");
    }
    // Two runs into one folder would overwrite each other's files.
    let _lock = saelab_fsio::DirLock::acquire(&a.out)?;
    let rows = rows::rows_config(&a.rows)?;
    let model = rows::load_model(&a.model, a.rows.precision)?;
    let saes = load_saes(&a.saes, a.hook.as_deref(), a.center_writing_weights, &model)?;
    let cfg = EvalConfig {
        rows,
        model_name: a.model.clone(),
        tokens: a.tokens,
        skip_bos: a.skip_bos,
        splice_keep_bos: a.splice_keep_bos,
    };
    let output = eval::run(&model, &saes, &cfg, &TokenBar::new("eval"))?;
    eval::write(&a.out, &output).with_context(|| format!("writing {}", a.out.display()))?;
    recipes::eval::write(&a.out, &output)?;
    eprint!("{}", eval::summary_csv(&output));
    eprintln!(
        "{}: {} SAE(s), {} tokens in {:.1} s",
        a.out.display(),
        output.saes.len(),
        output.rows * output.seq_len,
        output.seconds
    );
    Ok(())
}
