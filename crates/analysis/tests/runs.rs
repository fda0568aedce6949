//! The model-pass runs and SAE loading of the library, on a tiny GPT-2:
//! broken SAE files are errors naming the file (non-finite weights: also
//! the tensor and row; a cfg.json that does not say which architecture),
//! invalid run settings are errors, and `eval::run` / `stats::run` give the
//! typed outputs their writers and the CLI read.

use saelab_analysis::eval::{self, EvalConfig, EvalError};
use saelab_analysis::stats::{self, StatsConfig, StatsError, StatsRunConfig};
use saelab_analysis::{load_saes, LoadError, NoProgress, RowsConfig};
use saelab_data::packing::Packing;
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use saelab_lm::{Model, PosIntervention};
use saelab_sae::{ArchSpec, ExportMeta, Sae, SaeConfig, SaeParams};
use std::path::{Path, PathBuf};

const HOOK: &str = "blocks.1.hook_resid_post";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: Model,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mdir = root.join("gpt2-tiny");
    std::fs::create_dir(&mdir).unwrap();
    write_gpt2(&mdir, Gpt2Shape::TINY, 11, "").unwrap();
    let text: String = (0..40)
        .map(|i| format!("Line {i} of a corpus about sparse features and positions.\n"))
        .collect();
    std::fs::write(root.join("c.txt"), text).unwrap();
    let model = Model::load(mdir.to_str().unwrap()).unwrap();
    Setup {
        _dir: dir,
        root,
        model,
    }
}

/// A TopK SAE on the tiny model's width, with deterministic weights.
fn topk_sae(n: usize) -> Sae {
    let d = 64;
    let mut p = SaeParams::zeros(d, n, false);
    for (i, v) in p.w_enc_t.iter_mut().enumerate() {
        *v = ((i * 37 % 101) as f32 - 50.0) / 500.0;
    }
    for (i, v) in p.w_dec.iter_mut().enumerate() {
        *v = ((i * 53 % 97) as f32 - 48.0) / 500.0;
    }
    let mut cfg = SaeConfig::new(d, n, ArchSpec::TopK { k: 4 });
    cfg.input_unit_norm = false;
    Sae::new(cfg, p).unwrap()
}

fn save(dir: &Path, sae: &Sae) {
    let meta = ExportMeta {
        model_name: "tiny".into(),
        hook_name: HOOK.into(),
        context_size: 16,
        prepend_bos: true,
        dataset_path: "c.txt".into(),
        extra: Default::default(),
    };
    saelab_sae::save_sae(dir, sae, &meta, None).unwrap();
}

fn load_err(s: &Setup, dir: &Path) -> String {
    match load_saes(&[dir.to_path_buf()], None, None, &s.model) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn non_finite_weights_name_file_tensor_and_row() {
    let s = setup();
    let dir = s.root.join("nan");
    let mut sae = topk_sae(128);
    let mut p = sae.params().clone();
    p.w_dec[74 * 64 + 3] = f32::NAN;
    sae = Sae::new(sae.config().clone(), p).unwrap();
    save(&dir, &sae);
    let weights = dir.join("sae_weights.safetensors");
    for view in ["ours", "saelens"] {
        if view == "saelens" {
            std::fs::remove_file(dir.join("saelab_cfg.json")).unwrap();
        }
        let e = load_err(&s, &dir);
        for want in [weights.to_str().unwrap(), "W_dec", "row 74", "NaN"] {
            assert!(e.contains(want), "{view}: {want:?} not in {e}");
        }
    }
}

/// Rewrites the SAELens view of a saved SAE (our own cfg removed).
fn saelens_cfg(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let _ = std::fs::remove_file(dir.join("saelab_cfg.json"));
    let path = dir.join("cfg.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn cfg_without_or_with_unknown_architecture_names_the_file() {
    let s = setup();
    let dir = s.root.join("topk");
    save(&dir, &topk_sae(96));
    let cfg = dir.join("cfg.json");
    // Without `architecture` (and no pre-6.0 activation_fn_str): today's
    // guess would be ReLU, which runs a TopK SAE at an L0 in the hundreds.
    saelens_cfg(&dir, |c| {
        c.remove("architecture");
    });
    let e = load_err(&s, &dir);
    assert!(
        e.contains(cfg.to_str().unwrap()) && e.contains("architecture"),
        "{e}"
    );
    saelens_cfg(&dir, |c| {
        c.insert("architecture".into(), "gated".into());
    });
    let e = load_err(&s, &dir);
    assert!(
        e.contains(cfg.to_str().unwrap()) && e.contains("\"gated\""),
        "{e}"
    );
    // Pre-6.0 keys still say which SAE it is.
    saelens_cfg(&dir, |c| {
        c.remove("architecture");
        c.insert("activation_fn_str".into(), "topk".into());
    });
    let loaded = load_saes(std::slice::from_ref(&dir), None, None, &s.model).unwrap();
    assert_eq!(loaded[0].sae.config().arch, ArchSpec::TopK { k: 4 });
}

#[test]
fn bad_hook_and_width_name_the_sae() {
    let s = setup();
    let dir = s.root.join("wide");
    let mut cfg = SaeConfig::new(32, 64, ArchSpec::TopK { k: 4 });
    cfg.input_unit_norm = false;
    save(
        &dir,
        &Sae::new(cfg, SaeParams::zeros(32, 64, false)).unwrap(),
    );
    let e = load_saes(std::slice::from_ref(&dir), None, None, &s.model)
        .err()
        .unwrap();
    assert!(matches!(e, LoadError::Width { d_in: 32, .. }), "{e}");
    assert!(e.to_string().contains(dir.to_str().unwrap()));
    let e = load_saes(
        std::slice::from_ref(&dir),
        Some("blocks.9.hook_resid_pre"),
        None,
        &s.model,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("not in model"), "{e}");
}

fn rows(s: &Setup) -> RowsConfig {
    RowsConfig {
        corpus: s.root.join("c.txt"),
        dataset: "c".into(),
        text_field: "text".into(),
        seq_len: 12,
        packing: Packing::BosRows,
        batch_rows: 3,
        pos_intervention: PosIntervention::None,
        seed: 49,
    }
}

#[test]
fn runs_give_typed_outputs_and_reject_bad_settings() {
    let s = setup();
    let dir = s.root.join("topk");
    save(&dir, &topk_sae(96));
    let saes = load_saes(&[dir], None, None, &s.model).unwrap();
    let mut cfg = EvalConfig {
        rows: rows(&s),
        model_name: "tiny".into(),
        tokens: 5 * 12,
        skip_bos: false,
        splice_keep_bos: false,
    };
    let out = eval::run(&s.model, &saes, &cfg, &NoProgress).unwrap();
    assert_eq!((out.rows, out.seq_len, out.saes.len()), (5, 12, 1));
    let rep = &out.saes[0].report;
    let recon = rep.recon.as_ref().unwrap();
    assert!(
        recon.l0 > 0.0 && recon.l0 <= 4.0,
        "TopK k = 4: {}",
        recon.l0
    );
    assert_eq!(recon.tokens, 60);
    assert!(rep.ce.as_ref().unwrap().ce_zero.is_some());
    let csv = eval::summary_csv(&out);
    assert!(csv.starts_with("sae,hook,d_sae,tokens,mse,"), "{csv}");
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("topk,blocks.1.hook_resid_post,96,60,"));

    cfg.tokens = 0;
    let e = eval::run(&s.model, &saes, &cfg, &NoProgress).unwrap_err();
    assert!(
        matches!(e, EvalError::Config(_)) && e.to_string().contains("tokens"),
        "{e}"
    );

    let mut scfg = StatsRunConfig {
        rows: rows(&s),
        model_name: "tiny".into(),
        n_rows: 7,
        stats: StatsConfig::default(),
    };
    let out = stats::run(&s.model, &saes, &scfg, &NoProgress).unwrap();
    assert_eq!(out.saes[0].report.summary.rows, 7);
    scfg.stats.ma_window = 0;
    let e = stats::run(&s.model, &saes, &scfg, &NoProgress).unwrap_err();
    assert!(
        matches!(e, StatsError::Config(_)) && e.to_string().contains("ma_window"),
        "{e}"
    );
}
