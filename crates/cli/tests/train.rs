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
