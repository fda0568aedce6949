//! `saelab harvest`: run a model over a corpus and write the residual stream
//! at the requested hook points into an activation store, resuming a store
//! that was cut off and never rewriting a finished one. The work is
//! [`saelab_study::harvest::run`]; this module parses flags, resolves the
//! model and corpus names, draws the progress bar and prints.

use crate::resolve;
use crate::rows::PrecisionArg;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use saelab_data::packing::Packing;
use saelab_data::store::StoreDtype;
use saelab_lm::{HookPoint, PosIntervention};
use saelab_study::harvest::{HarvestConfig, HarvestError, HarvestProgress, HarvestSummary};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

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
    #[arg(long, value_enum, ignore_case = true, default_value = "concat")]
    pub packing: PackingArg,
    /// Stored element type: f32, f16 or bf16.
    #[arg(long, value_enum, ignore_case = true, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Positional intervention: none, zero or shuffle (seeded permutation per forward pass).
    #[arg(long, value_enum, default_value = "none")]
    pub pos_intervention: PosArg,
    /// Seed of the shuffle intervention.
    #[arg(long, default_value_t = 49)]
    pub seed: u64,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_rows: usize,
    /// Arithmetic of the model's dense products: f32 (research default) or
    /// bf16 (weights and their inputs rounded to bf16, f32 accumulation;
    /// ≈ 3.3× faster with AMX (SmolLM2, end to end), ≈ 1.9× with
    /// AVX512_BF16 only; residuals within ≈ 1 % — see bench/RESULTS.md).
    /// Recorded in the manifest.
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

/// `--packing` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PackingArg {
    Concat,
    #[value(name = "bos_rows", alias = "bos-rows", alias = "bosrows")]
    BosRows,
}

/// `--dtype` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    #[value(alias = "float32", alias = "fp32")]
    F32,
    #[value(alias = "float16", alias = "fp16", alias = "half")]
    F16,
    #[value(alias = "bfloat16")]
    Bf16,
}

/// `--pos-intervention` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PosArg {
    None,
    Zero,
    Shuffle,
}

impl From<PackingArg> for Packing {
    fn from(p: PackingArg) -> Packing {
        match p {
            PackingArg::Concat => Packing::Concat,
            PackingArg::BosRows => Packing::BosRows,
        }
    }
}

impl From<PosArg> for PosIntervention {
    fn from(p: PosArg) -> PosIntervention {
        match p {
            PosArg::None => PosIntervention::None,
            PosArg::Zero => PosIntervention::Zero,
            PosArg::Shuffle => PosIntervention::Shuffle,
        }
    }
}

impl HarvestArgs {
    /// The library config of these flags (hook names parsed, defaults
    /// filled in).
    fn config(&self) -> Result<HarvestConfig> {
        let hook_names = if self.hooks.is_empty() {
            vec!["blocks.8.hook_resid_pre".to_string()]
        } else {
            self.hooks.clone()
        };
        let hooks: Vec<HookPoint> = hook_names
            .iter()
            .map(|h| h.parse::<HookPoint>())
            .collect::<std::result::Result<_, _>>()?;
        Ok(HarvestConfig {
            model: self.model.clone(),
            dataset: self.dataset.clone(),
            hooks,
            tokens: self.tokens,
            seq_len: self.seq_len,
            packing: self.packing.into(),
            dtype: match self.dtype {
                DtypeArg::F32 => StoreDtype::F32,
                DtypeArg::F16 => StoreDtype::F16,
                DtypeArg::Bf16 => StoreDtype::Bf16,
            },
            pos_intervention: self.pos_intervention.into(),
            seed: self.seed,
            batch_rows: self.batch_rows,
            rows_per_shard: self.rows_per_shard,
            text_field: self.text_field.clone(),
        })
    }
}

pub fn run(args: &HarvestArgs) -> Result<()> {
    let cfg = args.config()?;
    // Refuse a bad config before the (possibly slow) model load.
    cfg.check().map_err(flag_error)?;
    let model = crate::rows::load_model(&args.model, args.precision)?;
    let corpus = resolve::corpus(&args.dataset)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "harvest-{}-{}",
            sanitize(&args.model),
            sanitize(&args.dataset)
        ))
    });
    let bar = progress_bar(cfg.target_rows().map(|r| r * cfg.seq_len as u64));
    let on_progress = |p: HarvestProgress| report(&bar, &out, &corpus, p);
    let never = AtomicBool::new(false);
    let result = saelab_study::harvest::run(&model, &corpus, &cfg, &out, &on_progress, &never);
    bar.finish_and_clear();
    print_summary(&result.map_err(flag_error)?);
    Ok(())
}

/// A config error names the flag; the others name the store, model, hook
/// or corpus file already.
fn flag_error(e: HarvestError) -> anyhow::Error {
    match e {
        HarvestError::Config { field, value, msg } => {
            anyhow::anyhow!("--{} {value}: {msg}", field.replace('_', "-"))
        }
        e => e.into(),
    }
}

fn progress_bar(total_tokens: Option<u64>) -> ProgressBar {
    let bar = match total_tokens {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} harvest [{elapsed_precise}] {bar:30} {human_pos}/{human_len} tokens  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn report(bar: &ProgressBar, out: &Path, corpus: &Path, p: HarvestProgress) {
    match p {
        HarvestProgress::Resumed { rows, tokens } => {
            bar.suspend(|| eprintln!("{}: resuming after {rows} rows", out.display()));
            bar.set_position(tokens);
        }
        HarvestProgress::Stored { tokens, .. } => bar.set_position(tokens),
        HarvestProgress::CorpusExhausted {
            rows,
            tokens,
            target_rows,
        } => bar.suspend(|| match target_rows {
            Some(t) => eprintln!(
                "{}: corpus exhausted after {rows} of {t} rows ({tokens} tokens)",
                corpus.display()
            ),
            None => eprintln!("{}: corpus exhausted after {rows} rows", corpus.display()),
        }),
    }
}

fn print_summary(s: &HarvestSummary) {
    if s.already_complete {
        eprintln!(
            "{}: store is already complete; nothing to do",
            s.store.display()
        );
        return;
    }
    eprintln!(
        "{}: {} rows, {} tokens, {} shards; this run {} tokens in {:.1} s ({:.0} tokens/s)",
        s.store.display(),
        s.rows,
        s.tokens,
        s.shards,
        s.tokens_this_run,
        s.seconds,
        s.tokens_this_run as f64 / s.seconds.max(1e-9)
    );
    if s.documents_truncated > 0 {
        eprintln!(
            "note: {} document(s) were longer than the packing's per-document limit and were cut",
            s.documents_truncated
        );
    }
    if s.invalid_utf8_sequences > 0 {
        let files: Vec<String> = s
            .lossy_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        eprintln!(
            "warning: {} invalid UTF-8 sequence(s) were replaced by U+FFFD (in {})",
            s.invalid_utf8_sequences,
            files.join(", ")
        );
    }
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
