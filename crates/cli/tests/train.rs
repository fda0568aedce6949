//! End-to-end `saelab train` on a store harvested from a tiny GPT-2: a grid
//! of SAEs from one pass, SAELens files that load back, resume after a kill
//! that ends bit-identical to an uninterrupted run.

use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use std::path::Path;
use std::process::Command;

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
    // Different seeds give different SAEs.
    let w = |run: &str, n: &str| {
        std::fs::read(Path::new(run).join(n).join("sae_weights.safetensors")).unwrap()
    };
    assert_ne!(w(&a, names[0]), w(&a, names[1]));

    // Killed after the second checkpoint (step 16), resumed: same bytes.
    let b = dir.path().join("b").to_string_lossy().to_string();
    let o = saelab(
        &train_args(&store, &b),
        &[("SAELAB_TEST_ABORT_AFTER_CHECKPOINTS", "2")],
    );
    assert!(!o.status.success());
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
    assert!(!o.status.success() && err.contains("k"), "{err}");
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

    // Interrupted before step 5 (between checkpoints): a checkpoint at 5,
    // exit non-zero with a resume hint; the resumed run equals run `a`.
    let b = dir.path().join("b").to_string_lossy().to_string();
    let mut bargs = common(&b);
    bargs.extend(["--config".to_string(), sweep.to_string_lossy().to_string()]);
    let o = run(bargs.clone(), &[("SAELAB_TEST_INTERRUPT_AT_STEP", "5")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("interrupted at step 5"),
        "{err}"
    );
    assert!(Path::new(&b).join("btk/checkpoint.safetensors").exists());
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
