//! The harvest: run a model over a corpus and write the residual stream at
//! the requested hook points into an activation store
//! ([`saelab_data::store`]), resuming a store that was cut off and never
//! rewriting a finished one. `saelab harvest` and the study runner both call
//! [`run`]; model loading and name resolution stay with the caller.
//!
//! Determinism: the token rows depend only on the corpus, tokenizer and
//! packing; the shuffle intervention draws one permutation per forward pass
//! from a ChaCha8 stream keyed by the batch index, so a resumed harvest
//! writes the same bytes as an uninterrupted one.

mod config;
mod error;
#[cfg(test)]
mod tests;

pub use config::HarvestConfig;
pub use error::HarvestError;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_data::corpus::{Corpus, CorpusError};
use saelab_data::packing::RowPacker;
use saelab_data::store::{StoreError, StoreManifest, StoreWriter};
use saelab_fsio::DirLock;
use saelab_lm::{ForwardSpec, HookPoint, LenientTokenizer, Model};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What [`run`] reports while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarvestProgress {
    /// An incomplete store was resumed: its `rows` are skipped, not redone.
    Resumed { rows: u64, tokens: u64 },
    /// After each forward pass: rows and tokens accepted so far (earlier
    /// runs included).
    Stored {
        rows: u64,
        tokens: u64,
        target_rows: Option<u64>,
    },
    /// The corpus ran out after `rows` rows (before `target_rows`, if set).
    CorpusExhausted {
        rows: u64,
        tokens: u64,
        target_rows: Option<u64>,
    },
}

/// The outcome of [`run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarvestSummary {
    /// The store folder.
    pub store: PathBuf,
    /// The store was already complete with this very config: nothing done.
    pub already_complete: bool,
    /// Rows found stored when the run began (0 for a fresh store).
    pub resumed_rows: u64,
    /// Rows, tokens and shards in the finished store.
    pub rows: u64,
    pub tokens: u64,
    pub shards: usize,
    /// Rows and tokens harvested by this run.
    pub rows_this_run: u64,
    pub tokens_this_run: u64,
    /// Wall time of this run.
    pub seconds: f64,
    /// The corpus ended before the target (or, without one, mid-batch).
    pub corpus_exhausted: bool,
    /// Input that was changed on the way in, this run: documents cut at
    /// the packing's per-document token limit, invalid UTF-8 sequences
    /// replaced by U+FFFD (and the files holding them).
    #[serde(default)]
    pub documents_truncated: u64,
    #[serde(default)]
    pub invalid_utf8_sequences: u64,
    #[serde(default)]
    pub lossy_files: Vec<PathBuf>,
}

/// Harvests `cfg` from `model` (loaded by the caller in the precision it
/// wants; recorded) over the corpus at `corpus` into the store folder `out`.
/// The folder is locked ([`DirLock`]) for the whole run. Setting `stop`
/// ends the run after the current forward pass with
/// [`HarvestError::Stopped`], leaving a resumable store.
pub fn run(
    model: &Model,
    corpus: &Path,
    cfg: &HarvestConfig,
    out: &Path,
    progress: &dyn Fn(HarvestProgress),
    stop: &AtomicBool,
) -> Result<HarvestSummary, HarvestError> {
    let started = Instant::now();
    cfg.validate(model)?;
    let tokenizer = model
        .tokenizer()
        .map_err(|e| HarvestError::model(model, e))?;
    let corpus = Corpus::open(corpus)?.with_text_field(&cfg.text_field);
    let spec = cfg.store_spec(model, tokenizer, &corpus)?;
    let _lock = DirLock::acquire(out)?;
    let writer = match StoreWriter::create_or_resume(out, spec) {
        Ok(w) => w,
        Err(StoreError::AlreadyComplete(_)) => {
            let m = StoreManifest::load(out)?;
            return Ok(summary(out, &m, m.rows, 0, false, started, true));
        }
        Err(e) => return Err(e.into()),
    };
    let skip = writer.rows_done();
    let seq = cfg.seq_len as u64;
    if writer.is_resumed() {
        progress(HarvestProgress::Resumed {
            rows: skip,
            tokens: skip * seq,
        });
    }

    let lenient = LenientTokenizer::new(tokenizer);
    let packer = row_packer(cfg, tokenizer)?;
    let mut rows = packer.rows(corpus.documents(), |t: &str| lenient.encode(t));
    skip_rows(&mut rows, skip, corpus.path())?;

    let mut h = Harvest {
        model,
        cfg,
        out,
        corpus: corpus.path(),
        writer,
        done: skip,
        exhausted: false,
    };
    h.run_batches(&mut rows, &lenient, progress, stop)?;
    let Harvest {
        writer, exhausted, ..
    } = h;
    let m = writer.finish()?;
    let mut s = summary(out, &m, skip, m.rows - skip, exhausted, started, false);
    s.documents_truncated = rows.packer().truncated_documents();
    s.invalid_utf8_sequences = rows.documents().stats().invalid_utf8_sequences;
    s.lossy_files = rows
        .documents()
        .lossy_files()
        .iter()
        .map(|f| f.path.clone())
        .collect();
    Ok(s)
}

/// The row packer of `cfg` (the harvest's and a streamed run's).
pub(crate) fn row_packer(
    cfg: &HarvestConfig,
    tokenizer: &saelab_lm::Tokenizer,
) -> Result<RowPacker, HarvestError> {
    RowPacker::new(cfg.packing, cfg.seq_len, tokenizer.bos, tokenizer.eos).map_err(|e| {
        HarvestError::Config {
            field: "seq_len",
            value: cfg.seq_len.to_string(),
            msg: e.to_string(),
        }
    })
}

fn summary(
    out: &Path,
    m: &StoreManifest,
    resumed_rows: u64,
    rows_this_run: u64,
    corpus_exhausted: bool,
    started: Instant,
    already_complete: bool,
) -> HarvestSummary {
    HarvestSummary {
        store: out.to_path_buf(),
        already_complete,
        resumed_rows,
        rows: m.rows,
        tokens: m.tokens,
        shards: m.shards.len(),
        rows_this_run,
        tokens_this_run: rows_this_run * m.spec.seq_len as u64,
        seconds: started.elapsed().as_secs_f64(),
        corpus_exhausted,
        documents_truncated: 0,
        invalid_utf8_sequences: 0,
        lossy_files: Vec::new(),
    }
}

/// Pulls the `skip` rows the store already holds off the row sequence.
fn skip_rows<I>(rows: &mut I, skip: u64, corpus: &Path) -> Result<(), HarvestError>
where
    I: Iterator<Item = Result<Vec<u32>, CorpusError>>,
{
    for _ in 0..skip {
        match rows.next() {
            Some(r) => {
                r?;
            }
            None => {
                return Err(HarvestError::CorpusShort {
                    corpus: corpus.to_path_buf(),
                    rows: skip,
                })
            }
        }
    }
    Ok(())
}

/// Up to `want` rows, concatenated, and how many there are (fewer at the
/// end of the corpus).
fn next_batch<I>(
    rows: &mut I,
    want: usize,
    seq_len: usize,
) -> Result<(Vec<u32>, usize), HarvestError>
where
    I: Iterator<Item = Result<Vec<u32>, CorpusError>>,
{
    let mut batch = Vec::with_capacity(want * seq_len);
    let mut n = 0;
    while n < want {
        match rows.next() {
            Some(r) => {
                batch.extend(r?);
                n += 1;
            }
            None => break,
        }
    }
    Ok((batch, n))
}

/// The state of the batch loop.
struct Harvest<'a> {
    model: &'a Model,
    cfg: &'a HarvestConfig,
    out: &'a Path,
    corpus: &'a Path,
    writer: StoreWriter,
    /// Rows accepted so far (earlier runs included): the global index of
    /// the next row.
    done: u64,
    exhausted: bool,
}

impl Harvest<'_> {
    /// Forward passes until the target is reached or the corpus ends.
    fn run_batches<I>(
        &mut self,
        rows: &mut I,
        lenient: &LenientTokenizer,
        progress: &dyn Fn(HarvestProgress),
        stop: &AtomicBool,
    ) -> Result<(), HarvestError>
    where
        I: Iterator<Item = Result<Vec<u32>, CorpusError>>,
    {
        let (batch_rows, seq) = (self.cfg.batch_rows, self.cfg.seq_len);
        let target = self.cfg.target_rows();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(HarvestError::Stopped {
                    store: self.out.to_path_buf(),
                    rows: self.writer.rows_persisted(),
                });
            }
            let want = match target {
                Some(t) => (t - self.done).min(batch_rows as u64) as usize,
                None => batch_rows,
            };
            if want == 0 {
                return Ok(());
            }
            let (batch, n) = next_batch(rows, want, seq)?;
            if let Some(msg) = lenient.take_error() {
                return Err(HarvestError::Tokenizer {
                    corpus: self.corpus.to_path_buf(),
                    msg,
                });
            }
            if n > 0 {
                self.harvest_batch(&batch, n)?;
                progress(HarvestProgress::Stored {
                    rows: self.done,
                    tokens: self.done * seq as u64,
                    target_rows: target,
                });
            }
            // An empty batch is the normal end of an open-ended harvest.
            if n < want && (n > 0 || target.is_some()) {
                self.exhausted = true;
                progress(HarvestProgress::CorpusExhausted {
                    rows: self.done,
                    tokens: self.done * seq as u64,
                    target_rows: target,
                });
            }
            if n < want {
                return Ok(());
            }
        }
    }

    /// One forward pass over `n` rows; the activations are checked to be
    /// finite before any of them reaches the store.
    fn harvest_batch(&mut self, batch: &[u32], n: usize) -> Result<(), HarvestError> {
        let acts = forward_rows(self.model, self.cfg, batch, n, self.done, self.out)?;
        let refs: Vec<&[f32]> = acts.iter().map(Vec::as_slice).collect();
        self.writer.push_rows(batch, &refs)?;
        self.done += n as u64;
        Ok(())
    }
}

/// The activations at every hook of `cfg` of one forward pass over the `n`
/// rows `tokens`, whose first row is row `first_row` of the harvest (it
/// keys the shuffle intervention's permutation, so a resumed harvest or a
/// streamed run draws the same ones), checked finite (an error names the
/// model, hook, global row and `dest`).
pub(crate) fn forward_rows(
    model: &Model,
    cfg: &HarvestConfig,
    tokens: &[u32],
    n: usize,
    first_row: u64,
    dest: &Path,
) -> Result<Vec<Vec<f32>>, HarvestError> {
    let batch_index = first_row / cfg.batch_rows as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(batch_index);
    let mut fspec = ForwardSpec::reads(&cfg.hooks);
    fspec.positions = cfg.pos_intervention.positions(cfg.seq_len, &mut rng);
    let model_id = || model.info.id.clone();
    let mut out = model
        .forward(tokens, n, cfg.seq_len, &mut fspec)
        .map_err(|err| HarvestError::Forward {
            model: model_id(),
            batch: batch_index,
            err: Box::new(err),
        })?;
    let mut acts = Vec::with_capacity(cfg.hooks.len());
    for &h in &cfg.hooks {
        let a = out.take_hook(h).ok_or_else(|| HarvestError::MissingHook {
            model: model_id(),
            hook: h.to_string(),
        })?;
        check_finite(model, cfg, h, &a, first_row, dest)?;
        acts.push(a);
    }
    Ok(acts)
}

/// A NaN or infinity names the model, hook and global row.
fn check_finite(
    model: &Model,
    cfg: &HarvestConfig,
    hook: HookPoint,
    acts: &[f32],
    first_row: u64,
    dest: &Path,
) -> Result<(), HarvestError> {
    let Some(i) = acts.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let per_row = cfg.seq_len * model.info.d_model;
    Err(HarvestError::NonFinite {
        model: model.info.id.clone(),
        hook: hook.to_string(),
        row: first_row + (i / per_row) as u64,
        position: (i % per_row) / model.info.d_model,
        value: acts[i],
        store: dest.to_path_buf(),
    })
}
