//! Flags shared by the analysis commands (`eval`, `stats`): the corpus and
//! row options turned into a library [`RowsConfig`] (names resolved to
//! files here), the model's precision, and a progress bar for the library's
//! [`Progress`] reports.

use crate::resolve;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use saelab_analysis::{Progress, RowsConfig};
use saelab_lm::{Model, Precision};
use std::sync::OnceLock;

/// Corpus options shared by the analysis commands.
#[derive(clap::Args, Debug, Clone)]
pub struct RowArgs {
    /// Corpus: an offline corpus name (email, speeches, fiction, wiki, code, docs) or a
    /// .txt/.jsonl/.parquet file or folder.
    #[arg(long, default_value = "wiki")]
    pub dataset: String,
    /// Tokens per row.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Row packing: `bos_rows` (BOS at position 0 of every row, the study's
    /// analysis rows) or `concat`.
    #[arg(long, default_value = "bos_rows")]
    pub packing: String,
    /// Text field of .jsonl / .parquet corpora.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Positional intervention: none, zero or shuffle (seeded permutation per forward pass).
    #[arg(long, default_value = "none")]
    pub pos_intervention: String,
    /// Seed of the shuffle intervention.
    #[arg(long, default_value_t = 49)]
    pub seed: u64,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_rows: usize,
    /// Arithmetic of the model's dense products: f32 (default) or bf16
    /// (see `saelab harvest --help`). SAEs always run in f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

/// `--precision` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// Loads `name` (offline default, path or hub name) in `precision`,
/// warning when bf16 has no hardware support here.
pub fn load_model(name: &str, precision: PrecisionArg) -> Result<Model> {
    let mut model = crate::resolve::model(name)?;
    let precision = Precision::from(precision);
    if let Some(note) = saelab_lm::bf16::bf16_path_note().filter(|_| precision == Precision::Bf16) {
        eprintln!("warning: --precision bf16 {note}");
    }
    model.set_precision(precision);
    Ok(model)
}

/// The library's row settings from the flags: parses `--packing` and
/// `--pos-intervention`, resolves `--dataset` to a file (fetching an
/// offline corpus if needed).
pub fn rows_config(a: &RowArgs) -> Result<RowsConfig> {
    let pos_intervention = a
        .pos_intervention
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--pos-intervention: {e}"))?;
    let packing = a.packing.parse().context("--packing")?;
    Ok(RowsConfig {
        corpus: resolve::corpus(&a.dataset)?,
        dataset: a.dataset.clone(),
        text_field: a.text_field.clone(),
        seq_len: a.seq_len,
        packing,
        batch_rows: a.batch_rows,
        pos_intervention,
        seed: a.seed,
    })
}

/// Progress of a library run on stderr: notes as lines, the passes as a
/// token bar with rate and ETA.
pub struct TokenBar {
    what: &'static str,
    bar: OnceLock<ProgressBar>,
}

impl TokenBar {
    pub fn new(what: &'static str) -> Self {
        TokenBar {
            what,
            bar: OnceLock::new(),
        }
    }
}

impl Progress for TokenBar {
    fn note(&self, line: &str) {
        match self.bar.get() {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn start(&self, tokens: u64) {
        let bar = ProgressBar::new(tokens);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} tokens  {{per_sec}}  ETA {{eta}}",
                self.what
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let _ = self.bar.set(bar);
    }

    fn advance(&self, tokens: u64) {
        if let Some(b) = self.bar.get() {
            b.inc(tokens);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}
