//! `saelab harvest`: run a model over a corpus and write the residual stream
//! at the requested hook points into an activation store, resuming a store
//! that was cut off and never rewriting a finished one.

use crate::resolve;
use crate::rows::PrecisionArg;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saelab_data::corpus::Corpus;
use saelab_data::packing::{Packing, RowPacker};
use saelab_data::store::{DatasetInfo, ModelInfo, StoreDtype, StoreError, StoreSpec, StoreWriter};
use saelab_lm::{ForwardSpec, HookPoint, PosIntervention};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct HarvestArgs {
    /// Model: `smollm2-135m` (offline default), a .gguf file, an HF folder, or a hub name (`gpt2`).
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// Corpus: an offline corpus name (email, speeches, fiction, wiki, code, docs) or a
    /// .txt/.jsonl/.parquet file or folder.
    #[arg(long, default_value = "wiki")]
    pub dataset: String,
    /// Hook point(s) to store, TransformerLens names; repeat for several layers
    /// (one forward pass reads them all). Default: blocks.8.hook_resid_pre.
    #[arg(long = "hook")]
    pub hooks: Vec<String>,
    /// Tokens to harvest (rounded up to whole rows); 0 = until the corpus ends.
    #[arg(long, default_value_t = 262_144)]
    pub tokens: u64,
    /// Tokens per row.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Row packing: `concat` (BOS at document starts) or `bos_rows` (BOS at every row start).
    #[arg(long, default_value = "concat")]
    pub packing: String,
    /// Stored element type: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Positional intervention: none, zero or shuffle (seeded permutation per forward pass).
    #[arg(long, default_value = "none")]
    pub pos_intervention: String,
    /// Seed of the shuffle intervention.
    #[arg(long, default_value_t = 49)]
    pub seed: u64,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_rows: usize,
    /// Arithmetic of the model's dense products: f32 (research default) or
    /// bf16 (weights and their inputs rounded to bf16, f32 accumulation;
    /// ≈ 1.9× faster with AVX512_BF16, residuals within ≈ 1 % — see
    /// bench/RESULTS.md). Recorded in the manifest.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Rows per shard file (a multiple of --batch-rows).
    #[arg(long, default_value_t = 1024)]
    pub rows_per_shard: usize,
    /// Text field of .jsonl / .parquet corpora.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Output store directory (default: runs/harvest-<model>-<dataset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &HarvestArgs) -> Result<()> {
    if args.batch_rows == 0
        || args.rows_per_shard == 0
        || args.rows_per_shard % args.batch_rows != 0
    {
        bail!(
            "--rows-per-shard ({}) must be a positive multiple of --batch-rows ({})",
            args.rows_per_shard,
            args.batch_rows
        );
    }
    let packing: Packing = args
        .packing
        .parse()
        .map_err(|e| anyhow::anyhow!("--packing: {e}"))?;
    let dtype = StoreDtype::parse(&args.dtype)
        .with_context(|| format!("--dtype `{}`: expected f32, f16 or bf16", args.dtype))?;
    let pos: PosIntervention = args
        .pos_intervention
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--pos-intervention: {e}"))?;
    let hook_names = if args.hooks.is_empty() {
        vec!["blocks.8.hook_resid_pre".to_string()]
    } else {
        args.hooks.clone()
    };
    let hooks: Vec<HookPoint> = hook_names
        .iter()
        .map(|h| h.parse::<HookPoint>())
        .collect::<std::result::Result<_, _>>()?;

    let model = crate::rows::load_model(&args.model, args.precision)?;
    let precision = model.info.precision;
    for h in &hooks {
        h.check(model.info.n_layers)
            .with_context(|| format!("model {}", model.info.id))?;
    }
    if args.seq_len == 0 || args.seq_len > model.info.n_ctx {
        bail!(
            "--seq-len {} must be in 1..={} (the model's context)",
            args.seq_len,
            model.info.n_ctx
        );
    }
    let tokenizer = model.tokenizer()?;
    let corpus_path = resolve::corpus(&args.dataset)?;
    let corpus = Corpus::open(&corpus_path)?.with_text_field(&args.text_field);
    let corpus_hash = corpus.content_hash()?;

    let target_rows = (args.tokens > 0).then(|| args.tokens.div_ceil(args.seq_len as u64));
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(
        "tokenizer".into(),
        serde_json::Value::from(tokenizer.kind.clone()),
    );
    extra.insert("bos".into(), serde_json::Value::from(tokenizer.bos));
    extra.insert("eos".into(), serde_json::Value::from(tokenizer.eos));
    extra.insert(
        "batch_rows".into(),
        serde_json::Value::from(args.batch_rows),
    );
    extra.insert(
        "text_field".into(),
        serde_json::Value::from(args.text_field.clone()),
    );
    extra.insert(
        "precision".into(),
        serde_json::Value::from(precision.to_string()),
    );
    extra.insert(
        "model_positions".into(),
        serde_json::Value::from(model.info.positions.clone()),
    );
    let spec = StoreSpec {
        model: ModelInfo {
            id: args.model.clone(),
            hash: format!("sha256:{}", model.info.weights_sha256),
        },
        hooks: hooks.iter().map(|h| h.to_string()).collect(),
        d: model.info.d_model,
        dtype,
        seq_len: args.seq_len,
        packing: packing.as_str().to_string(),
        dataset: DatasetInfo {
            name: args.dataset.clone(),
            hash: format!("sha256:{corpus_hash}"),
        },
        pos_intervention: pos.to_string(),
        seed: args.seed,
        rows_per_shard: args.rows_per_shard,
        target_rows,
        extra,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "harvest-{}-{}",
            sanitize(&args.model),
            sanitize(&args.dataset)
        ))
    });
    let mut writer = match StoreWriter::create_or_resume(&out, spec) {
        Ok(w) => w,
        Err(StoreError::AlreadyComplete { .. }) => {
            eprintln!(
                "{}: store is already complete; nothing to do",
                out.display()
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let skip = writer.rows_done();
    if writer.is_resumed() {
        eprintln!("{}: resuming after {skip} rows", out.display());
    }

    let tok_err: RefCell<Option<String>> = RefCell::new(None);
    let tokenize = |text: &str| match tokenizer.encode(text) {
        Ok(ids) => ids,
        Err(e) => {
            tok_err.borrow_mut().get_or_insert(e.to_string());
            Vec::new()
        }
    };
    let packer = RowPacker::new(packing, args.seq_len, tokenizer.bos, tokenizer.eos)?;
    let mut rows = packer.rows(corpus.documents(), tokenize);
    for _ in 0..skip {
        match rows.next() {
            Some(r) => {
                r?;
            }
            None => bail!(
                "{}: the corpus has fewer rows than the store already holds",
                corpus_path.display()
            ),
        }
    }

    let total = target_rows.map(|t| t * args.seq_len as u64);
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} harvest [{elapsed_precise}] {bar:30} {human_pos}/{human_len} tokens  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(skip * args.seq_len as u64);
    let mut batch_index = skip / args.batch_rows as u64;
    let mut done = skip;
    let started = Instant::now();
    // Tests set this to kill the process right after N shards are on disk.
    let crash_after: Option<usize> = std::env::var("SAELAB_TEST_ABORT_AFTER_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut harvested = 0u64;
    loop {
        let want = match target_rows {
            Some(t) => (t - done).min(args.batch_rows as u64) as usize,
            None => args.batch_rows,
        };
        if want == 0 {
            break;
        }
        let mut batch: Vec<u32> = Vec::with_capacity(want * args.seq_len);
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
        if let Some(e) = tok_err.borrow().as_ref() {
            bail!("{}: tokenizer failed: {e}", corpus_path.display());
        }
        if n == 0 {
            if let Some(t) = target_rows {
                eprintln!(
                    "{}: corpus exhausted after {done} of {t} rows ({} tokens)",
                    corpus_path.display(),
                    done * args.seq_len as u64
                );
            }
            break;
        }
        // One permutation per forward pass, drawn from a stream keyed by the
        // batch index so a resumed harvest draws the same permutations.
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        rng.set_stream(batch_index);
        let mut fspec = ForwardSpec::reads(&hooks);
        fspec.positions = pos.positions(args.seq_len, &mut rng);
        let outp = model
            .forward(&batch, n, args.seq_len, &mut fspec)
            .with_context(|| format!("forward pass on batch {batch_index}"))?;
        let acts: Vec<&[f32]> = hooks
            .iter()
            .map(|h| outp.hook(*h).context("hook missing from forward output"))
            .collect::<Result<_>>()?;
        writer.push_rows(&batch, &acts)?;
        if let Some(n) = crash_after {
            if writer.manifest().shards.len() >= n {
                // Test hook: die like a SIGKILL would, with no cleanup.
                std::process::abort();
            }
        }
        done += n as u64;
        harvested += n as u64;
        batch_index += 1;
        bar.inc((n * args.seq_len) as u64);
        if n < want {
            eprintln!(
                "{}: corpus exhausted after {done} rows",
                corpus_path.display()
            );
            break;
        }
    }
    let manifest = writer.finish()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} rows, {} tokens, {} shards; this run {} tokens in {:.1} s ({:.0} tokens/s)",
        out.display(),
        manifest.rows,
        manifest.tokens,
        manifest.shards.len(),
        harvested * args.seq_len as u64,
        secs,
        (harvested * args.seq_len as u64) as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn sanitize(s: &str) -> String {
    let base = std::path::Path::new(s)
        .file_stem()
        .and_then(|x| x.to_str())
        .unwrap_or(s);
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
