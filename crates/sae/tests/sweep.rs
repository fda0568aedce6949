//! `saelab_sae::sweep` on an in-memory source: plan resolution and its
//! errors, settings validation, stop + resume = straight run byte for byte,
//! recovery from the leftovers of a kill (half-written step folder, temp
//! files, complete-but-not-cleaned), typed identity mismatches named by
//! field, and the run-folder lock.

use saelab_sae::defaults::ArchName;
use saelab_sae::sweep::{
    self, ArchDefaults, GridSpec, MemorySource, NoProgress, SaePlan, SaeSpec, SweepError,
    SweepProgress, SweepSettings, SweepSpec,
};
use saelab_sae::{ExportMeta, StepMetrics};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const D: usize = 8;

fn source(batch: usize) -> MemorySource {
    let data: Vec<f32> = (0..96 * D)
        .map(|i| (i as f32 * 0.61).sin() + (i % D) as f32 * 0.05)
        .collect();
    let meta = ExportMeta {
        model_name: "m".into(),
        hook_name: "blocks.0.hook_resid_pre".into(),
        context_size: 4,
        prepend_bos: true,
        dataset_path: "synthetic".into(),
        extra: Default::default(),
    };
    MemorySource::new(data, D, batch, meta).unwrap()
}

fn plan() -> Vec<SaePlan> {
    let spec = SweepSpec {
        grid: Some(GridSpec {
            arch: Some(vec![ArchName::TopK, ArchName::BatchTopK]),
            n: Some(vec![16]),
            k: Some(vec![2]),
            seed: None,
        }),
        sae: vec![SaeSpec {
            n: Some(12),
            name: Some("jr".into()),
            ..SaeSpec::new(ArchName::JumpRelu)
        }],
    };
    spec.resolve(D, &ArchDefaults::default()).unwrap()
}

fn settings() -> SweepSettings {
    SweepSettings {
        batch: 16,
        steps: Some(11),
        checkpoint_every: 3,
        log_every: 2,
        ..SweepSettings::default()
    }
}

struct StopAfter<'a>(u64, &'a AtomicBool);

impl SweepProgress for StopAfter<'_> {
    fn step(&self, m: &StepMetrics) {
        if m.step == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

fn go(
    out: &Path,
    s: &SweepSettings,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<sweep::SweepSummary, SweepError> {
    sweep::run(out, &plan(), s, &mut source(s.batch), progress, stop)
}

fn straight(out: &Path) {
    let s = go(out, &settings(), &NoProgress, &AtomicBool::new(false)).unwrap();
    assert_eq!((s.steps, s.start_step, s.already_complete), (11, 0, false));
}

fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for p in plan() {
        for f in [
            "sae_weights.safetensors",
            "cfg.json",
            "sparsity.safetensors",
            "saelab_cfg.json",
            "metrics.jsonl",
        ] {
            let path = out.join(&p.name).join(f);
            v.push((
                format!("{}/{f}", p.name),
                std::fs::read(&path).unwrap_or_default(),
            ));
        }
    }
    v
}

#[test]
fn grid_and_entries_resolve_in_order_with_defaults() {
    let names: Vec<String> = plan().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["topk-n16-k2-s49", "batchtopk-n16-k2-s49", "jr"]);
    let p = &plan()[2];
    assert_eq!(p.arch.name(), "jumprelu");
    // Unset n is 4·d; arch names parse from TOML, aliases too.
    let spec = SweepSpec::from_toml_str("[[sae]]\narch = \"matryoshka_batchtopk\"\n", "t").unwrap();
    let p = spec.resolve(D, &ArchDefaults::default()).unwrap();
    assert_eq!(
        (p[0].n, p[0].name.as_str()),
        (4 * D, "matryoshka-n32-k16-s49")
    );
}

#[test]
fn bad_specs_and_settings_are_errors() {
    for (text, want) in [
        ("[grid]\narch = []\n", "grid axis `arch` is empty"),
        ("[grid]\nn = []\n", "grid axis `n` is empty"),
        ("[grid]\nk = []\n", "grid axis `k` is empty"),
        ("[grid]\nwidth = [3]\n", "width"),
        ("[[sae]]\narch = \"gated\"\n", "gated"),
        ("", "lists no SAEs"),
        (
            "[[sae]]\narch = \"topk\"\nname = \"../x\"\n",
            "not a plain folder name",
        ),
        (
            "[[sae]]\narch = \"topk\"\nname = \"checkpoints\"\n",
            "not a plain folder name",
        ),
        (
            "[[sae]]\narch = \"relu\"\n[[sae]]\narch = \"relu\"\n",
            "share the name",
        ),
    ] {
        let err = SweepSpec::from_toml_str(text, "sweep.toml")
            .and_then(|s| s.resolve(D, &ArchDefaults::default()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    for (s, want) in [
        (
            SweepSettings {
                checkpoint_every: 0,
                ..settings()
            },
            "checkpoint_every",
        ),
        (
            SweepSettings {
                log_every: 0,
                ..settings()
            },
            "log_every",
        ),
        (
            SweepSettings {
                batch: 0,
                ..settings()
            },
            "batch",
        ),
        (
            SweepSettings {
                tokens: Some(64),
                ..settings()
            },
            "not both",
        ),
        (
            SweepSettings {
                lr: -1.0,
                ..settings()
            },
            "lr",
        ),
        (
            SweepSettings {
                steps: Some(0),
                ..settings()
            },
            "0 training steps",
        ),
    ] {
        let err = sweep::run(
            dir.path(),
            &plan(),
            &s,
            &mut source(16),
            &NoProgress,
            &AtomicBool::new(false),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(want), "{err}");
    }
    // A bad SAE config is refused before the folder is claimed.
    let mut p = plan();
    p[0].arch = saelab_sae::ArchSpec::TopK { k: 99 };
    let err = sweep::run(
        dir.path(),
        &p,
        &settings(),
        &mut source(16),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("topk-n16-k2-s49: configuring") && err.contains("k = 99"),
        "{err}"
    );
    assert!(!dir.path().join("progress.json").exists());
}

#[test]
fn stop_then_resume_equals_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    straight(&a);
    assert!(!a.join("checkpoints").exists());
    let log = std::fs::read_to_string(a.join("jr/metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        6,
        "steps 2, 4, 6, 8, 10 and the last, 11"
    );
    // The exported config says which kernel ran the (f32) encoder product.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("jr/cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["saelab_encoder_product_path"], "gemm");

    // Stopped after step 7 (between checkpoints 6 and 9): a checkpoint at 7.
    let b = dir.path().join("b");
    let stop = AtomicBool::new(false);
    let err = go(&b, &settings(), &StopAfter(7, &stop), &stop).unwrap_err();
    assert!(
        matches!(err, SweepError::Interrupted { step: 7, .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("checkpoints/LATEST")).unwrap(),
        "step-00000007\n"
    );
    // What a kill mid-checkpoint and mid-write leaves behind.
    std::fs::create_dir_all(b.join("checkpoints/step-00000009")).unwrap();
    std::fs::write(b.join("checkpoints/step-00000009/jr.safetensors"), b"half").unwrap();
    std::fs::write(b.join("jr/.cfg.json.saelab-tmp.999999"), b"half").unwrap();
    std::fs::write(b.join(".progress.json.saelab-tmp.999999"), b"half").unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(b.join("jr/metrics.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"step\": 8, \"loss\"").unwrap();
    let s = go(&b, &settings(), &NoProgress, &AtomicBool::new(false)).unwrap();
    assert_eq!(s.start_step, 7);
    assert_eq!(outputs(&a), outputs(&b));
    assert!(!b.join("jr/.cfg.json.saelab-tmp.999999").exists());
    assert!(!b.join(".progress.json.saelab-tmp.999999").exists());

    // Complete but killed before the cleanup: the rerun only cleans up.
    std::fs::create_dir_all(b.join("checkpoints/step-00000009")).unwrap();
    let s = go(&b, &settings(), &NoProgress, &AtomicBool::new(false)).unwrap();
    assert!(s.already_complete);
    assert!(!b.join("checkpoints").exists());
    assert_eq!(outputs(&a), outputs(&b));
}

#[test]
fn another_run_in_the_folder_is_named_by_field() {
    let dir = tempfile::tempdir().unwrap();
    straight(dir.path());
    let other = SweepSettings {
        lr: 1e-3,
        ..settings()
    };
    let err = go(dir.path(), &other, &NoProgress, &AtomicBool::new(false)).unwrap_err();
    let SweepError::DifferentRun { fields, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        fields,
        &["saes[0].train.lr", "saes[1].train.lr", "saes[2].train.lr"],
        "{err}"
    );
    let mut p = plan();
    p[1].seed = 50;
    let err = sweep::run(
        dir.path(),
        &p,
        &settings(),
        &mut source(16),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("saes[1].train.seed") && !err.contains("saes[0]"),
        "{err}"
    );
}

#[test]
fn a_broken_latest_pointer_is_named_and_a_locked_folder_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    go(dir.path(), &settings(), &StopAfter(4, &stop), &stop).unwrap_err();
    std::fs::write(dir.path().join("checkpoints/LATEST"), "step-00000099\n").unwrap();
    let err = go(
        dir.path(),
        &settings(),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("step-00000099"), "{err}");

    let lock = saelab_fsio::DirLock::acquire(dir.path()).unwrap();
    let err = go(
        dir.path(),
        &settings(),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("another saelab run holds this folder"),
        "{err}"
    );
    drop(lock);
}

#[test]
fn lanes_are_named_per_hook_and_checked_against_the_source() {
    let base = plan();
    let hooks = [
        "blocks.1.hook_resid_pre".to_string(),
        "blocks.2.hook_resid_pre".to_string(),
    ];
    let two = sweep::plan_per_lane(&base, &hooks);
    assert_eq!(two.len(), 2 * base.len());
    assert_eq!(
        two[0].name,
        format!("blocks.1.hook_resid_pre-{}", base[0].name)
    );
    assert_eq!(two[base.len()].lane, 1);
    assert_eq!(
        sweep::plan_per_lane(&base, &hooks[..1]),
        base,
        "one lane keeps the names"
    );
    // A one-lane source refuses SAEs of lane 1, before writing anything.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let s = settings();
    let e = sweep::run(
        &out,
        &two,
        &s,
        &mut source(s.batch),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lane 1") && e.contains("serves 1"), "{e}");
    assert!(!out.join("progress.json").exists());
}

#[test]
fn snapshots_are_the_run_stopped_there() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long");
    let s = SweepSettings {
        snapshot_steps: vec![4, 11, 50],
        ..settings()
    };
    sweep::run(
        &long,
        &plan(),
        &s,
        &mut source(s.batch),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap();
    let short = dir.path().join("short");
    let s4 = SweepSettings {
        steps: Some(4),
        ..settings()
    };
    sweep::run(
        &short,
        &plan(),
        &s4,
        &mut source(s.batch),
        &NoProgress,
        &AtomicBool::new(false),
    )
    .unwrap();
    for p in plan() {
        let snap = long
            .join(&p.name)
            .join("snapshots/step-00000004/sae_weights.safetensors");
        let want = std::fs::read(short.join(&p.name).join("sae_weights.safetensors")).unwrap();
        assert!(std::fs::read(&snap).unwrap() == want, "{}", p.name);
        // At or past the end: the final SAE stands for it, no snapshot.
        assert!(!long.join(&p.name).join("snapshots/step-00000011").exists());
    }
    let bad = SweepSettings {
        snapshot_steps: vec![0],
        ..settings()
    };
    let e = sweep::run(
        &dir.path().join("bad"),
        &plan(),
        &bad,
        &mut source(16),
        &NoProgress,
        &AtomicBool::new(false),
    );
    assert!(e.unwrap_err().to_string().contains("snapshot"));
}

#[test]
fn saes_trained_together_equal_each_trained_alone() {
    // The SAEs of a sweep share one set of step buffers (sizes 16, 16 and
    // 12 here, stepping in turn): each must come out as if trained alone.
    let all = tempfile::tempdir().unwrap();
    straight(all.path());
    for p in plan() {
        let alone = tempfile::tempdir().unwrap();
        let s = settings();
        sweep::run(
            alone.path(),
            std::slice::from_ref(&p),
            &s,
            &mut source(s.batch),
            &NoProgress,
            &AtomicBool::new(false),
        )
        .unwrap();
        for f in ["sae_weights.safetensors", "metrics.jsonl"] {
            let a = std::fs::read(all.path().join(&p.name).join(f)).unwrap();
            let b = std::fs::read(alone.path().join(&p.name).join(f)).unwrap();
            assert!(a == b, "{}/{f} differs when trained alone", p.name);
        }
    }
}
