//! Reference trajectory: from the same f32 initial weights and the same 3
//! batches, parameters after each of 3 Adam steps match an independent
//! float64 PyTorch implementation (scripts/reference/sae_reference.py,
//! fixture tests/fixtures/sae/reference_trajectory.safetensors) for TopK,
//! BatchTopK, JumpReLU, Matryoshka BatchTopK (nested prefix losses) and
//! ReLU with decoder-norm-weighted L1, including input normalization, AuxK
//! and the decoder constraint; and TopK against a transcription of the
//! study's own code (bartbussmann/BatchTopK), which renormalizes the decoder
//! before Adam only.

use saelab_sae::params::transpose;
use saelab_sae::{ArchSpec, AuxConfig, SaeConfig, SaeParams, TrainConfig, Trainer};
use safetensors::SafeTensors;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/sae/reference_trajectory.safetensors"
);

fn get(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture lacks {name}"));
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Max |a − b| relative to the tensor's largest reference magnitude.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0.0f64, |a, &v| a.max(v.abs() as f64))
        .max(1e-12);
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

fn run(arch_name: &str, spec: ArchSpec) {
    run_with(arch_name, spec, |_| {});
}

fn run_with(arch_name: &str, spec: ArchSpec, edit: impl Fn(&mut TrainConfig)) {
    let errors = trajectory_errors(arch_name, spec, edit);
    for (what, e) in &errors {
        assert!(e <= &1e-5, "{arch_name} {what}: relative error {e:e}");
        if what.starts_with("step 3 ") {
            println!("{arch_name} {what}: relative error after 3 steps {e:.2e}");
        }
    }
}

/// Replays the fixture's 3 steps of `arch_name` and returns the relative
/// error of every checked quantity (loss and each parameter per step, the
/// BatchTopK threshold), named.
fn trajectory_errors(
    arch_name: &str,
    spec: ArchSpec,
    edit: impl Fn(&mut TrainConfig),
) -> Vec<(String, f64)> {
    let bytes = std::fs::read(FIXTURE).expect("fixture present");
    let st = SafeTensors::deserialize(&bytes).expect("valid fixture");
    let (d, n) = (16, 64);
    let w_enc = get(&st, "init.W_enc");
    let jump = arch_name == "jumprelu";
    let params = SaeParams {
        d,
        n,
        w_enc_t: transpose(&w_enc, d, n),
        b_enc: get(&st, "init.b_enc"),
        w_dec: get(&st, "init.W_dec"),
        b_dec: get(&st, "init.b_dec"),
        log_threshold: if jump {
            get(&st, "init.log_threshold")
        } else {
            vec![]
        },
    };
    let mut cfg = TrainConfig::new(SaeConfig::new(d, n, spec));
    cfg.lr = 5e-3;
    cfg.aux = AuxConfig {
        k_aux: 8,
        dead_after: 1,
        ..AuxConfig::default()
    };
    edit(&mut cfg);
    let mut t = Trainer::with_params(cfg, params).unwrap();
    let mut errors = Vec::new();
    for step in 1..=3 {
        let batch = get(&st, &format!("batch{}", step - 1));
        let m = t.step(&batch).unwrap();
        if matches!(
            arch_name,
            "topk" | "study_topk" | "batchtopk" | "matryoshka"
        ) {
            assert!(m.aux_loss > 0.0, "the trajectory should exercise AuxK");
        }
        let want_loss = get(&st, &format!("{arch_name}.step{step}.loss"))[0] as f64;
        errors.push((
            format!("step {step} loss"),
            (m.loss - want_loss).abs() / want_loss.abs(),
        ));
        let p = t.sae().params();
        let mut checks = vec![
            ("W_enc", p.w_enc_dn()),
            ("W_dec", p.w_dec.clone()),
            ("b_dec", p.b_dec.clone()),
            ("b_enc", p.b_enc.clone()),
        ];
        if jump {
            checks.push(("log_threshold", p.log_threshold.clone()));
        }
        for (name, got) in checks {
            let want = get(&st, &format!("{arch_name}.step{step}.{name}"));
            errors.push((format!("step {step} {name}"), rel_err(&got, &want)));
        }
    }
    if matches!(arch_name, "batchtopk" | "matryoshka") {
        let want = get(&st, &format!("{arch_name}.threshold"))[0];
        let got = t.sae().arch().state()[0];
        errors.push((
            "threshold".into(),
            f64::from((got - want).abs()) / f64::from(want.abs()),
        ));
    }
    errors
}

#[test]
fn reference_topk() {
    run("topk", ArchSpec::TopK { k: 4 });
}

#[test]
fn study_code_topk() {
    run_with("study_topk", ArchSpec::TopK { k: 4 }, |c| {
        c.renormalize_after_step = false;
    });
}

#[test]
fn study_code_differs_from_the_default_by_the_renormalization() {
    // saelab's default (rows renormalized after Adam too) leaves the study
    // code's trajectory by far more than the tolerance: the option is what
    // makes `study_code_topk` pass.
    let worst = |errors: Vec<(String, f64)>| {
        errors
            .into_iter()
            .filter(|(w, _)| w.contains("W_"))
            .map(|(_, e)| e)
            .fold(0.0, f64::max)
    };
    let default = worst(trajectory_errors(
        "study_topk",
        ArchSpec::TopK { k: 4 },
        |_| {},
    ));
    let study = worst(trajectory_errors(
        "study_topk",
        ArchSpec::TopK { k: 4 },
        |c| {
            c.renormalize_after_step = false;
        },
    ));
    println!("study code vs saelab default: {default:.2e}; with the option: {study:.2e}");
    assert!(default > 1e-4, "{default:e}");
    assert!(study <= 1e-5, "{study:e}");
}

#[test]
fn reference_batchtopk() {
    run(
        "batchtopk",
        ArchSpec::BatchTopK {
            k: 4,
            threshold_ema_rate: 0.01,
        },
    );
}

#[test]
fn reference_jumprelu() {
    run(
        "jumprelu",
        ArchSpec::JumpRelu {
            l0_coeff: 0.01,
            bandwidth: 0.05,
            init_threshold: 0.1,
            apply_b_dec_to_input: false,
        },
    );
}

#[test]
fn reference_matryoshka() {
    run(
        "matryoshka",
        ArchSpec::MatryoshkaBatchTopK {
            k: 4,
            // The default prefixes for n 64: 4, 4, 8, 16, 32 (as the fixture).
            group_sizes: vec![],
            threshold_ema_rate: 0.01,
        },
    );
}

#[test]
fn reference_relu() {
    run("relu", ArchSpec::Relu { l1_coeff: 0.01 });
}
