//! Training straight from the model, without an activation store:
//! [`ModelSource`] serves hooks of a model's forward pass over a corpus to
//! `saelab_sae::sweep` (one lane per hook: several layers from one forward
//! pass, SAEs for each trained side by side, as sparsify does), and
//! [`train_streamed`] is the call behind `saelab train --dataset …`.
//!
//! The token rows are packed exactly as `saelab harvest` packs them and cut
//! into virtual shards of `rows_per_shard` rows; a shard's activations are
//! computed by forward passes of `batch_rows` rows when the shuffle
//! ([`BatchStream`], the same algorithm as for a store) first reads it, and
//! dropped after. So a streamed run sees the vectors an f32 store of the
//! same harvest config holds, in the same order: the same seed gives the
//! same weights as training from that store. With several hooks the
//! shuffle runs once over vectors that hold every hook's activation side by
//! side, so each lane gets the batches a one-hook run would. Another epoch runs the model
//! again. Resume replays the token stream position: the shuffle's state
//! depends on counts only, so only the shards still in the shuffle buffer
//! at the checkpoint are recomputed (at most ⌈buffer / shard⌉ + 1 shards:
//! keep `buffer_vectors` small when the model is slow).
//!
//! Memory: the shuffle buffer holds f32 vectors of every hook
//! (`buffer_vectors · d · 4 · hooks` bytes: 1.5 GB per hook at the default
//! 655,360 vectors and d 576), plus one computed shard (`rows_per_shard ·
//! seq_len · d · 4 · hooks`: 300 MB per hook at 1024 × 128 × 576) and the
//! corpus's token ids. Not `Send` (shards are shared through `Rc`).

use crate::harvest::{forward_rows, row_packer, HarvestConfig, HarvestError};
use crate::sources::TrainError;
use saelab_data::corpus::Corpus;
use saelab_data::store::{BatchStream, ShardProvider, ShardVectors, StoreDtype, StoreError};
use saelab_lm::{HookPoint, LenientTokenizer, Model};
use saelab_sae::sweep::{
    self, BatchSource, PlanRequest, SaePlan, SourceError, SweepProgress, SweepSettings,
    SweepSummary,
};
use saelab_sae::ExportMeta;
use serde_json::{json, Value};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The token rows of a harvest config over a corpus, packed as the harvest
/// packs them (all of them: `tokens` 0 reads the corpus to its end).
#[derive(Debug)]
pub struct TokenRows {
    /// `[rows, seq_len]` token ids.
    pub tokens: Vec<u32>,
    pub rows: u64,
    /// The store spec a harvest of the same config would write (its
    /// identity; dtype f32, what the stream serves).
    pub spec: saelab_data::store::StoreSpec,
}

/// Tokenizes and packs `corpus` for `cfg` (see [`TokenRows`]).
pub fn token_rows(
    model: &Model,
    corpus: &Path,
    cfg: &HarvestConfig,
) -> Result<TokenRows, HarvestError> {
    cfg.validate(model)?;
    let tokenizer = model
        .tokenizer()
        .map_err(|e| HarvestError::model(model, e))?;
    let corpus = Corpus::open(corpus)?.with_text_field(&cfg.text_field);
    let spec = cfg.store_spec(model, tokenizer, &corpus)?;
    let packer = row_packer(cfg, tokenizer)?;
    let lenient = LenientTokenizer::new(tokenizer);
    let target = cfg
        .target_rows()
        .map_or(usize::MAX, |t| usize::try_from(t).unwrap_or(usize::MAX));
    let mut tokens = Vec::new();
    let mut rows = 0u64;
    for row in packer
        .rows(corpus.documents(), |t| lenient.encode(t))
        .take(target)
    {
        tokens.extend(row?);
        rows += 1;
    }
    if let Some(msg) = lenient.take_error() {
        return Err(HarvestError::Tokenizer {
            corpus: corpus.path().to_path_buf(),
            msg,
        });
    }
    if rows == 0 {
        return Err(HarvestError::CorpusShort {
            corpus: corpus.path().to_path_buf(),
            rows: 1,
        });
    }
    Ok(TokenRows { tokens, rows, spec })
}

/// Shards computed by the model on demand, each vector the activations of
/// every hook of `cfg` side by side (the last shard is kept: a resume reads
/// the shard it stopped in twice).
struct ModelShards {
    model: Arc<Model>,
    cfg: HarvestConfig,
    rows: Rc<TokenRows>,
    /// Named in errors (the run's output folder).
    dest: PathBuf,
    last: Option<(usize, Rc<Vec<f32>>)>,
}

impl std::fmt::Debug for ModelShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelShards")
            .field("model", &self.model.info.id)
            .field("hooks", &self.cfg.hooks.len())
            .field("rows", &self.rows.rows)
            .finish_non_exhaustive()
    }
}

impl ModelShards {
    fn shard_range(&self, index: usize) -> Range<u64> {
        let rps = self.cfg.rows_per_shard as u64;
        let start = index as u64 * rps;
        start..(start + rps).min(self.rows.rows)
    }

    fn compute(&self, index: usize) -> Result<Vec<f32>, HarvestError> {
        let (seq, br) = (self.cfg.seq_len, self.cfg.batch_rows as u64);
        let range = self.shard_range(index);
        let d = self.model.info.d_model;
        let lanes = self.cfg.hooks.len();
        let mut out = Vec::with_capacity((range.end - range.start) as usize * seq * d * lanes);
        let mut row = range.start;
        while row < range.end {
            let n = br.min(range.end - row) as usize;
            let t = &self.rows.tokens[row as usize * seq..(row as usize + n) * seq];
            let mut acts = forward_rows(&self.model, &self.cfg, t, n, row, &self.dest)?;
            if let [one] = acts.as_mut_slice() {
                out.append(one);
            } else {
                for v in 0..n * seq {
                    for a in &acts {
                        out.extend_from_slice(&a[v * d..(v + 1) * d]);
                    }
                }
            }
            row += n as u64;
        }
        Ok(out)
    }
}

impl ShardProvider for ModelShards {
    fn num_shards(&self) -> usize {
        self.rows.rows.div_ceil(self.cfg.rows_per_shard as u64) as usize
    }
    fn rows(&self) -> u64 {
        self.rows.rows
    }
    fn shard_rows(&self, index: usize) -> usize {
        let r = self.shard_range(index);
        (r.end - r.start) as usize
    }
    fn open(&mut self, index: usize) -> Result<Box<dyn ShardVectors>, StoreError> {
        let data = match &self.last {
            Some((i, data)) if *i == index => Rc::clone(data),
            _ => {
                self.last = None; // one computed shard in memory at a time
                let data = Rc::new(
                    self.compute(index)
                        .map_err(|e| StoreError::BadStream(e.to_string()))?,
                );
                self.last = Some((index, Rc::clone(&data)));
                data
            }
        };
        Ok(Box::new(ComputedShard {
            rows: self.shard_rows(index),
            data,
        }))
    }
}

struct ComputedShard {
    rows: usize,
    data: Rc<Vec<f32>>,
}

impl ShardVectors for ComputedShard {
    fn rows(&self) -> usize {
        self.rows
    }
    fn raw(&self, elems: Range<usize>) -> Result<&[u8], StoreError> {
        let all: &[u8] = bytemuck::cast_slice(self.data.as_slice());
        all.get(elems.start * 4..elems.end * 4)
            .ok_or_else(|| StoreError::BadStream(format!("element range {elems:?} out of bounds")))
    }
}

/// Shuffled batches of hooks of a model's forward pass over a corpus, one
/// lane per hook (endless: more steps than one pass run the model over the
/// corpus again).
///
/// Its identity is the sha256 of the store spec an f32 harvest of the same
/// config would write (model weights hash, corpus content hash, packing,
/// intervention, batch and shard sizes, the hooks), the row count, the data
/// seed and the buffer.
#[derive(Debug)]
pub struct ModelSource {
    stream: BatchStream,
    hooks: Vec<HookPoint>,
    /// One batch of all lanes side by side.
    wide: Vec<f32>,
    spec_sha256: String,
    rows: u64,
    cfg: HarvestConfig,
    d: usize,
    data_seed: u64,
    buffer_vectors: usize,
}

impl ModelSource {
    /// Streams `hooks` of `model` over `corpus` packed by `cfg` (its `hooks`
    /// and `dtype` are ignored), `batch` vectors at a time shuffled with
    /// `data_seed` through `buffer_vectors`; errors name `dest`.
    pub fn open(
        model: Arc<Model>,
        corpus: &Path,
        cfg: &HarvestConfig,
        hooks: &[HookPoint],
        (batch, data_seed, buffer_vectors): (usize, u64, usize),
        dest: &Path,
    ) -> Result<ModelSource, TrainError> {
        let cfg = HarvestConfig {
            hooks: hooks.to_vec(),
            dtype: StoreDtype::F32,
            ..cfg.clone()
        };
        let rows = token_rows(&model, corpus, &cfg)?;
        let spec_json =
            serde_json::to_vec(&rows.spec).map_err(|e| StoreError::BadStream(e.to_string()))?;
        let spec_sha256 = saelab_fsio::sha256_bytes(&spec_json);
        let (n_rows, d, seq) = (rows.rows, model.info.d_model, cfg.seq_len);
        let buffer_vectors = buffer_vectors.max(batch);
        let shards = ModelShards {
            model,
            cfg: cfg.clone(),
            rows: Rc::new(rows),
            dest: dest.to_path_buf(),
            last: None,
        };
        let stream = BatchStream::from_provider(
            Box::new(shards),
            (d * hooks.len(), seq, StoreDtype::F32),
            batch,
            data_seed,
            None,
            buffer_vectors,
        )?;
        Ok(ModelSource {
            stream,
            hooks: hooks.to_vec(),
            wide: Vec::new(),
            spec_sha256,
            rows: n_rows,
            cfg,
            d,
            data_seed,
            buffer_vectors,
        })
    }
}

impl BatchSource for ModelSource {
    fn d(&self) -> usize {
        self.d
    }

    fn vectors_per_epoch(&self) -> Option<u64> {
        Some(self.stream.vectors_per_epoch())
    }

    fn skip(&mut self, batches: u64) -> Result<(), SourceError> {
        let done = self.stream.skip_batches(batches)?;
        if done < batches {
            return Err(format!("the model stream ended after {done} of {batches} batches").into());
        }
        Ok(())
    }

    fn next_into(&mut self, batch: &mut Vec<f32>) -> Result<bool, SourceError> {
        match self.hooks.len() {
            1 => Ok(self.stream.next_into(batch)?),
            n => Err(format!("a {n}-hook stream serves lanes (next_lanes), not one batch").into()),
        }
    }

    fn lanes(&self) -> usize {
        self.hooks.len()
    }

    fn next_lanes(&mut self, batches: &mut [Vec<f32>]) -> Result<bool, SourceError> {
        if let [one] = batches {
            return self.next_into(one);
        }
        if !self.stream.next_into(&mut self.wide)? {
            return Ok(false);
        }
        let (d, lanes) = (self.d, self.hooks.len());
        for (l, b) in batches.iter_mut().enumerate() {
            b.clear();
            for v in self.wide.chunks_exact(d * lanes) {
                b.extend_from_slice(&v[l * d..(l + 1) * d]);
            }
        }
        Ok(true)
    }

    fn identity(&self) -> Value {
        json!({
            "kind": "model_stream",
            "spec_sha256": self.spec_sha256,
            "rows": self.rows,
            "hooks": self.hooks.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "data_seed": self.data_seed,
            "buffer_vectors": self.buffer_vectors,
        })
    }

    fn meta(&self) -> ExportMeta {
        self.meta_lane(0)
    }

    fn meta_lane(&self, lane: usize) -> ExportMeta {
        let mut extra = serde_json::Map::new();
        extra.insert("streamed".into(), json!(true));
        extra.insert("harvest_config".into(), json!(self.cfg));
        ExportMeta {
            model_name: self.cfg.model.clone(),
            hook_name: self
                .hooks
                .get(lane)
                .map(|h| h.to_string())
                .unwrap_or_default(),
            context_size: self.cfg.seq_len,
            prepend_bos: true,
            dataset_path: self.cfg.dataset.clone(),
            extra,
        }
    }
}

/// Trains the SAEs of `plan` at each of `hooks` of `model` run over
/// `corpus` (packed by `cfg`) into `out` with [`saelab_sae::sweep::run`]
/// (with several hooks each SAE's folder is prefixed with its hook's name):
/// resumes a run cut off in `out`, returns at once if it is complete.
#[allow(clippy::too_many_arguments)]
pub fn train_streamed(
    model: Arc<Model>,
    corpus: &Path,
    cfg: &HarvestConfig,
    hooks: &[HookPoint],
    plan: PlanRequest<'_>,
    settings: &SweepSettings,
    out: &Path,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<SweepSummary, TrainError> {
    let names: Vec<String> = hooks.iter().map(|h| h.to_string()).collect();
    let plan = sweep::plan_per_lane(&plan.resolve(model.info.d_model)?, &names);
    let cfg = HarvestConfig {
        hooks: hooks.to_vec(),
        ..cfg.clone()
    };
    train_lanes(model, corpus, &cfg, &plan, settings, out, progress, stop)
}

/// Trains `plan` on the hooks of `cfg` (SAE `lane` i reads `cfg.hooks[i]`),
/// all from one forward pass: the study runner's streamed train stage.
#[allow(clippy::too_many_arguments)]
pub fn train_lanes(
    model: Arc<Model>,
    corpus: &Path,
    cfg: &HarvestConfig,
    plan: &[SaePlan],
    settings: &SweepSettings,
    out: &Path,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<SweepSummary, TrainError> {
    settings.validate()?;
    let hooks = &cfg.hooks;
    let order = (
        settings.batch,
        settings.data_seed_for(plan),
        settings.effective_buffer(),
    );
    let mut source = ModelSource::open(model, corpus, cfg, hooks, order, out)?;
    Ok(sweep::run(
        out,
        plan,
        settings,
        &mut source,
        progress,
        stop,
    )?)
}
