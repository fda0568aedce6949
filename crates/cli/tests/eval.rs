//! End-to-end `saelab eval` on a tiny GPT-2: an SAE that reconstructs its
//! input exactly gives ΔCE = 0, KL = 0 and FVU = 0; clean and zero-ablated
//! CE equal an independent log-softmax over the model's logits computed
//! here; bad SAEs and settings are named; the files are the same at 1 and
//! 3 threads.

use saelab_data::corpus::Corpus;
use saelab_data::packing::{Packing, RowPacker};
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use saelab_lm::{ForwardSpec, HookPoint, Model, Splice};
use saelab_sae::{ArchSpec, ExportMeta, Sae, SaeConfig, SaeParams};
use std::path::Path;
use std::process::Command;

fn saelab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saelab"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

/// Runs `saelab CMD --sae SAE --model MODEL --dataset CORPUS --out OUT EXTRA…`.
fn run(
    cmd: &str,
    sae: &Path,
    model: &Path,
    corpus: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        cmd,
        "--sae",
        sae.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    saelab(&args)
}

/// relu(x)·e_j − relu(−x)·e_j = x exactly: W_enc = [I, −I], W_dec = [I; −I].
fn identity_sae(d: usize) -> Sae {
    let n = 2 * d;
    let mut p = SaeParams::zeros(d, n, false);
    for j in 0..d {
        p.w_enc_t[j * d + j] = 1.0;
        p.w_enc_t[(d + j) * d + j] = -1.0;
        p.w_dec[j * d + j] = 1.0;
        p.w_dec[(d + j) * d + j] = -1.0;
    }
    let mut cfg = SaeConfig::new(d, n, ArchSpec::Relu { l1_coeff: 0.0 });
    cfg.input_unit_norm = false;
    Sae::new(cfg, p).unwrap()
}

/// A TopK SAE with seeded random weights (nontrivial codes and splices).
fn random_topk(d: usize, n: usize, k: usize, seed: u64) -> Sae {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut p = SaeParams::zeros(d, n, false);
    for v in p.w_enc_t.iter_mut().chain(p.w_dec.iter_mut()) {
        *v = rng.random_range(-0.2..0.2);
    }
    for v in p.b_enc.iter_mut() {
        *v = rng.random_range(-0.1..0.1);
    }
    let mut cfg = SaeConfig::new(d, n, ArchSpec::TopK { k });
    cfg.input_unit_norm = false;
    Sae::new(cfg, p).unwrap()
}

/// Every file under `dir`, relative path → bytes; `summary.json` without
/// its wall-clock `seconds`.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            let mut bytes = std::fs::read(&p).unwrap();
            if rel == "summary.json" {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                bytes = v.to_string().into_bytes();
            }
            out.insert(rel, bytes);
        }
    }
    out
}

/// Runs `saelab --threads T CMD …` at T = 1 and 3 into `out-1` / `out-3`
/// and checks both write the same files.
fn same_at_1_and_3_threads(base: &Path, cmd_args: &[&str]) {
    let mut got = Vec::new();
    for t in ["1", "3"] {
        let out = base.join(format!("out-threads-{t}"));
        let mut args = vec!["--threads", t];
        args.extend_from_slice(cmd_args);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let o = saelab(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        got.push(files(&out));
    }
    assert!(got[0].len() > 5, "{:?}", got[0].keys());
    assert_eq!(
        got[0].keys().collect::<Vec<_>>(),
        got[1].keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &got[0] {
        assert!(
            got[1][name] == *bytes,
            "{name} differs between 1 and 3 threads"
        );
    }
}

fn save(dir: &Path, sae: &Sae, hook: &str) {
    let meta = ExportMeta {
        model_name: "tiny".into(),
        hook_name: hook.into(),
        context_size: 16,
        prepend_bos: true,
        dataset_path: "c.jsonl".into(),
        extra: Default::default(),
    };
    saelab_sae::save_sae(dir, sae, &meta, None).unwrap();
}

/// Mean next-token CE over rows, by an f64 log-softmax written here.
fn mean_ce(logits: &[f32], tokens: &[u32], rows: usize, seq: usize, vocab: usize) -> f64 {
    let mut s = 0.0;
    for r in 0..rows {
        for t in 0..seq - 1 {
            let row = &logits[(r * seq + t) * vocab..(r * seq + t + 1) * vocab];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            s += lse - row[tokens[r * seq + t + 1] as usize] as f64;
        }
    }
    s / (rows * (seq - 1)) as f64
}

/// A tiny GPT-2 written into `dir/gpt2-tiny`.
fn tiny_model(dir: &Path, seed: u64) -> std::path::PathBuf {
    let mdir = dir.join("gpt2-tiny");
    std::fs::create_dir(&mdir).unwrap();
    write_gpt2(&mdir, Gpt2Shape::TINY, seed, "").unwrap();
    mdir
}

/// The `bos_rows` token rows the commands see, packed here independently.
fn bos_rows(model: &Model, corpus: &Path, rows: usize, seq: usize) -> Vec<u32> {
    let tok = model.tokenizer().unwrap();
    let packer = RowPacker::new(Packing::BosRows, seq, tok.bos, tok.eos).unwrap();
    let docs = Corpus::open(corpus).unwrap();
    let tokens: Vec<u32> = packer
        .rows(docs.documents(), |t: &str| tok.encode(t).unwrap())
        .take(rows)
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(tokens.len(), rows * seq);
    tokens
}

#[test]
fn identity_splice_and_independent_ce() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = tiny_model(dir.path(), 77);
    let text: String = (0..60)
        .map(|i| format!("{{\"text\": \"Document {i} talks about features, circuits and the number {}.\"}}\n", i * 7))
        .collect();
    let corpus = dir.path().join("c.jsonl");
    std::fs::write(&corpus, text).unwrap();
    let hook = "blocks.1.hook_resid_post";
    let sdir = dir.path().join("ident");
    save(&sdir, &identity_sae(64), hook);
    let out = dir.path().join("out");
    let (rows, seq) = (12usize, 16usize);
    let (tokens_arg, seq_arg) = ((rows * seq).to_string(), seq.to_string());
    // Evaluates the identity SAE into `out` and returns its eval.json.
    let eval_ident = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "--tokens",
            &tokens_arg,
            "--seq-len",
            &seq_arg,
            "--batch-rows",
            "5",
        ];
        args.extend_from_slice(extra);
        let o = run("eval", &sdir, &mdir, &corpus, out, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str(&std::fs::read_to_string(out.join("ident/eval.json")).unwrap())
            .unwrap()
    };
    let rep = eval_ident(&out, &[]);
    let f = |a: &str, b: &str| rep[a][b].as_f64().unwrap_or(f64::NAN);
    assert_eq!(f("recon", "fvu"), 0.0);
    assert_eq!(f("ce", "delta_ce"), 0.0, "identity splice");
    assert_eq!(f("ce", "kl"), 0.0);
    assert_eq!(f("ce", "ce_clean"), f("ce", "ce_spliced"));
    assert!(out.join("per_position.svg").exists() && out.join("summary.csv").exists());

    // Independent: same rows (bos_rows packing), logits from the library,
    // log-softmax here.
    let model = Model::load(mdir.to_str().unwrap()).unwrap();
    let tokens = bos_rows(&model, &corpus, rows, seq);
    let vocab = model.info.vocab_size;
    let mut spec = ForwardSpec::reads(&[]);
    spec.logits = true;
    let lg = model
        .forward(&tokens, rows, seq, &mut spec)
        .unwrap()
        .logits
        .unwrap();
    let clean = mean_ce(&lg, &tokens, rows, seq, vocab);
    let hp: HookPoint = hook.parse().unwrap();
    let mut zero = |x: &mut [f32], _: usize, _: usize| -> Result<(), String> {
        x.fill(0.0);
        Ok(())
    };
    let mut zspec = ForwardSpec {
        reads: vec![],
        splice: Some(Splice {
            hook: hp,
            f: &mut zero,
        }),
        logits: true,
        positions: saelab_lm::Positions::Normal,
    };
    let zl = model
        .forward(&tokens, rows, seq, &mut zspec)
        .unwrap()
        .logits
        .unwrap();
    let zero_ce = mean_ce(&zl, &tokens, rows, seq, vocab);
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    assert!(
        rel(f("ce", "ce_clean"), clean) < 1e-5,
        "{} vs {clean}",
        f("ce", "ce_clean")
    );
    assert!(
        rel(f("ce", "ce_zero"), zero_ce) < 1e-5,
        "{} vs {zero_ce}",
        f("ce", "ce_zero")
    );
    assert!(
        (zero_ce - clean).abs() > 1e-3,
        "zero ablation changes the loss"
    );

    // The bf16 model path: recorded, CE close to f32 but not equal, and the
    // identity splice still exact (both passes run the same arithmetic).
    let out_bf = dir.path().join("out-bf16");
    let bf = eval_ident(&out_bf, &["--precision", "bf16"]);
    let summary = |o: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(o.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(summary(&out_bf)["precision"], "bf16");
    assert_eq!(summary(&out)["precision"], "f32");
    let ce_bf = bf["ce"]["ce_clean"].as_f64().unwrap();
    assert!(
        ce_bf != clean && rel(ce_bf, clean) < 1e-2,
        "{ce_bf} vs {clean}"
    );
    assert_eq!(bf["ce"]["delta_ce"].as_f64(), Some(0.0));

    // Interventions: clean CE under `zero` / `shuffle` equals the same
    // forward with the positions of SPEC §1.4 drawn here the way `harvest`
    // draws them (ChaCha8 seeded by --seed, stream = batch index).
    for pi in ["zero", "shuffle"] {
        let pout = dir.path().join(format!("out-{pi}"));
        let o = run(
            "eval",
            &sdir,
            &mdir,
            &corpus,
            &pout,
            &[
                "--tokens",
                &(rows * seq).to_string(),
                "--seq-len",
                &seq.to_string(),
                "--batch-rows",
                "5",
                "--pos-intervention",
                pi,
                "--seed",
                "7",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pout.join("ident/eval.json")).unwrap())
                .unwrap();
        let got = rep["ce"]["ce_clean"].as_f64().unwrap();
        let pos: saelab_lm::PosIntervention = pi.parse().unwrap();
        let (mut sum, mut count) = (0.0, 0usize);
        for (bi, chunk) in tokens.chunks(5 * seq).enumerate() {
            use rand::SeedableRng;
            let b = chunk.len() / seq;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            rng.set_stream(bi as u64);
            let mut spec = ForwardSpec::reads(&[]);
            spec.logits = true;
            spec.positions = pos.positions(seq, &mut rng);
            let lg = model
                .forward(chunk, b, seq, &mut spec)
                .unwrap()
                .logits
                .unwrap();
            sum += mean_ce(&lg, chunk, b, seq, vocab) * (b * (seq - 1)) as f64;
            count += b * (seq - 1);
        }
        let want = sum / count as f64;
        assert!(rel(got, want) < 1e-5, "{pi}: {got} vs {want}");
        assert!((want - clean).abs() > 1e-3, "{pi} changes the loss");
    }

    // An all-zero SAE splices zeros: spliced CE = zero-ablated CE; with
    // --splice-keep-bos position 0 keeps its clean residual, so the CE of
    // predicting token 1 (which sees only position 0) is the clean one.
    let zdir = dir.path().join("zeros");
    let mut zcfg = SaeConfig::new(64, 16, ArchSpec::Relu { l1_coeff: 0.0 });
    zcfg.input_unit_norm = false;
    save(
        &zdir,
        &Sae::new(zcfg, SaeParams::zeros(64, 16, false)).unwrap(),
        hook,
    );
    for keep in [false, true] {
        let zout = dir.path().join(format!("zout-{keep}"));
        let mut extra = vec!["--tokens", "192", "--seq-len", "16"];
        if keep {
            extra.push("--splice-keep-bos");
        }
        let o = run("eval", &zdir, &mdir, &corpus, &zout, &extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(zout.join("zeros/eval.json")).unwrap())
                .unwrap();
        let pp = &r["ce"]["per_position"];
        let (c0, s0) = (
            pp["ce_clean"][0].as_f64().unwrap(),
            pp["ce_spliced"][0].as_f64().unwrap(),
        );
        let (s5, z5) = (
            pp["ce_spliced"][5].as_f64().unwrap(),
            pp["ce_zero"][5].as_f64().unwrap(),
        );
        if keep {
            assert_eq!(s0, c0, "keep-bos: position 0 is clean");
            assert_ne!(s5, z5, "keep-bos: later positions see the clean BOS");
        } else {
            assert_eq!(r["ce"]["ce_spliced"], r["ce"]["ce_zero"]);
            assert_ne!(s0, c0);
        }
    }

    // Bad SAEs: a hook the model lacks, a width it does not have, rows
    // longer than its context.
    let deep = dir.path().join("deep");
    save(&deep, &identity_sae(64), "blocks.9.hook_resid_pre");
    let wide = dir.path().join("wide");
    save(&wide, &identity_sae(32), hook);
    for (sae, extra, want) in [
        (&deep, "16", "not in model"),
        (&wide, "16", "d_in 32"),
        (&sdir, "65", "context"),
    ] {
        let o = run("eval", sae, &mdir, &corpus, &out, &["--seq-len", extra]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{want}: {err}");
        if want != "context" {
            assert!(err.contains(sae.to_str().unwrap()), "names the SAE: {err}");
        }
    }

    // --tokens 0 is an error, not a silent 128-token run.
    let o = run("eval", &sdir, &mdir, &corpus, &out, &["--tokens", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--tokens must be ≥ 1"),
        "{err}"
    );

    // NaN weights are caught at load, naming file, tensor and row (they
    // used to surface as "shape error … row 74" mid-run, or not at all
    // when the feature never fired).
    let ndir = dir.path().join("nan");
    let mut bad = random_topk(64, 128, 8, 3);
    let mut p = bad.params().clone();
    p.w_dec[74 * 64 + 3] = f32::NAN;
    bad = Sae::new(bad.config().clone(), p).unwrap();
    save(&ndir, &bad, hook);
    let o = run("eval", &ndir, &mdir, &corpus, &out, &["--seq-len", "16"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let weights = ndir.join("sae_weights.safetensors");
    for want in [weights.to_str().unwrap(), "W_dec", "row 74"] {
        assert!(!o.status.success() && err.contains(want), "{want}: {err}");
    }

    // Same files at 1 and 3 threads: a random TopK SAE beside the identity.
    let tdir = dir.path().join("topk");
    save(
        &tdir,
        &random_topk(64, 256, 8, 5),
        "blocks.0.hook_resid_mid",
    );
    same_at_1_and_3_threads(
        dir.path(),
        &[
            "eval",
            "--sae",
            tdir.to_str().unwrap(),
            "--sae",
            sdir.to_str().unwrap(),
            "--model",
            mdir.to_str().unwrap(),
            "--dataset",
            corpus.to_str().unwrap(),
            "--tokens",
            "400",
            "--seq-len",
            "16",
            "--batch-rows",
            "4",
            "--pos-intervention",
            "shuffle",
        ],
    );
}

/// `saelab stats` on the same tiny model: the per-position counts and means
/// equal a brute-force pass over the codes of the same rows computed here,
/// and every figure is written.
#[test]
fn stats_match_brute_force_over_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = tiny_model(dir.path(), 78);
    let corpus = dir.path().join("c.txt");
    std::fs::write(
        &corpus,
        (0..80)
            .map(|i| format!("Sentence {i} of a small corpus about positions.\n"))
            .collect::<String>(),
    )
    .unwrap();
    let hook = "blocks.0.hook_resid_mid";
    let sdir = dir.path().join("ident");
    save(&sdir, &identity_sae(64), hook);
    let out = dir.path().join("out");
    let (rows, seq) = (10usize, 12usize);
    let o = run(
        "stats",
        &sdir,
        &mdir,
        &corpus,
        &out,
        &[
            "--n-rows",
            &rows.to_string(),
            "--seq-len",
            &seq.to_string(),
            "--batch-rows",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ident/stats.json")).unwrap())
            .unwrap();
    assert_eq!(st["rows"], rows as u64);

    let model = Model::load(mdir.to_str().unwrap()).unwrap();
    let tokens = bos_rows(&model, &corpus, rows, seq);
    let hp: HookPoint = hook.parse().unwrap();
    let x = model
        .forward(&tokens, rows, seq, &mut ForwardSpec::reads(&[hp]))
        .unwrap()
        .hook(hp)
        .unwrap()
        .to_vec();
    // Identity SAE codes: |x_j| at latent j or d + j, one per nonzero x_j.
    let d = 64;
    for t in [0usize, 1, seq - 1] {
        let vals: Vec<f64> = (0..rows)
            .flat_map(|r| x[(r * seq + t) * d..(r * seq + t + 1) * d].to_vec())
            .filter(|&v| v != 0.0)
            .map(|v| v.abs() as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let got_c = st["positions"]["count"][t].as_u64().unwrap();
        let got_m = st["positions"]["mean"][t].as_f64().unwrap();
        assert_eq!(got_c, vals.len() as u64, "count at {t}");
        assert!(
            (got_m - mean).abs() <= 1e-6 * mean.abs().max(1.0),
            "mean at {t}: {got_m} vs {mean}"
        );
    }
    for f in [
        "position_mean.svg",
        "position_mean_no_bos.svg",
        "position_mean_std.svg",
        "feature_mean_std.svg",
        "feature_mean_density.svg",
        "feature_deciles.svg",
        "threshold_sweep.svg",
        "summary.json",
        "ident/deciles.csv",
        "ident/features.csv",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }

    // --ma-window 0 is an error, not a silent window of 1.
    let o = run("stats", &sdir, &mdir, &corpus, &out, &["--ma-window", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--ma-window must be ≥ 1"),
        "{err}"
    );

    // Same files at 1 and 3 threads (exact deciles, and a budget small
    // enough for reservoir sampling).
    let tdir = dir.path().join("topk");
    save(&tdir, &random_topk(64, 256, 8, 6), hook);
    for budget in ["2048", "0"] {
        let base = dir.path().join(format!("threads-{budget}"));
        same_at_1_and_3_threads(
            &base,
            &[
                "stats",
                "--sae",
                tdir.to_str().unwrap(),
                "--sae",
                sdir.to_str().unwrap(),
                "--model",
                mdir.to_str().unwrap(),
                "--dataset",
                corpus.to_str().unwrap(),
                "--n-rows",
                "20",
                "--seq-len",
                "12",
                "--batch-rows",
                "3",
                "--decile-budget-mb",
                budget,
            ],
        );
    }
}
