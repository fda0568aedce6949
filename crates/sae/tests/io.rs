//! Files and errors: save → load round trips give identical encode output
//! for every architecture (through our files and through the SAELens view
//! alone), pre-6.0 SAELens and sparsify directories load, sparsity values
//! are right, SAELens TopK with `rescale_acts_by_decoder_norm` and without
//! b_dec subtraction matches its definition, and bad input gives clear errors.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::{
    load_sae, save_sae, ArchSpec, ExportMeta, Sae, SaeConfig, SaeError, SaeParams, TrainConfig,
    Trainer, TrainerState,
};
use std::collections::HashMap;
use std::path::Path;

const D: usize = 24;
const N: usize = 96;

fn batch(seed: u64, rows: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * D).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn trained(spec: ArchSpec) -> Trainer {
    let mut c = TrainConfig::new(SaeConfig::new(D, N, spec));
    c.lr = 1e-2;
    let mut t = Trainer::new(c).unwrap();
    for s in 0..5 {
        t.step(&batch(s, 128)).unwrap();
    }
    t
}

fn all_specs() -> Vec<ArchSpec> {
    vec![
        ArchSpec::TopK { k: 6 },
        ArchSpec::BatchTopK {
            k: 6,
            threshold_ema_rate: 0.5,
        },
        ArchSpec::MatryoshkaBatchTopK {
            k: 6,
            group_sizes: vec![],
            threshold_ema_rate: 0.5,
        },
        ArchSpec::Relu { l1_coeff: 1e-3 },
        ArchSpec::JumpRelu {
            l0_coeff: 1e-3,
            bandwidth: 0.001,
            init_threshold: 0.05,
            apply_b_dec_to_input: false,
        },
    ]
}

fn write_st(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.2.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            (
                t.0.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.1.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        path,
        safetensors::tensor::serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
}

#[test]
fn round_trip_every_architecture() {
    let x = batch(99, 40);
    for spec in all_specs() {
        let t = trained(spec.clone());
        let dir = tempfile::tempdir().unwrap();
        let meta = ExportMeta {
            model_name: "gpt2".into(),
            hook_name: "blocks.8.hook_resid_pre".into(),
            context_size: 128,
            prepend_bos: true,
            dataset_path: "synthetic".into(),
            ..ExportMeta::default()
        };
        save_sae(dir.path(), t.sae(), &meta, Some(&t.feature_frequency())).unwrap();
        let want = t.sae().encode(&x).unwrap();
        assert!(want.nnz() > 0, "{}: test needs active codes", spec.name());
        let back = load_sae(dir.path()).unwrap();
        assert_eq!(back.config(), t.sae().config());
        assert_eq!(
            back.encode(&x).unwrap(),
            want,
            "{} via saelab_cfg.json",
            spec.name()
        );
        assert_eq!(
            back.reconstruct(&x).unwrap(),
            t.sae().reconstruct(&x).unwrap()
        );

        // The SAELens view alone gives the same codes.
        std::fs::remove_file(dir.path().join("saelab_cfg.json")).unwrap();
        let lens = load_sae(dir.path()).unwrap();
        let got = lens.encode(&x).unwrap();
        assert_eq!(got, want, "{} via SAELens cfg.json", spec.name());

        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("cfg.json")).unwrap())
                .unwrap();
        for key in [
            "d_in",
            "d_sae",
            "dtype",
            "device",
            "apply_b_dec_to_input",
            "normalize_activations",
            "reshape_activations",
            "architecture",
            "metadata",
        ] {
            assert!(cfg.get(key).is_some(), "cfg.json lacks {key}");
        }
        assert_eq!(cfg["normalize_activations"], "layer_norm");
        assert_eq!(cfg["metadata"]["saelab_input_unit_norm"], true);
        assert_eq!(cfg["metadata"]["hook_name"], "blocks.8.hook_resid_pre");
        if let ArchSpec::TopK { k } = spec {
            assert_eq!(cfg["k"], k);
        }

        let sp = std::fs::read(dir.path().join("sparsity.safetensors")).unwrap();
        let sp = safetensors::SafeTensors::deserialize(&sp).unwrap();
        let s: Vec<f32> = sp
            .tensor("sparsity")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for (v, f) in s.iter().zip(t.feature_frequency()) {
            assert!((v - (f as f64 + 1e-10).log10() as f32).abs() < 1e-6);
        }
        // No temp files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

fn random_params(seed: u64) -> SaeParams {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = SaeParams::init(D, N, None, &mut rng);
    p.b_enc
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-0.1..0.1));
    p.b_dec
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-0.1..0.1));
    p
}

#[test]
fn loads_pre6_saelens_and_sparsify() {
    let p = random_params(1);
    let mut cfg = SaeConfig::new(D, N, ArchSpec::TopK { k: 5 });
    cfg.input_unit_norm = false;
    let want_sae = Sae::new(cfg, p.clone()).unwrap();
    let x = batch(3, 10);
    let want = want_sae.encode(&x).unwrap();

    // Pre-6.0 SAELens: activation_fn_str + activation_fn_kwargs, hook_point.
    let dir = tempfile::tempdir().unwrap();
    write_st(
        &dir.path().join("sae_weights.safetensors"),
        &[
            ("W_enc", vec![D, N], p.w_enc_dn()),
            ("W_dec", vec![N, D], p.w_dec.clone()),
            ("b_enc", vec![N], p.b_enc.clone()),
            ("b_dec", vec![D], p.b_dec.clone()),
        ],
    );
    let cfg = serde_json::json!({
        "d_in": D, "d_sae": N, "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8,
        "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5},
        "apply_b_dec_to_input": true, "normalize_activations": "none", "model_name": "gpt2"
    });
    std::fs::write(dir.path().join("cfg.json"), cfg.to_string()).unwrap();
    assert_eq!(load_sae(dir.path()).unwrap().encode(&x).unwrap(), want);

    // sparsify: encoder.weight [n, d], encoder.bias, W_dec, b_dec; cfg with k.
    let dir = tempfile::tempdir().unwrap();
    write_st(
        &dir.path().join("sae.safetensors"),
        &[
            ("encoder.weight", vec![N, D], p.w_enc_t.clone()),
            ("encoder.bias", vec![N], p.b_enc.clone()),
            ("W_dec", vec![N, D], p.w_dec.clone()),
            ("b_dec", vec![D], p.b_dec.clone()),
        ],
    );
    let cfg = serde_json::json!({"expansion_factor": 4, "normalize_decoder": true, "num_latents": N,
        "k": 5, "multi_topk": false, "d_in": D});
    std::fs::write(dir.path().join("cfg.json"), cfg.to_string()).unwrap();
    assert_eq!(load_sae(dir.path()).unwrap().encode(&x).unwrap(), want);

    // sparsify with a d mismatch between cfg and weights.
    let cfg = serde_json::json!({"k": 5, "d_in": D + 1});
    std::fs::write(dir.path().join("cfg.json"), cfg.to_string()).unwrap();
    assert!(matches!(load_sae(dir.path()), Err(SaeError::Shape(_))));
}

#[test]
fn clear_errors() {
    // k > n, n < 1.
    let e = SaeConfig::new(D, 4, ArchSpec::TopK { k: 5 })
        .validate()
        .unwrap_err();
    assert!(
        matches!(e, SaeError::InvalidConfig(_)) && e.to_string().contains("k = 5"),
        "{e}"
    );
    let e = Trainer::new(TrainConfig::new(SaeConfig::new(
        D,
        0,
        ArchSpec::TopK { k: 1 },
    )))
    .unwrap_err();
    assert!(e.to_string().contains("d_sae"), "{e}");

    // d mismatch, NaN/Inf naming the row.
    let mut t = Trainer::new(TrainConfig::new(SaeConfig::new(
        D,
        N,
        ArchSpec::TopK { k: 4 },
    )))
    .unwrap();
    let e = t.step(&vec![0.5; D * 3 + 1]).unwrap_err();
    assert!(matches!(e, SaeError::Shape(_)), "{e}");
    let mut x = batch(1, 6);
    x[3 * D + 7] = f32::NAN;
    let e = t.step(&x).unwrap_err();
    assert!(matches!(e, SaeError::NonFinite { row: 3, col: 7 }), "{e}");
    assert!(e.to_string().contains("row 3"));
    x[3 * D + 7] = 0.0;
    x[5 * D] = f32::INFINITY;
    assert!(matches!(
        t.sae().encode(&x),
        Err(SaeError::NonFinite { row: 5, .. })
    ));

    // Unknown architecture in a SAELens cfg and in ours; missing tensor.
    let t = trained(ArchSpec::TopK { k: 4 });
    let dir = tempfile::tempdir().unwrap();
    save_sae(dir.path(), t.sae(), &ExportMeta::default(), None).unwrap();
    let ours = dir.path().join("saelab_cfg.json");
    let text = std::fs::read_to_string(&ours).unwrap();
    std::fs::write(&ours, text.replace("\"topk\"", "\"gated_v9\"")).unwrap();
    let e = load_sae(dir.path()).unwrap_err();
    assert!(
        matches!(e, SaeError::UnknownArchitecture { ref name, .. } if name == "gated_v9"),
        "{e}"
    );
    std::fs::remove_file(&ours).unwrap();
    let cfgp = dir.path().join("cfg.json");
    let text = std::fs::read_to_string(&cfgp).unwrap();
    std::fs::write(
        &cfgp,
        text.replace("\"architecture\": \"topk\"", "\"architecture\": \"gated\""),
    )
    .unwrap();
    let e = load_sae(dir.path()).unwrap_err();
    assert!(
        matches!(e, SaeError::UnknownArchitecture { ref name, .. } if name == "gated"),
        "{e}"
    );
    std::fs::write(&cfgp, text).unwrap();
    let p = t.sae().params();
    write_st(
        &dir.path().join("sae_weights.safetensors"),
        &[
            ("W_enc", vec![D, N], p.w_enc_dn()),
            ("W_dec", vec![N, D], p.w_dec.clone()),
            ("b_enc", vec![N], p.b_enc.clone()),
        ],
    );
    let e = load_sae(dir.path()).unwrap_err();
    assert!(
        matches!(e, SaeError::MissingTensor { ref name, .. } if name == "b_dec"),
        "{e}"
    );

    // Resume state from a different config.
    let st_path = dir.path().join("state");
    t.state().save(&st_path).unwrap();
    let mut other = t.config().clone();
    other.sae.arch = ArchSpec::TopK { k: 5 };
    let e = Trainer::from_state(other, TrainerState::load(&st_path).unwrap()).unwrap_err();
    assert!(
        matches!(e, SaeError::StateMismatch(ref m) if m.contains("sae")),
        "{e}"
    );
    let mut other = t.config().clone();
    other.lr = 1.0;
    let e = Trainer::from_state(other, TrainerState::load(&st_path).unwrap()).unwrap_err();
    assert!(e.to_string().contains("lr"), "{e}");
    // A file that is not a state.
    let e = TrainerState::load(&dir.path().join("sae_weights.safetensors")).unwrap_err();
    assert!(matches!(e, SaeError::Corrupt { .. }), "{e}");
}

#[test]
fn input_scale_is_folded_at_save() {
    use saelab_sae::expected_average_scale;
    let x = batch(5, 64);
    let scale = expected_average_scale(&x, D).unwrap();
    let mut sc = SaeConfig::new(D, N, ArchSpec::TopK { k: 6 });
    sc.input_unit_norm = false;
    sc.input_scale = Some(scale);
    let mut c = TrainConfig::new(sc);
    c.lr = 1e-2;
    let mut t = Trainer::new(c.clone()).unwrap();
    for s in 0..3 {
        t.step(&batch(s, 128)).unwrap();
    }
    // Mean norm after scaling is √d.
    let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
    let mean: f64 = xs
        .chunks(D)
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
        .sum::<f64>()
        / 64.0;
    assert!((mean - (D as f64).sqrt()).abs() < 1e-3);

    let dir = tempfile::tempdir().unwrap();
    save_sae(dir.path(), t.sae(), &ExportMeta::default(), None).unwrap();
    let back = load_sae(dir.path()).unwrap();
    assert_eq!(back.config().input_scale, None);
    let (a, b) = (
        t.sae().reconstruct(&x).unwrap(),
        back.reconstruct(&x).unwrap(),
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    let top = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        worst <= 1e-5 * top.max(1.0),
        "folded reconstruction differs by {worst}"
    );

    let mut both = c.sae.clone();
    both.input_unit_norm = true;
    assert!(matches!(both.validate(), Err(SaeError::InvalidConfig(_))));
}

/// SAELens v6 TopK with `rescale_acts_by_decoder_norm: true` and
/// `apply_b_dec_to_input: false`, against SAELens's definition computed
/// here: pre = x·W_enc + b_enc (no b_dec subtraction), pre_i ·= ‖W_dec,i‖,
/// codes = top-k, x̂ = Σ (f_i / ‖W_dec,i‖) W_dec,i + b_dec.
#[test]
fn saelens_topk_rescale_and_no_b_dec_subtraction() {
    let mut p = random_params(7);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let scales: Vec<f32> = (0..N).map(|_| rng.random_range(0.5..2.0)).collect();
    for (i, s) in scales.iter().enumerate() {
        p.w_dec[i * D..(i + 1) * D].iter_mut().for_each(|v| *v *= s);
    }
    let k = 5;
    let dir = tempfile::tempdir().unwrap();
    write_st(
        &dir.path().join("sae_weights.safetensors"),
        &[
            ("W_enc", vec![D, N], p.w_enc_dn()),
            ("W_dec", vec![N, D], p.w_dec.clone()),
            ("b_enc", vec![N], p.b_enc.clone()),
            ("b_dec", vec![D], p.b_dec.clone()),
        ],
    );
    let cfg = serde_json::json!({
        "d_in": D, "d_sae": N, "architecture": "topk", "k": k, "dtype": "float32",
        "apply_b_dec_to_input": false, "rescale_acts_by_decoder_norm": true,
        "normalize_activations": "none", "metadata": {"hook_name": "blocks.3.hook_resid_post"}
    });
    std::fs::write(dir.path().join("cfg.json"), cfg.to_string()).unwrap();
    let sae = load_sae(dir.path()).unwrap();
    let x = batch(9, 6);
    let codes = sae.encode(&x).unwrap();
    let recon = sae.reconstruct(&x).unwrap();
    let norm: Vec<f64> = (0..N)
        .map(|i| {
            p.w_dec[i * D..(i + 1) * D]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    for b in 0..6 {
        let xb = &x[b * D..(b + 1) * D];
        let mut pre: Vec<(f64, usize)> = (0..N)
            .map(|i| {
                let dot: f64 = (0..D)
                    .map(|j| xb[j] as f64 * p.w_enc_t[i * D + j] as f64)
                    .sum();
                ((dot + p.b_enc[i] as f64) * norm[i], i)
            })
            .collect();
        pre.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top: Vec<(f64, usize)> = pre.into_iter().take(k).filter(|t| t.0 > 0.0).collect();
        let (ix, vs) = codes.row(b);
        let mut got: Vec<(u32, f32)> = ix.iter().copied().zip(vs.iter().copied()).collect();
        got.sort_by_key(|g| g.0);
        let mut want: Vec<(u32, f64)> = top.iter().map(|&(v, i)| (i as u32, v)).collect();
        want.sort_by_key(|w| w.0);
        assert_eq!(got.len(), want.len(), "row {b}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "row {b}: latent");
            assert!(
                (g.1 as f64 - w.1).abs() <= 1e-4 * w.1.abs().max(1.0),
                "row {b}: {g:?} vs {w:?}"
            );
        }
        for j in 0..D {
            let mut xh = p.b_dec[j] as f64;
            for &(v, i) in &top {
                xh += v / norm[i] * p.w_dec[i * D + j] as f64;
            }
            let r = recon[b * D + j] as f64;
            assert!(
                (r - xh).abs() <= 1e-4 * xh.abs().max(1.0),
                "row {b} col {j}: {r} vs {xh}"
            );
        }
    }
}
