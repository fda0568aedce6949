//! [`train_from_store`] on a tiny synthetic store: a straight run, a run
//! stopped by the flag and resumed from a copy of the store under another
//! path (same identity, same bytes), and a refused different run.

use super::*;
use saelab_data::store::{DatasetInfo, ModelInfo, StoreDtype, StoreSpec, StoreWriter};
use saelab_sae::sweep::{NoProgress, SaePlan, SweepProgress};
use saelab_sae::{ArchSpec, StepMetrics};
use std::sync::atomic::Ordering;

fn make_store(dir: &Path) {
    let spec = StoreSpec {
        model: ModelInfo {
            id: "m".into(),
            hash: "sha256:0".into(),
        },
        hooks: vec!["blocks.0.hook_resid_pre".into()],
        d: 8,
        dtype: StoreDtype::F32,
        seq_len: 4,
        packing: "concat".into(),
        dataset: DatasetInfo {
            name: "synthetic".into(),
            hash: "sha256:0".into(),
        },
        pos_intervention: "none".into(),
        seed: 1,
        rows_per_shard: 16,
        target_rows: Some(64),
        extra: Default::default(),
    };
    let mut w = StoreWriter::create_or_resume(dir, spec).unwrap();
    for r in 0..64u32 {
        let acts: Vec<f32> = (0..32)
            .map(|i| ((r * 32 + i) as f32 * 0.37).sin() + (i % 8) as f32 * 0.1)
            .collect();
        w.push_rows(&[r, r + 1, r + 2, r + 3], &[&acts]).unwrap();
    }
    w.finish().unwrap();
}

fn plan() -> Vec<SaePlan> {
    vec![
        SaePlan {
            name: "topk".into(),
            arch: ArchSpec::TopK { k: 2 },
            n: 16,
            seed: 1,
            lane: 0,
        },
        SaePlan {
            name: "relu".into(),
            arch: ArchSpec::Relu { l1_coeff: 1e-3 },
            n: 16,
            seed: 2,
            lane: 0,
        },
    ]
}

fn settings() -> SweepSettings {
    SweepSettings {
        batch: 32,
        steps: Some(10),
        buffer_vectors: 64,
        checkpoint_every: 3,
        log_every: 2,
        ..SweepSettings::default()
    }
}

/// Raises the stop flag after step `at`.
struct StopAt<'a>(u64, &'a AtomicBool);

impl SweepProgress for StopAt<'_> {
    fn step(&self, m: &StepMetrics) {
        if m.step == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    [
        "sae_weights.safetensors",
        "sparsity.safetensors",
        "saelab_cfg.json",
        "metrics.jsonl",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap())
    .collect()
}

#[test]
fn stopped_run_resumes_from_a_moved_store_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_store(&store);
    let (p, s) = (plan(), settings());
    let never = AtomicBool::new(false);
    let a = tmp.path().join("a");
    let sum = train_from_store(
        &store,
        None,
        PlanRequest::Plan(&p),
        &s,
        &a,
        &NoProgress,
        &never,
    )
    .unwrap();
    assert_eq!((sum.steps, sum.start_step, sum.saes.len()), (10, 0, 2));

    let b = tmp.path().join("b");
    let stop = AtomicBool::new(false);
    let err = train_from_store(
        &store,
        None,
        PlanRequest::Plan(&p),
        &s,
        &b,
        &StopAt(4, &stop),
        &stop,
    )
    .unwrap_err();
    assert!(err.to_string().contains("interrupted at step 4"), "{err}");
    let moved = tmp.path().join("moved-store");
    std::fs::rename(&store, &moved).unwrap();
    let sum = train_from_store(
        &moved,
        None,
        PlanRequest::Plan(&p),
        &s,
        &b,
        &NoProgress,
        &never,
    )
    .unwrap();
    assert_eq!(sum.start_step, 4);
    for n in ["topk", "relu"] {
        assert_eq!(files(&a.join(n)), files(&b.join(n)), "{n}");
    }
    assert!(!b.join("checkpoints").exists());

    // Another data seed is another run, named by its field.
    let other = SweepSettings {
        data_seed: Some(7),
        ..s
    };
    let err = train_from_store(
        &moved,
        None,
        PlanRequest::Plan(&p),
        &other,
        &b,
        &NoProgress,
        &never,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("different training run") && err.contains("source.data_seed"),
        "{err}"
    );
}

#[test]
fn a_missing_store_or_hook_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let p = plan();
    let out = tmp.path().join("o");
    let err = train_from_store(
        &tmp.path().join("nowhere"),
        None,
        PlanRequest::Plan(&p),
        &settings(),
        &out,
        &NoProgress,
        &never,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nowhere"), "{err}");
    let store = tmp.path().join("store");
    make_store(&store);
    let err = train_from_store(
        &store,
        Some("blocks.9.hook_resid_pre"),
        PlanRequest::Plan(&p),
        &settings(),
        &out,
        &NoProgress,
        &never,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("blocks.9.hook_resid_pre"), "{err}");
}
