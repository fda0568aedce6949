//! `saelab train`: train one or many SAEs side by side from a single pass over
//! an activation store (a grid over architecture × dictionary size × k ×
//! seed), with periodic checkpoints, automatic resume, a `metrics.jsonl` log
//! per SAE and SAELens-layout output files.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use saelab_data::store::{ActivationStore, BatchStream};
use saelab_sae::{ArchSpec, ExportMeta, SaeConfig, TrainConfig, Trainer, TrainerState};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f32,
    /// Activation vectors per step.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Training steps (default: one pass over the store, ⌊tokens / batch⌋).
    #[arg(long)]
    pub steps: Option<u64>,
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

fn arch_spec(name: &str, k: usize, a: &TrainArgs) -> Result<ArchSpec> {
    Ok(match name {
        "topk" => ArchSpec::TopK { k },
        "batchtopk" => ArchSpec::BatchTopK {
            k,
            threshold_ema_rate: 0.01,
        },
        "matryoshka" | "matryoshka_batchtopk" => ArchSpec::MatryoshkaBatchTopK {
            k,
            group_sizes: vec![],
            threshold_ema_rate: 0.01,
        },
        "relu" => ArchSpec::Relu {
            l1_coeff: a.l1_coeff,
        },
        "jumprelu" => ArchSpec::JumpRelu {
            l0_coeff: a.l0_coeff,
            bandwidth: 0.001,
            init_threshold: 0.001,
            apply_b_dec_to_input: false,
        },
        other => bail!("--arch `{other}`: expected topk, batchtopk, jumprelu, relu or matryoshka"),
    })
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
    let ns = if a.ns.is_empty() {
        vec![4 * d]
    } else {
        a.ns.clone()
    };
    let data_seed = a.data_seed.unwrap_or(a.seeds[0]);
    let total_vectors = store.rows() * spec.seq_len as u64;
    let steps = a.steps.unwrap_or(total_vectors / a.batch.max(1) as u64);
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
        "hook": hook, "archs": a.archs, "ns": ns, "ks": a.ks, "seeds": a.seeds, "data_seed": data_seed,
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

    let mut runs = Vec::new();
    for arch in &a.archs {
        let uses_k = !matches!(arch.as_str(), "relu" | "jumprelu");
        let ks: Vec<Option<usize>> = if uses_k {
            a.ks.iter().map(|&k| Some(k)).collect()
        } else {
            vec![None]
        };
        for &n in &ns {
            for &k in &ks {
                for &seed in &a.seeds {
                    let mut sae = SaeConfig::new(d, n, arch_spec(arch, k.unwrap_or(0), a)?);
                    sae.input_unit_norm = true;
                    let mut cfg = TrainConfig::new(sae);
                    cfg.seed = seed;
                    cfg.lr = a.lr;
                    cfg.aux.enabled = !a.no_auxk;
                    let name = match k {
                        Some(k) => format!("{arch}-n{n}-k{k}-s{seed}"),
                        None => format!("{arch}-n{n}-s{seed}"),
                    };
                    let dir = a.out.join(&name);
                    std::fs::create_dir_all(&dir)?;
                    let ckpt = dir.join("checkpoint.safetensors");
                    let trainer = if start_step > 0 {
                        let st = TrainerState::load(&ckpt)
                            .with_context(|| format!("resuming {name}"))?;
                        Trainer::from_state(cfg.clone(), st)
                            .with_context(|| format!("resuming {name}"))?
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
            }
        }
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
    let mut checkpoints = 0u64;
    let started = std::time::Instant::now();
    for step in start_step..steps {
        if !stream.next_into(&mut batch)? {
            bail!(
                "{}: the batch stream ended at step {step}",
                a.store.display()
            );
        }
        let mut msg = String::new();
        for r in runs.iter_mut() {
            let m = r
                .trainer
                .step(&batch)
                .with_context(|| format!("{} at step {}", r.name, step + 1))?;
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
            for r in &runs {
                r.trainer
                    .state()
                    .save(&r.dir.join("checkpoint.safetensors"))?;
            }
            write_atomic(
                &progress_path,
                &serde_json::json!({"run": run_id, "step": done, "complete": false}).to_string(),
            )?;
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
