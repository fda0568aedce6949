//! `saelab train`: train one or many SAEs side by side from a single pass over
//! an activation store (a grid over architecture × dictionary size × k ×
//! seed), with periodic checkpoints, automatic resume, a `metrics.jsonl` log
//! per SAE and SAELens-layout output files. The SAEs come from the grid
//! flags or a `--config` TOML file (see [`SweepFile`]). Ctrl-C writes a
//! checkpoint and exits; rerunning the same command resumes.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use saelab_data::store::{ActivationStore, BatchStream};
use saelab_sae::{
    ArchSpec, BDecInit, EncoderPrecision, ExportMeta, SaeConfig, TrainConfig, Trainer, TrainerState,
};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Activation store written by `saelab harvest`.
    #[arg(long)]
    pub store: PathBuf,
    /// Hook to train on (default: the store's first hook).
    #[arg(long)]
    pub hook: Option<String>,
    /// Architecture(s): topk, batchtopk, jumprelu, relu, matryoshka (repeat for a grid).
    #[arg(long = "arch", default_value = "topk")]
    pub archs: Vec<String>,
    /// Dictionary size(s) n (repeat for a grid). Default: 4·d.
    #[arg(long = "n")]
    pub ns: Vec<usize>,
    /// k for topk / batchtopk / matryoshka (repeat for a grid).
    #[arg(long = "k", default_values_t = [16usize])]
    pub ks: Vec<usize>,
    /// Initialization seed(s) (repeat for a grid).
    #[arg(long = "seed", default_values_t = [49u64])]
    pub seeds: Vec<u64>,
    /// Seed of the batch order (default: the first --seed).
    #[arg(long)]
    pub data_seed: Option<u64>,
    /// L1 coefficient (relu).
    #[arg(long, default_value_t = 8e-5)]
    pub l1_coeff: f32,
    /// L0 coefficient (jumprelu).
    #[arg(long, default_value_t = 0.0018)]
    pub l0_coeff: f32,
    /// Initial JumpReLU threshold θ (per latent; learnt as log θ, so with
    /// lr 3e-4 it moves by at most ≈ 3e-4·steps in log space — short runs
    /// need a θ near the target sparsity's pre-activation quantile).
    #[arg(long, default_value_t = 0.001)]
    pub jumprelu_init_threshold: f32,
    /// JumpReLU straight-through bandwidth ε (rectangle kernel).
    #[arg(long, default_value_t = 0.001)]
    pub jumprelu_bandwidth: f32,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f32,
    /// Activation vectors per step.
    #[arg(long, default_value_t = 4096)]
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
    #[arg(long, default_value = "zeros", value_parser = ["zeros", "mean", "geometric-median"])]
    pub b_dec_init: String,
    /// Arithmetic of the dense encoder product: f32 (default) or bf16
    /// (inputs and W_enc rounded to bf16, f32 accumulation, as GPU trainers
    /// under bf16 autocast; ≈ 1.7× faster steps with AVX512_BF16, see
    /// bench/RESULTS.md). Everything else stays f32.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub encoder_precision: String,
    /// TOML sweep file listing the SAEs (a [grid] table and/or [[sae]]
    /// entries); replaces --arch/--n/--k/--seed.
    #[arg(long, conflicts_with_all = ["archs", "ns", "ks", "seeds"])]
    pub config: Option<PathBuf>,
    /// Turn AuxK off.
    #[arg(long)]
    pub no_auxk: bool,
    /// Shuffle buffer, in vectors (the study: 10 × 512 × 128).
    #[arg(long, default_value_t = 655_360)]
    pub buffer_vectors: usize,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Log metrics every N steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Output folder; one sub-folder per SAE.
    #[arg(long)]
    pub out: PathBuf,
}

/// One SAE of the grid.
struct Run {
    name: String,
    dir: PathBuf,
    cfg: TrainConfig,
    trainer: Trainer,
    metrics: std::fs::File,
}

/// A sweep file (`--config`): the cross product of `[grid]` (same meaning
/// and defaults as the flags) followed by explicit `[[sae]]` entries.
///
/// ```toml
/// [grid]
/// arch = ["topk", "batchtopk"]
/// n = [2304, 4608]
/// k = [16, 32]
/// seed = [49, 50]
///
/// [[sae]]
/// arch = "jumprelu"
/// l0_coeff = 0.002
/// init_threshold = 1.0
/// bandwidth = 0.001
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    #[serde(default)]
    grid: Option<GridSpec>,
    #[serde(default)]
    sae: Vec<SaeSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridSpec {
    #[serde(default)]
    arch: Vec<String>,
    #[serde(default)]
    n: Vec<usize>,
    #[serde(default)]
    k: Vec<usize>,
    #[serde(default)]
    seed: Vec<u64>,
}

/// One SAE; unset fields take the command line's values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaeSpec {
    arch: String,
    n: Option<usize>,
    k: Option<usize>,
    seed: Option<u64>,
    l1_coeff: Option<f32>,
    l0_coeff: Option<f32>,
    /// JumpReLU initial threshold and bandwidth.
    init_threshold: Option<f32>,
    bandwidth: Option<f32>,
    /// Matryoshka prefix sizes (default: the architecture's).
    group_sizes: Option<Vec<usize>>,
    /// Output sub-folder (default: `<arch>-n<N>[-k<K>]-s<seed>`).
    name: Option<String>,
}

/// A fully resolved SAE of the sweep.
struct Planned {
    name: String,
    arch: ArchSpec,
    n: usize,
    seed: u64,
}

fn uses_k(arch: &str) -> bool {
    !matches!(arch, "relu" | "jumprelu")
}

fn arch_spec(s: &SaeSpec, a: &TrainArgs) -> Result<ArchSpec> {
    let k = s.k.unwrap_or(16);
    Ok(match s.arch.as_str() {
        "topk" => ArchSpec::TopK { k },
        "batchtopk" => ArchSpec::BatchTopK {
            k,
            threshold_ema_rate: 0.01,
        },
        "matryoshka" | "matryoshka_batchtopk" => ArchSpec::MatryoshkaBatchTopK {
            k,
            group_sizes: s.group_sizes.clone().unwrap_or_default(),
            threshold_ema_rate: 0.01,
        },
        "relu" => ArchSpec::Relu {
            l1_coeff: s.l1_coeff.unwrap_or(a.l1_coeff),
        },
        "jumprelu" => ArchSpec::JumpRelu {
            l0_coeff: s.l0_coeff.unwrap_or(a.l0_coeff),
            bandwidth: s.bandwidth.unwrap_or(a.jumprelu_bandwidth),
            init_threshold: s.init_threshold.unwrap_or(a.jumprelu_init_threshold),
            apply_b_dec_to_input: false,
        },
        other => bail!("arch `{other}`: expected topk, batchtopk, jumprelu, relu or matryoshka"),
    })
}

/// The SAEs to train, from `--config` or the grid flags, in a fixed order.
fn plan(a: &TrainArgs, d: usize) -> Result<Vec<Planned>> {
    let (grid, explicit) = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let f: SweepFile = toml::from_str(&text)
                .with_context(|| format!("{}: bad sweep file", path.display()))?;
            if f.grid.is_none() && f.sae.is_empty() {
                bail!(
                    "{}: lists no SAEs (expected [grid] and/or [[sae]])",
                    path.display()
                );
            }
            (f.grid, f.sae)
        }
        None => (
            Some(GridSpec {
                arch: a.archs.clone(),
                n: a.ns.clone(),
                k: a.ks.clone(),
                seed: a.seeds.clone(),
            }),
            vec![],
        ),
    };
    let mut specs = Vec::new();
    if let Some(g) = grid {
        let or = |v: Vec<usize>, dflt: usize| if v.is_empty() { vec![dflt] } else { v };
        let archs = if g.arch.is_empty() {
            vec!["topk".to_string()]
        } else {
            g.arch
        };
        let ns = or(g.n, 4 * d);
        let ks = or(g.k, 16);
        let seeds = if g.seed.is_empty() { vec![49] } else { g.seed };
        for arch in &archs {
            let kk: Vec<Option<usize>> = if uses_k(arch) {
                ks.iter().map(|&k| Some(k)).collect()
            } else {
                vec![None]
            };
            for &n in &ns {
                for &k in &kk {
                    for &seed in &seeds {
                        specs.push(SaeSpec {
                            arch: arch.clone(),
                            n: Some(n),
                            k,
                            seed: Some(seed),
                            ..SaeSpec::default()
                        });
                    }
                }
            }
        }
    }
    specs.extend(explicit);
    let mut out: Vec<Planned> = Vec::new();
    for s in &specs {
        let n = s.n.unwrap_or(4 * d);
        let seed = s.seed.unwrap_or(49);
        let arch = arch_spec(s, a)?;
        let name = s
            .name
            .clone()
            .unwrap_or_else(|| match (uses_k(&s.arch), s.k.unwrap_or(16)) {
                (true, k) => format!("{}-n{n}-k{k}-s{seed}", s.arch),
                (false, _) => format!("{}-n{n}-s{seed}", s.arch),
            });
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            bail!("SAE name {name:?} is not a plain folder name");
        }
        if out.iter().any(|p| p.name == name) {
            bail!("two SAEs of the sweep share the name {name}; give one a `name`");
        }
        out.push(Planned {
            name,
            arch,
            n,
            seed,
        });
    }
    Ok(out)
}

/// Writes `text` to `path` atomically (temp file + rename).
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let store = ActivationStore::open(&a.store)?;
    let spec = store.spec().clone();
    let hook = a.hook.clone().unwrap_or_else(|| spec.hooks[0].clone());
    let d = spec.d;
    let planned = plan(a, d)?;
    let data_seed = a
        .data_seed
        .unwrap_or_else(|| planned.first().map_or(49, |p| p.seed));
    let total_vectors = store.rows() * spec.seq_len as u64;
    let steps = match (a.steps, a.tokens) {
        (Some(s), _) => s,
        (None, Some(t)) => t / a.batch.max(1) as u64,
        (None, None) => total_vectors / a.batch.max(1) as u64,
    };
    if steps == 0 {
        bail!(
            "{}: {total_vectors} vectors make no full batch of {}",
            a.store.display(),
            a.batch
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;

    // The run's identity: resuming requires the same one. Floats as text:
    // JSON number parsing need not round-trip the last bit.
    let run_id = serde_json::json!({
        "store": a.store.to_string_lossy(), "store_rows": store.rows(), "model_hash": spec.model.hash,
        "hook": hook, "saes": planned.iter().map(|p| serde_json::json!({"name": p.name, "arch": format!("{:?}", p.arch), "n": p.n, "seed": p.seed})).collect::<Vec<_>>(),
        "data_seed": data_seed, "b_dec_init": a.b_dec_init, "encoder_precision": a.encoder_precision,
        "l1_coeff": a.l1_coeff.to_string(), "l0_coeff": a.l0_coeff.to_string(), "lr": a.lr.to_string(), "batch": a.batch, "steps": steps,
        "auxk": !a.no_auxk, "buffer_vectors": a.buffer_vectors, "checkpoint_every": a.checkpoint_every,
    });
    let progress_path = a.out.join("progress.json");
    let mut start_step = 0u64;
    if progress_path.exists() {
        let text = std::fs::read_to_string(&progress_path)?;
        let p: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: bad JSON", progress_path.display()))?;
        if p["run"] != run_id {
            bail!(
                "{}: holds a different training run; use another --out (stored: {}, requested: {})",
                progress_path.display(),
                p["run"],
                run_id
            );
        }
        if p["complete"].as_bool() == Some(true) {
            eprintln!(
                "{}: training is already complete; nothing to do",
                a.out.display()
            );
            return Ok(());
        }
        start_step = p["step"].as_u64().unwrap_or(0);
    }

    let b_dec_init = match a.b_dec_init.as_str() {
        "mean" => BDecInit::Mean,
        "geometric-median" => BDecInit::GeometricMedian,
        _ => BDecInit::Zeros,
    };
    if a.encoder_precision == "bf16" && !saelab_sae::kernels::bf16_available() {
        eprintln!(
            "warning: this CPU has no AVX512_BF16; --encoder-precision bf16 uses a slow portable \
             kernel (same numbers)"
        );
    }
    let mut runs = Vec::new();
    for p in planned {
        let mut sae = SaeConfig::new(d, p.n, p.arch.clone());
        sae.input_unit_norm = true;
        let mut cfg = TrainConfig::new(sae);
        cfg.seed = p.seed;
        cfg.lr = a.lr;
        cfg.aux.enabled = !a.no_auxk;
        cfg.b_dec_init = b_dec_init;
        cfg.encoder_precision = if a.encoder_precision == "bf16" {
            EncoderPrecision::Bf16
        } else {
            EncoderPrecision::F32
        };
        let name = p.name;
        let dir = a.out.join(&name);
        std::fs::create_dir_all(&dir)?;
        let ckpt = dir.join("checkpoint.safetensors");
        let trainer = if start_step > 0 {
            let st = TrainerState::load(&ckpt).with_context(|| format!("resuming {name}"))?;
            Trainer::from_state(cfg.clone(), st).with_context(|| format!("resuming {name}"))?
        } else {
            Trainer::new(cfg.clone()).with_context(|| format!("configuring {name}"))?
        };
        if trainer.steps() != start_step {
            bail!(
                "{}: checkpoint is at step {}, progress.json says {start_step}",
                ckpt.display(),
                trainer.steps()
            );
        }
        // Keep the log consistent with the checkpoint.
        let mpath = dir.join("metrics.jsonl");
        let kept: String = std::fs::read_to_string(&mpath)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= start_step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&mpath, &kept)?;
        let metrics = std::fs::OpenOptions::new().append(true).open(&mpath)?;
        runs.push(Run {
            name,
            dir,
            cfg,
            trainer,
            metrics,
        });
    }
    eprintln!(
        "training {} SAE(s) on {} ({hook}, d {d}) for {steps} steps of {} vectors{}",
        runs.len(),
        a.store.display(),
        a.batch,
        if start_step > 0 {
            format!(", resuming at step {start_step}")
        } else {
            String::new()
        }
    );

    let mut stream = BatchStream::new(
        &store,
        &hook,
        a.batch,
        data_seed,
        None,
        a.buffer_vectors.max(a.batch),
    )?;
    let mut batch = Vec::new();
    for _ in 0..start_step {
        if !stream.next_into(&mut batch)? {
            bail!(
                "{}: the batch stream ended while skipping to step {start_step}",
                a.store.display()
            );
        }
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} train [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(start_step);
    let abort_after: Option<u64> = std::env::var("SAELAB_TEST_ABORT_AFTER_CHECKPOINTS")
        .ok()
        .and_then(|v| v.parse().ok());
    // Test hook: behave as if Ctrl-C arrived before this step.
    let interrupt_at: Option<u64> = std::env::var("SAELAB_TEST_INTERRUPT_AT_STEP")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut checkpoints = 0u64;
    let started = std::time::Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // A second handler cannot be installed (tests call run() twice in
        // one process); the first one still sets a flag we then ignore.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let save_all = |runs: &[Run], done: u64| -> Result<()> {
        for r in runs {
            r.trainer
                .state()
                .save(&r.dir.join("checkpoint.safetensors"))
                .with_context(|| format!("checkpointing {}", r.name))?;
        }
        write_atomic(
            &progress_path,
            &serde_json::json!({"run": run_id, "step": done, "complete": false}).to_string(),
        )
    };
    let mut last_ckpt = start_step;
    for step in start_step..steps {
        if interrupt_at == Some(step) {
            interrupted.store(true, Ordering::SeqCst);
        }
        if interrupted.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            if step > last_ckpt {
                save_all(&runs, step)?;
            }
            bail!(
                "interrupted at step {step} of {steps}; checkpoint written to {}: run the same command again to resume",
                a.out.display()
            );
        }
        if !stream.next_into(&mut batch)? {
            bail!(
                "{}: the batch stream ended at step {step}",
                a.store.display()
            );
        }
        let mut msg = String::new();
        for r in runs.iter_mut() {
            let m = match r.trainer.step(&batch) {
                Ok(m) => m,
                Err(e @ saelab_sae::SaeError::Diverged { .. }) => {
                    bar.finish_and_clear();
                    bail!(
                        "{}: {e}; the last checkpoint (step {last_ckpt}) is kept in {}: rerun with a lower --lr in a new --out, or resume after fixing the data",
                        r.name,
                        r.dir.display()
                    );
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("{} at step {}", r.name, step + 1))
                }
            };
            if m.step % a.log_every == 0 || m.step == steps {
                writeln!(r.metrics, "{}", serde_json::to_string(&m)?)?;
            }
            if msg.is_empty() {
                msg = format!(
                    "fvu {:.3} L0 {:.1} dead {:.1}%",
                    m.fvu,
                    m.l0,
                    100.0 * m.dead_fraction
                );
            }
        }
        bar.set_message(msg);
        bar.inc(1);
        let done = step + 1;
        if done % a.checkpoint_every == 0 && done < steps {
            save_all(&runs, done)?;
            last_ckpt = done;
            checkpoints += 1;
            if abort_after.is_some_and(|n| checkpoints >= n) {
                // Test hook: die like a SIGKILL would.
                std::process::abort();
            }
        }
    }
    bar.finish_and_clear();
    let meta = |r: &Run| ExportMeta {
        model_name: spec.model.id.clone(),
        hook_name: hook.clone(),
        context_size: spec.seq_len,
        prepend_bos: true,
        dataset_path: spec.dataset.name.clone(),
        extra: serde_json::json!({"saelab_train_config": r.cfg, "store": a.store.to_string_lossy(),
                                   "data_seed": data_seed, "steps": steps, "batch": a.batch})
        .as_object()
        .cloned()
        .unwrap_or_default(),
    };
    for r in &runs {
        let freq = r.trainer.feature_frequency();
        saelab_sae::save_sae(&r.dir, r.trainer.sae(), &meta(r), Some(&freq))
            .with_context(|| format!("saving {}", r.name))?;
        let _ = std::fs::remove_file(r.dir.join("checkpoint.safetensors"));
    }
    write_atomic(
        &progress_path,
        &serde_json::json!({"run": run_id, "step": steps, "complete": true}).to_string(),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let vecs = (steps - start_step) * a.batch as u64;
    eprintln!(
        "{}: {} SAE(s), {steps} steps; this run {vecs} vectors in {secs:.1} s ({:.0} vectors/s per pass)",
        a.out.display(),
        runs.len(),
        vecs as f64 / secs.max(1e-9)
    );
    Ok(())
}
