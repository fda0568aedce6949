//! Token rows for the analysis runs ([`crate::eval::run`],
//! [`crate::stats::run`]): a corpus packed into rows of `seq_len` tokens with
//! the model's tokenizer, held in memory (analysis runs are thousands of
//! rows, not millions), and the positions each forward pass sees under a
//! positional intervention. Resolving names (offline corpus names, hub
//! models) into files is the caller's; this module takes a corpus path.

use crate::progress::Progress;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_data::corpus::{Corpus, CorpusError};
use saelab_data::packing::{Packing, PackingError, RowPacker};
use saelab_lm::{HookPoint, LenientTokenizer, LmError, Model, PosIntervention, Positions};
use std::path::PathBuf;

/// Errors making token rows.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// Rows longer than the model's context (or empty).
    #[error("seq_len {seq_len} must be in 1..={n_ctx} (the model's context)")]
    SeqLen { seq_len: usize, n_ctx: usize },
    /// No rows per forward pass.
    #[error("batch_rows must be ≥ 1")]
    BatchRows,
    /// The model has no tokenizer.
    #[error(transparent)]
    Lm(#[from] LmError),
    /// Opening or reading the corpus (the error names the file).
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// Packing rejected the row length.
    #[error(transparent)]
    Packing(#[from] PackingError),
    /// The tokenizer failed on a document.
    #[error("{path}: tokenizer failed: {msg}")]
    Tokenize { path: PathBuf, msg: String },
    /// Not even one row.
    #[error("{path}: the corpus gives no full row of {seq_len} tokens")]
    NoRows { path: PathBuf, seq_len: usize },
}

/// Where analysis rows come from and how they are fed to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct RowsConfig {
    /// Corpus file or folder (.txt, .jsonl, .parquet), already resolved.
    pub corpus: PathBuf,
    /// The name outputs record for the corpus (e.g. `wiki`).
    pub dataset: String,
    /// Text field of .jsonl / .parquet corpora.
    pub text_field: String,
    /// Tokens per row.
    pub seq_len: usize,
    /// Row packing (`bos_rows` for the study's analysis rows).
    pub packing: Packing,
    /// Rows per forward pass.
    pub batch_rows: usize,
    /// Positional intervention of every forward pass.
    pub pos_intervention: PosIntervention,
    /// Seed of the shuffle intervention (and of sampling that follows it).
    pub seed: u64,
}

/// Up to `rows` × `seq_len` token ids, row-major; fewer rows if the corpus
/// ends (noted through `progress`; an error if it yields none).
pub fn token_rows(
    model: &Model,
    cfg: &RowsConfig,
    rows: usize,
    progress: &dyn Progress,
) -> Result<Vec<u32>, RowsError> {
    let seq = cfg.seq_len;
    if seq == 0 || seq > model.info.n_ctx {
        return Err(RowsError::SeqLen {
            seq_len: seq,
            n_ctx: model.info.n_ctx,
        });
    }
    if cfg.batch_rows == 0 {
        return Err(RowsError::BatchRows);
    }
    let tokenizer = model.tokenizer()?;
    let path = &cfg.corpus;
    let corpus = Corpus::open(path)?.with_text_field(&cfg.text_field);
    // The packer wants an infallible tokenizer: the first failure is
    // reported after the rows are read.
    let lenient = LenientTokenizer::new(tokenizer);
    let packer = RowPacker::new(cfg.packing, seq, tokenizer.bos, tokenizer.eos)?;
    let mut out = Vec::with_capacity(rows * seq);
    for r in packer
        .rows(corpus.documents(), |t| lenient.encode(t))
        .take(rows)
    {
        out.extend(r?);
    }
    if let Some(msg) = lenient.take_error() {
        return Err(RowsError::Tokenize {
            path: path.clone(),
            msg,
        });
    }
    let got = out.len() / seq;
    if got == 0 {
        return Err(RowsError::NoRows {
            path: path.clone(),
            seq_len: seq,
        });
    }
    if got < rows {
        progress.note(&format!(
            "{}: corpus exhausted after {got} of {rows} rows",
            path.display()
        ));
    }
    Ok(out)
}

/// Positions of forward pass `batch_index`: the same seeded permutation
/// stream as `saelab harvest` (ChaCha8 seeded by `seed`, stream = batch
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

/// The distinct hooks of `hooks`, shallowest first (one read each per pass).
pub fn distinct_hooks(hooks: impl IntoIterator<Item = HookPoint>) -> Vec<HookPoint> {
    let mut hooks: Vec<HookPoint> = hooks.into_iter().collect();
    hooks.sort_by_key(|h| h.order());
    hooks.dedup();
    hooks
}
