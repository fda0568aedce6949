//! Token rows for analysis commands (`eval`, `stats`): a corpus packed into
//! `rows` rows of `seq_len` tokens with the model's tokenizer, held in
//! memory (analysis runs are thousands of rows, not millions).

use crate::resolve;
use crate::saes::LoadedSae;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_data::corpus::Corpus;
use saelab_data::packing::{Packing, RowPacker};
use saelab_lm::{HookPoint, Model, PosIntervention, Positions, Precision};
use std::cell::RefCell;

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
    if precision == Precision::Bf16 && !saelab_lm::bf16::bf16_available() {
        eprintln!(
            "warning: this CPU has no AVX512_BF16; --precision bf16 uses a slow portable kernel \
             (same numbers)"
        );
    }
    model.set_precision(precision);
    Ok(model)
}

/// `rows` × `seq_len` token ids, row-major; fewer rows if the corpus ends
/// (an error if it yields none).
pub fn token_rows(model: &Model, a: &RowArgs, rows: usize) -> Result<Vec<u32>> {
    if a.seq_len == 0 || a.seq_len > model.info.n_ctx {
        bail!(
            "--seq-len {} must be in 1..={} (the model's context)",
            a.seq_len,
            model.info.n_ctx
        );
    }
    if a.batch_rows == 0 {
        bail!("--batch-rows must be ≥ 1");
    }
    let packing: Packing = a
        .packing
        .parse()
        .map_err(|e| anyhow::anyhow!("--packing: {e}"))?;
    let tokenizer = model.tokenizer()?;
    let path = resolve::corpus(&a.dataset)?;
    let corpus = Corpus::open(&path)?.with_text_field(&a.text_field);
    let tok_err: RefCell<Option<String>> = RefCell::new(None);
    let tokenize = |text: &str| match tokenizer.encode(text) {
        Ok(ids) => ids,
        Err(e) => {
            tok_err.borrow_mut().get_or_insert(e.to_string());
            Vec::new()
        }
    };
    let packer = RowPacker::new(packing, a.seq_len, tokenizer.bos, tokenizer.eos)?;
    let mut out = Vec::with_capacity(rows * a.seq_len);
    for r in packer.rows(corpus.documents(), tokenize).take(rows) {
        out.extend(r.with_context(|| format!("reading {}", path.display()))?);
    }
    if let Some(e) = tok_err.borrow().as_ref() {
        bail!("{}: tokenizer failed: {e}", path.display());
    }
    let got = out.len() / a.seq_len;
    if got == 0 {
        bail!(
            "{}: the corpus gives no full row of {} tokens",
            path.display(),
            a.seq_len
        );
    }
    if got < rows {
        eprintln!(
            "{}: corpus exhausted after {got} of {rows} rows",
            path.display()
        );
    }
    Ok(out)
}

/// Parses `--pos-intervention`.
pub fn pos_intervention(a: &RowArgs) -> Result<PosIntervention> {
    a.pos_intervention
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--pos-intervention: {e}"))
}

/// Positions of forward pass `batch_index`: the same seeded permutation
/// stream as `saelab harvest` (ChaCha8 seeded by --seed, stream = batch
/// index), so analysis runs see the positions the training store saw.
pub fn batch_positions(
    pos: PosIntervention,
    seed: u64,
    batch_index: usize,
    seq: usize,
) -> Positions {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(batch_index as u64);
    pos.positions(seq, &mut rng)
}

/// The distinct hooks of `saes`, shallowest first (one read each per pass).
pub fn distinct_hooks(saes: &[LoadedSae]) -> Vec<HookPoint> {
    let mut hooks: Vec<HookPoint> = saes.iter().map(|s| s.hook).collect();
    hooks.sort_by_key(|h| h.order());
    hooks.dedup();
    hooks
}

/// A progress bar over `tokens` with rate and ETA.
pub fn token_bar(what: &str, tokens: u64) -> ProgressBar {
    let bar = ProgressBar::new(tokens);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} tokens  {{per_sec}}  ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
