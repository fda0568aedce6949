//! `saelab train`: train one or many SAEs side by side from a single pass over
//! an activation store (a grid over architecture × dictionary size × k ×
//! seed), with checkpoints, automatic resume, a `metrics.jsonl` log per SAE
//! and SAELens-layout output files. The SAEs come from the grid flags or a
//! `--config` TOML file (see [`saelab_sae::sweep::SweepSpec`]). Ctrl-C
//! writes a checkpoint and exits; rerunning the same command resumes.
//!
//! With `--dataset` instead of `--store` the activations come straight from
//! the model's forward pass (no store is written; see
//! `saelab_study::streamed`).
//!
//! This file only parses flags, draws the progress bar and prints; the work
//! is `saelab_study::sources::train_from_store` or
//! `saelab_study::streamed::train_streamed`.

use crate::harvest::{PackingArg, PosArg};
use crate::rows::PrecisionArg;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use saelab_lm::HookPoint;
use saelab_sae::defaults::{self, ArchName};
use saelab_sae::sweep::{
    ArchDefaults, GridSpec, PlanRequest, SweepProgress, SweepSettings, SweepSpec, SweepStart,
};
use saelab_sae::{BDecInit, Decay, EncoderPrecision, LrSchedule, StepMetrics};
use saelab_study::harvest::HarvestConfig;
use std::cell::OnceCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Activation store written by `saelab harvest`.
    #[arg(long, required_unless_present = "dataset", conflicts_with = "dataset")]
    pub store: Option<PathBuf>,
    /// Hook to train on (default: the store's first hook). Streamed: repeat
    /// for several layers from one forward pass (every SAE of the grid at
    /// each, in `<hook>-<name>/` folders; default blocks.8.hook_resid_pre).
    #[arg(long = "hook")]
    pub hooks: Vec<String>,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Architecture(s) (repeat for a grid).
    #[arg(long = "arch", value_enum, default_values_t = defaults::ARCHS.to_vec())]
    pub archs: Vec<ArchName>,
    /// Dictionary size(s) n (repeat for a grid). Default: 4·d.
    #[arg(long = "n")]
    pub ns: Vec<usize>,
    /// k for topk / batchtopk / matryoshka (repeat for a grid).
    #[arg(long = "k", default_values_t = [defaults::K])]
    pub ks: Vec<usize>,
    /// Initialization seed(s) (repeat for a grid).
    #[arg(long = "seed", default_values_t = [defaults::SEED])]
    pub seeds: Vec<u64>,
    /// Seed of the batch order (default: the first --seed).
    #[arg(long)]
    pub data_seed: Option<u64>,
    /// L1 coefficient (relu).
    #[arg(long, default_value_t = defaults::L1_COEFF)]
    pub l1_coeff: f32,
    /// L0 coefficient (jumprelu).
    #[arg(long, default_value_t = defaults::L0_COEFF)]
    pub l0_coeff: f32,
    /// Initial JumpReLU threshold θ (per latent; learnt as log θ, so with
    /// lr 3e-4 it moves by at most ≈ 3e-4·steps in log space — short runs
    /// need a θ near the target sparsity's pre-activation quantile).
    #[arg(long, default_value_t = defaults::JUMPRELU_INIT_THRESHOLD)]
    pub jumprelu_init_threshold: f32,
    /// JumpReLU straight-through bandwidth ε (rectangle kernel).
    #[arg(long, default_value_t = defaults::JUMPRELU_BANDWIDTH)]
    pub jumprelu_bandwidth: f32,
    #[arg(long, default_value_t = defaults::LR)]
    pub lr: f32,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long, default_value_t = 0)]
    pub lr_warmup_steps: u64,
    /// Learning-rate decay to zero from the end of the warm-up to the end
    /// of the run (needs --steps or --tokens).
    #[arg(long, value_enum, default_value_t = Decay::None)]
    pub lr_decay: Decay,
    /// Also save every SAE after this many training tokens (rounded down to
    /// whole batches) under `<name>/snapshots/step-N/`; comma-separated or
    /// repeated. One run then gives the SAEs of several budgets (with a
    /// constant lr; a decay schedule depends on the run's length).
    #[arg(long, value_delimiter = ',')]
    pub snapshot_tokens: Vec<u64>,
    /// Activation vectors per step.
    #[arg(long, default_value_t = defaults::BATCH)]
    pub batch: usize,
    /// Training steps (default: one pass over the store, ⌊tokens / batch⌋;
    /// more steps than one pass start another, reshuffled, epoch).
    #[arg(long, conflicts_with = "tokens")]
    pub steps: Option<u64>,
    /// Training tokens instead of steps (rounded down to whole batches).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Decoder-bias initialization from the first batch: zeros (the study),
    /// mean, or geometric-median (SAELens).
    #[arg(long, value_enum, default_value_t = BDecInit::Zeros)]
    pub b_dec_init: BDecInit,
    /// Arithmetic of the dense encoder product: f32 (default) or bf16
    /// (inputs and W_enc rounded to bf16, f32 accumulation, as GPU trainers
    /// under bf16 autocast; ≈ 1.7× faster steps on the AVX512_BF16 CPU where
    /// it was measured, slower than f32 on a CPU whose f32 GEMM runs on
    /// AVX-512 — see bench/RESULTS.md). Everything else stays f32.
    #[arg(long, value_enum, default_value_t = EncoderPrecision::F32)]
    pub encoder_precision: EncoderPrecision,
    /// TOML sweep file listing the SAEs (a [grid] table and/or [[sae]]
    /// entries); replaces --arch/--n/--k/--seed.
    #[arg(long, conflicts_with_all = ["archs", "ns", "ks", "seeds"])]
    pub config: Option<PathBuf>,
    /// Turn AuxK off.
    #[arg(long)]
    pub no_auxk: bool,
    /// Shuffle buffer, in vectors (the study: 10 × 512 × 128).
    #[arg(long, default_value_t = defaults::BUFFER_VECTORS)]
    pub buffer_vectors: usize,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = defaults::CHECKPOINT_EVERY)]
    pub checkpoint_every: u64,
    /// Log metrics every N steps.
    #[arg(long, default_value_t = defaults::LOG_EVERY)]
    pub log_every: u64,
    /// Output folder; one sub-folder per SAE.
    #[arg(long)]
    pub out: PathBuf,
}

/// Training straight from the model (`--dataset`): how the corpus is packed
/// and run, as `saelab harvest` would (an f32 store of the same flags holds
/// the same vectors).
#[derive(clap::Args, Debug)]
pub struct StreamArgs {
    /// Stream activations from the model over this corpus instead of
    /// reading a store: an offline corpus name or a .txt/.jsonl/.parquet
    /// file or folder.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Model to stream from.
    #[arg(long, default_value = "smollm2-135m", requires = "dataset")]
    pub model: String,
    /// Distinct tokens per epoch (rounded up to whole rows); 0 = the whole
    /// corpus. Training longer than one epoch runs the model
    /// over them again.
    #[arg(long, default_value_t = 0, requires = "dataset")]
    pub corpus_tokens: u64,
    /// Tokens per row.
    #[arg(long, default_value_t = 128, requires = "dataset")]
    pub seq_len: usize,
    /// Row packing.
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        default_value = "concat",
        requires = "dataset"
    )]
    pub packing: PackingArg,
    /// Positional intervention.
    #[arg(long, value_enum, default_value = "none", requires = "dataset")]
    pub pos_intervention: PosArg,
    /// Seed of the shuffle intervention.
    #[arg(long, default_value_t = 49, requires = "dataset")]
    pub pos_seed: u64,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 16, requires = "dataset")]
    pub batch_rows: usize,
    /// Rows per virtual shard (the shuffle's unit, as a store's shard).
    #[arg(long, default_value_t = 1024, requires = "dataset")]
    pub rows_per_shard: usize,
    /// Arithmetic of the model's dense products.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32, requires = "dataset")]
    pub precision: PrecisionArg,
    /// Text field of .jsonl / .parquet corpora.
    #[arg(long, default_value = "text", requires = "dataset")]
    pub text_field: String,
}

impl StreamArgs {
    /// The harvest config these flags describe (hooks and dtype are the
    /// stream's own).
    fn config(&self, dataset: &str) -> HarvestConfig {
        HarvestConfig {
            model: self.model.clone(),
            dataset: dataset.to_string(),
            hooks: vec![],
            tokens: self.corpus_tokens,
            seq_len: self.seq_len,
            packing: self.packing.into(),
            dtype: saelab_data::store::StoreDtype::F32,
            pos_intervention: self.pos_intervention.into(),
            seed: self.pos_seed,
            batch_rows: self.batch_rows,
            rows_per_shard: self.rows_per_shard,
            text_field: self.text_field.clone(),
        }
    }
}

/// The SAEs: the sweep file, or the grid flags.
fn sweep_spec(a: &TrainArgs) -> Result<SweepSpec> {
    Ok(match &a.config {
        Some(path) => SweepSpec::from_toml_file(path)?,
        None => SweepSpec {
            grid: Some(GridSpec {
                arch: Some(a.archs.clone()),
                n: (!a.ns.is_empty()).then(|| a.ns.clone()),
                k: Some(a.ks.clone()),
                seed: Some(a.seeds.clone()),
            }),
            sae: vec![],
        },
    })
}

fn settings(a: &TrainArgs) -> Result<SweepSettings> {
    let steps = a.steps.or(a.tokens.map(|t| t / a.batch.max(1) as u64));
    if a.lr_decay != Decay::None && steps.is_none() {
        anyhow::bail!("--lr-decay needs the run's length: give --steps or --tokens");
    }
    if a.lr_decay != Decay::None && steps.is_some_and(|s| s <= a.lr_warmup_steps) {
        anyhow::bail!(
            "--lr-decay: the warm-up ({} steps) leaves no steps to decay over",
            a.lr_warmup_steps
        );
    }
    if a.snapshot_tokens.iter().any(|&t| t < a.batch as u64) {
        anyhow::bail!(
            "--snapshot-tokens must each hold at least one batch ({} tokens)",
            a.batch
        );
    }
    Ok(SweepSettings {
        lr: a.lr,
        lr_schedule: LrSchedule {
            warmup_steps: a.lr_warmup_steps,
            decay: a.lr_decay,
            decay_start: a.lr_warmup_steps,
            // 0 without decay: the default schedule, so runs without one
            // keep their identity.
            total_steps: if a.lr_decay == Decay::None {
                0
            } else {
                steps.unwrap_or(0)
            },
            min_lr_ratio: 0.0,
        },
        snapshot_steps: a
            .snapshot_tokens
            .iter()
            .map(|&t| t / a.batch.max(1) as u64)
            .collect(),
        batch: a.batch,
        steps: a.steps,
        tokens: a.tokens,
        b_dec_init: a.b_dec_init,
        encoder_precision: a.encoder_precision,
        auxk: !a.no_auxk,
        buffer_vectors: a.buffer_vectors,
        data_seed: a.data_seed,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every,
        ..SweepSettings::default()
    })
}

/// A progress bar drawn from the sweep's callbacks.
struct Bar {
    store: String,
    bar: OnceCell<ProgressBar>,
}

impl Bar {
    fn new(store: String) -> Self {
        Bar {
            store,
            bar: OnceCell::new(),
        }
    }
}

impl SweepProgress for Bar {
    fn start(&self, s: &SweepStart) {
        eprintln!(
            "training {} SAE(s) on {} ({}, d {}) for {} steps of {} vectors{}",
            s.saes,
            self.store,
            s.hook,
            s.d,
            s.steps,
            s.batch,
            if s.start_step > 0 {
                format!(", resuming at step {}", s.start_step)
            } else {
                String::new()
            }
        );
        let bar = ProgressBar::new(s.steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} train [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(s.start_step);
        let _ = self.bar.set(bar);
    }

    fn step(&self, m: &StepMetrics) {
        if let Some(bar) = self.bar.get() {
            bar.set_message(format!(
                "fvu {:.3} L0 {:.1} dead {:.1}%",
                m.fvu,
                m.l0,
                100.0 * m.dead_fraction
            ));
            bar.set_position(m.step);
        }
    }

    fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }

    fn end(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let spec = sweep_spec(a)?;
    let coeffs = ArchDefaults {
        l1_coeff: a.l1_coeff,
        l0_coeff: a.l0_coeff,
        jumprelu_init_threshold: a.jumprelu_init_threshold,
        jumprelu_bandwidth: a.jumprelu_bandwidth,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&stop);
        // Only one handler per process can be installed; if one already
        // is, Ctrl-C keeps its default behaviour (the last checkpoint stays).
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let plan = PlanRequest::Spec(&spec, &coeffs);
    let settings = settings(a)?;
    let s = match (&a.store, &a.stream.dataset) {
        (Some(store), _) => {
            let bar = Bar::new(store.display().to_string());
            if a.hooks.len() > 1 {
                anyhow::bail!(
                    "--hook: one hook per run from a store (several: stream with --dataset)"
                );
            }
            saelab_study::sources::train_from_store(
                store,
                a.hooks.first().map(String::as_str),
                plan,
                &settings,
                &a.out,
                &bar,
                &stop,
            )?
        }
        (None, Some(dataset)) => {
            let hooks: Vec<HookPoint> = match a.hooks.as_slice() {
                [] => vec!["blocks.8.hook_resid_pre".parse()?],
                h => h.iter().map(|h| h.parse()).collect::<Result<_, _>>()?,
            };
            if let Some(h) = hooks
                .iter()
                .enumerate()
                .find(|(i, h)| hooks[..*i].contains(h))
            {
                anyhow::bail!("--hook {} is given twice", h.1);
            }
            let model = std::sync::Arc::new(crate::rows::load_model(
                &a.stream.model,
                a.stream.precision,
            )?);
            let corpus = crate::resolve::corpus(dataset)?;
            let bar = Bar::new(format!("{} over {dataset} (streamed)", a.stream.model));
            saelab_study::streamed::train_streamed(
                model,
                &corpus,
                &a.stream.config(dataset),
                &hooks,
                plan,
                &settings,
                &a.out,
                &bar,
                &stop,
            )?
        }
        (None, None) => anyhow::bail!("give --store or --dataset"),
    };
    if s.already_complete {
        eprintln!(
            "{}: training is already complete; nothing to do",
            a.out.display()
        );
        return Ok(());
    }
    let vecs = s.vectors_trained;
    eprintln!(
        "{}: {} SAE(s), {} steps; this run {vecs} vectors in {:.1} s ({:.0} vectors/s per pass)",
        a.out.display(),
        s.saes.len(),
        s.steps,
        s.seconds,
        vecs as f64 / s.seconds.max(1e-9)
    );
    Ok(())
}
