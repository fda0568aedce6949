//! End-to-end `saelab train` on a store harvested from a tiny GPT-2: a grid
//! of SAEs from one pass, SAELens files that load back, resume after a stop
//! (the library's stop flag) or a real SIGKILL at random points (mid-step,
//! mid-checkpoint, mid-save) that ends bit-identical to an uninterrupted run.

use rand::{Rng, SeedableRng};
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use saelab_sae::defaults::ArchName;
use saelab_sae::sweep::{
    ArchDefaults, GridSpec, PlanRequest, SweepProgress, SweepSettings, SweepSpec,
};
use saelab_sae::StepMetrics;
use saelab_study::sources::train_from_store;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Raises the stop flag (as Ctrl-C does) once step `.0` is done.
struct StopAfter<'a>(u64, &'a AtomicBool);

impl SweepProgress for StopAfter<'_> {
    fn step(&self, m: &StepMetrics) {
        if m.step == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

/// The library call equal to `saelab train` with `settings` and the
/// default coefficients, stopped after step `stop_after`.
fn train_lib_stopped(
    store: &str,
    spec: &SweepSpec,
    settings: &SweepSettings,
    out: &str,
    stop_after: u64,
) -> String {
    let stop = AtomicBool::new(false);
    let err = train_from_store(
        Path::new(store),
        None,
        PlanRequest::Spec(spec, &ArchDefaults::default()),
        settings,
        Path::new(out),
        &StopAfter(stop_after, &stop),
        &stop,
    )
    .expect_err("the stop flag interrupts the run");
    err.to_string()
}

fn saelab(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_saelab"));
    c.args(args).env("RAYON_NUM_THREADS", "2");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn harvest(root: &Path) -> String {
    let mdir = root.join("gpt2-tiny");
    std::fs::create_dir(&mdir).unwrap();
    write_gpt2(&mdir, Gpt2Shape::TINY, 1234, "").unwrap();
    let text: String = (0..200)
        .map(|i| format!("{{\"text\": \"Line {i}: sparse autoencoders find features in the residual stream {}.\"}}\n", i * 3))
        .collect();
    let corpus = root.join("c.jsonl");
    std::fs::write(&corpus, text).unwrap();
    let store = root.join("store").to_string_lossy().to_string();
    let o = saelab(
        &[
            "harvest",
            "--model",
            mdir.to_str().unwrap(),
            "--dataset",
            corpus.to_str().unwrap(),
            "--hook",
            "blocks.2.hook_resid_pre",
            "--tokens",
            "8192",
            "--seq-len",
            "32",
            "--batch-rows",
            "16",
            "--rows-per-shard",
            "64",
            "--out",
            &store,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    store
}

fn train_args<'a>(store: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--store",
        store,
        "--arch",
        "topk",
        "--arch",
        "jumprelu",
        "--n",
        "128",
        "--k",
        "8",
        "--seed",
        "1",
        "--seed",
        "2",
        "--batch",
        "256",
        "--steps",
        "24",
        "--checkpoint-every",
        "8",
        "--log-every",
        "4",
        "--buffer-vectors",
        "2048",
        "--out",
        out,
    ]
}

#[test]
fn grid_trains_saves_and_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let store = harvest(dir.path());
    let a = dir.path().join("a").to_string_lossy().to_string();
    let o = saelab(&train_args(&store, &a), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = [
        "topk-n128-k8-s1",
        "topk-n128-k8-s2",
        "jumprelu-n128-s1",
        "jumprelu-n128-s2",
    ];
    for n in names {
        let d = Path::new(&a).join(n);
        let sae = saelab_sae::load_sae(&d).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!((sae.config().d_in, sae.config().d_sae), (64, 128));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(
            cfg["metadata"]["hook_name"], "blocks.2.hook_resid_pre",
            "{n}"
        );
        assert!(d.join("sparsity.safetensors").exists());
        let log = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 6, "{n}: one line every 4 steps");
        assert!(!d.join("checkpoint.safetensors").exists());
    }
    assert!(
        !Path::new(&a).join("checkpoints").exists(),
        "checkpoints deleted"
    );
    // Different seeds give different SAEs.
    let w = |run: &str, n: &str| {
        std::fs::read(Path::new(run).join(n).join("sae_weights.safetensors")).unwrap()
    };
    assert_ne!(w(&a, names[0]), w(&a, names[1]));

    // Stopped right after the second checkpoint (step 16), resumed by the
    // CLI: same bytes.
    let b = dir.path().join("b").to_string_lossy().to_string();
    let spec = SweepSpec {
        grid: Some(GridSpec {
            arch: Some(vec![ArchName::TopK, ArchName::JumpRelu]),
            n: Some(vec![128]),
            k: Some(vec![8]),
            seed: Some(vec![1, 2]),
        }),
        sae: vec![],
    };
    let settings = SweepSettings {
        batch: 256,
        steps: Some(24),
        checkpoint_every: 8,
        log_every: 4,
        buffer_vectors: 2048,
        ..SweepSettings::default()
    };
    let err = train_lib_stopped(&store, &spec, &settings, &b, 16);
    assert!(err.contains("interrupted at step 16"), "{err}");
    let o = saelab(&train_args(&store, &b), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("resuming at step 16"),
        "{err}"
    );
    for n in names {
        assert_eq!(w(&a, n), w(&b, n), "{n}");
        assert_eq!(
            std::fs::read_to_string(Path::new(&a).join(n).join("metrics.jsonl")).unwrap(),
            std::fs::read_to_string(Path::new(&b).join(n).join("metrics.jsonl")).unwrap(),
            "{n} metrics"
        );
    }
    // Done is done; another configuration in the same folder is refused.
    let o = saelab(&train_args(&store, &a), &[]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("already complete"));
    let mut other = train_args(&store, &a);
    other[10] = "12"; // --seed 2 -> 12
    let o = saelab(&other, &[]);
    assert!(
        !o.status.success()
            && String::from_utf8_lossy(&o.stderr).contains("different training run")
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = harvest(dir.path());
    let out = dir.path().join("o").to_string_lossy().to_string();
    let o = saelab(
        &[
            "train", "--store", &store, "--n", "32", "--k", "64", "--steps", "2", "--batch", "64",
            "--out", &out,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("k = 64 must be in 1..=n (n = 32)"),
        "{err}"
    );
    let o = saelab(&["train", "--store", "/no/store", "--out", &out], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("/no/store"), "{err}");
    let o = saelab(
        &[
            "train", "--store", &store, "--arch", "gated", "--out", &out, "--steps", "1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("gated"), "{err}");
    // Zero cadences and batches are errors, not a division by zero.
    for (flag, want) in [
        ("--checkpoint-every", "checkpoint_every"),
        ("--log-every", "log_every"),
        ("--batch", "batch"),
    ] {
        let o = saelab(
            &[
                "train", "--store", &store, "--steps", "2", flag, "0", "--out", &out,
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{flag}: {err}");
    }
    let o = saelab(
        &["--threads", "0", "train", "--store", &store, "--out", &out],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--threads 0"), "{err}");
}

/// A TOML sweep gives the same SAEs as the equivalent grid flags, plus
/// explicit entries; Ctrl-C (simulated) checkpoints mid-interval and the
/// resumed run ends bit-identical; bad sweep files are named.
#[test]
fn sweep_file_and_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = harvest(dir.path());
    let sweep = dir.path().join("sweep.toml");
    std::fs::write(
        &sweep,
        "[grid]\narch = [\"topk\"]\nn = [128]\nk = [8]\nseed = [1, 2]\n\n\
         [[sae]]\narch = \"batchtopk\"\nn = 96\nk = 4\nseed = 3\nname = \"btk\"\n\n\
         [[sae]]\narch = \"jumprelu\"\nn = 64\ninit_threshold = 0.5\nbandwidth = 0.01\nname = \"jr\"\n",
    )
    .unwrap();
    let common = |out: &str| -> Vec<String> {
        [
            "train",
            "--store",
            &store,
            "--batch",
            "256",
            "--steps",
            "12",
            "--checkpoint-every",
            "8",
            "--log-every",
            "4",
            "--buffer-vectors",
            "2048",
            "--data-seed",
            "1",
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>, envs: &[(&str, &str)]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        saelab(&a, envs)
    };
    let a = dir.path().join("a").to_string_lossy().to_string();
    let mut args = common(&a);
    args.extend(["--config".to_string(), sweep.to_string_lossy().to_string()]);
    let o = run(args.clone(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let flags = dir.path().join("flags").to_string_lossy().to_string();
    let mut fargs = common(&flags);
    fargs.extend(
        [
            "--arch", "topk", "--n", "128", "--k", "8", "--seed", "1", "--seed", "2",
        ]
        .map(String::from),
    );
    let o = run(fargs, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = |run: &str, n: &str| {
        std::fs::read(Path::new(run).join(n).join("sae_weights.safetensors")).unwrap()
    };
    for n in ["topk-n128-k8-s1", "topk-n128-k8-s2"] {
        assert_eq!(w(&a, n), w(&flags, n), "{n}: sweep file == flags");
    }
    // The bf16 encoder product: recorded in the SAELens cfg, different bits.
    let bf = dir.path().join("bf16").to_string_lossy().to_string();
    let mut bfargs = common(&bf);
    bfargs.extend(
        [
            "--arch",
            "topk",
            "--n",
            "128",
            "--k",
            "8",
            "--seed",
            "1",
            "--encoder-precision",
            "bf16",
        ]
        .map(String::from),
    );
    let o = run(bfargs, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&bf).join("topk-n128-k8-s1/cfg.json")).unwrap(),
    )
    .unwrap();
    let tc = &cfg["metadata"]["saelab_train_config"];
    assert_eq!(tc["encoder_precision"], "bf16", "{cfg}");
    assert_ne!(w(&bf, "topk-n128-k8-s1"), w(&flags, "topk-n128-k8-s1"));
    let btk = saelab_sae::load_sae(&Path::new(&a).join("btk")).unwrap();
    assert_eq!(btk.config().d_sae, 96);
    // Per-SAE JumpReLU settings reach the saved config.
    let jr: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&a).join("jr/saelab_cfg.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(jr["sae"]["arch"]["architecture"], "jumprelu");
    assert_eq!(jr["sae"]["arch"]["init_threshold"], 0.5);
    assert_eq!(
        jr["sae"]["arch"]["bandwidth"].as_f64(),
        Some(0.01f32 as f64)
    );

    // Stopped before step 6 (between checkpoints): a checkpoint at 5, an
    // error with a resume hint; the resumed run equals run `a`.
    let b = dir.path().join("b").to_string_lossy().to_string();
    let mut bargs = common(&b);
    bargs.extend(["--config".to_string(), sweep.to_string_lossy().to_string()]);
    let settings = SweepSettings {
        batch: 256,
        steps: Some(12),
        checkpoint_every: 8,
        log_every: 4,
        buffer_vectors: 2048,
        data_seed: Some(1),
        ..SweepSettings::default()
    };
    let spec = SweepSpec::from_toml_file(&sweep).unwrap();
    let err = train_lib_stopped(&store, &spec, &settings, &b, 5);
    assert!(err.contains("interrupted at step 5"), "{err}");
    let latest = Path::new(&b).join("checkpoints/LATEST");
    assert_eq!(std::fs::read_to_string(latest).unwrap(), "step-00000005\n");
    assert!(Path::new(&b)
        .join("checkpoints/step-00000005/btk.safetensors")
        .exists());
    let o = run(bargs, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("resuming at step 5"),
        "{err}"
    );
    for n in ["topk-n128-k8-s1", "topk-n128-k8-s2", "btk"] {
        assert_eq!(w(&a, n), w(&b, n), "{n}: interrupted + resumed == straight");
    }

    // Bad sweep files.
    for (text, want) in [
        ("[[sae]]\narch = \"gated\"\n", "gated"),
        ("[grid]\narch = [\"topk\"]\nwidth = 3\n", "width"),
        ("", "lists no SAEs"),
        (
            "[[sae]]\narch = \"topk\"\n[[sae]]\narch = \"topk\"\n",
            "share the name",
        ),
        ("[grid]\narch = []\n", "grid axis `arch` is empty"),
        ("[grid]\nseed = []\n", "grid axis `seed` is empty"),
    ] {
        std::fs::write(&sweep, text).unwrap();
        let c = dir.path().join("c").to_string_lossy().to_string();
        let mut cargs = common(&c);
        cargs.extend(["--config".to_string(), sweep.to_string_lossy().to_string()]);
        let o = run(cargs, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{text:?}: {err}");
    }
}

/// Files of a finished run that must not depend on interruptions.
const OUTPUTS: [&str; 5] = [
    "sae_weights.safetensors",
    "cfg.json",
    "sparsity.safetensors",
    "saelab_cfg.json",
    "metrics.jsonl",
];

fn assert_same_run(reference: &Path, run: &Path, names: &[&str], what: &str) {
    for n in names {
        for f in OUTPUTS {
            let read = |root: &Path| std::fs::read(root.join(n).join(f)).unwrap_or_default();
            assert!(
                read(reference) == read(run) && !read(run).is_empty(),
                "{what}: {n}/{f} differs from the uninterrupted run"
            );
        }
    }
    assert!(
        !run.join("checkpoints").exists(),
        "{what}: checkpoints left"
    );
    let mut stack = vec![run.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.contains(".saelab-tmp."),
                "{what}: temp file {p:?} left"
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

/// Whether a checkpoint is being written or the old one being deleted: a
/// step folder LATEST does not name.
fn checkpoint_in_flight(out: &Path) -> bool {
    let ck = out.join("checkpoints");
    let latest = std::fs::read_to_string(ck.join("LATEST")).unwrap_or_default();
    std::fs::read_dir(&ck).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("step-") && n != latest.trim()
        })
    })
}

/// Whether the final save has begun: an SAE file (or its temp file) exists.
fn final_save_begun(out: &Path, names: &[&str]) -> bool {
    names.iter().any(|n| {
        std::fs::read_dir(out.join(n)).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                let f = e.file_name().to_string_lossy().to_string();
                OUTPUTS[..4].iter().any(|o| f.contains(o))
            })
        })
    })
}

/// A 2-SAE grid killed with SIGKILL at ≥ 10 seeded points — after random
/// delays, while a checkpoint is in flight, while the final files are
/// being written — and resumed each time ends byte-identical to an
/// uninterrupted run.
#[test]
fn sigkill_at_random_points_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let store = harvest(dir.path());
    let names = ["topk-n128-k8-s1", "topk-n128-k8-s2"];
    let args = |out: &str| -> Vec<String> {
        [
            "train",
            "--store",
            &store,
            "--arch",
            "topk",
            "--n",
            "128",
            "--k",
            "8",
            "--seed",
            "1",
            "--seed",
            "2",
            "--batch",
            "256",
            "--steps",
            "40",
            "--checkpoint-every",
            "4",
            "--log-every",
            "2",
            "--buffer-vectors",
            "2048",
            "--out",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    let reference = dir.path().join("ref");
    let t0 = Instant::now();
    let a = args(reference.to_str().unwrap());
    let o = saelab(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = t0.elapsed();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20_240_611);
    let (mut kills, mut finished, mut fresh) = (0, 0, 0);
    // Kills that left a checkpoint in flight / a final save begun.
    let (mut mid_checkpoint, mut mid_save) = (0, 0);
    let mut out = dir.path().join("run-0");
    let started = Instant::now();
    while kills < 12 && started.elapsed() < Duration::from_secs(40) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_saelab"))
            .args(args(out.to_str().unwrap()))
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + full * 3;
        match kills % 3 {
            // Anywhere: startup, resume, a step.
            0 => std::thread::sleep(full.mul_f64(rng.random_range(0.0..1.0))),
            // While a checkpoint is written (or the old one deleted).
            1 => {
                while !checkpoint_in_flight(&out)
                    && Instant::now() < deadline
                    && child.try_wait().unwrap().is_none()
                {}
                std::thread::sleep(Duration::from_micros(rng.random_range(0..300)));
            }
            // While the final SAE files are written.
            _ => {
                while !final_save_begun(&out, &names)
                    && Instant::now() < deadline
                    && child.try_wait().unwrap().is_none()
                {}
                std::thread::sleep(Duration::from_micros(rng.random_range(0..500)));
            }
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            // It finished first: check it, start again in a fresh folder.
            assert_same_run(&reference, &out, &names, "finished between kills");
            finished += 1;
            fresh += 1;
            out = dir.path().join(format!("run-{fresh}"));
        } else {
            kills += 1;
            mid_checkpoint += usize::from(checkpoint_in_flight(&out));
            mid_save += usize::from(final_save_begun(&out, &names));
        }
    }
    assert!(
        kills >= 10,
        "only {kills} kills landed ({finished} runs finished first)"
    );
    assert!(
        mid_checkpoint >= 1 && mid_save >= 1,
        "kills mid-checkpoint {mid_checkpoint}, mid-save {mid_save}"
    );
    let a = args(out.to_str().unwrap());
    let o = saelab(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(&reference, &out, &names, "killed and resumed");
}
