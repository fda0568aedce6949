//! Training straight from the model (`saelab train --dataset …`), snapshots
//! and `saelab converge`, end to end on a tiny generated GPT-2:
//! - a streamed run gives the same weights, bit for bit, as a run from an
//!   f32 store harvested with the same flags (same tokens, same order), over
//!   more than one epoch; with two hooks, each hook's SAEs are those of a
//!   one-hook run;
//! - a streamed run killed (SIGKILL) at random points resumes to the bytes
//!   of an uninterrupted one;
//! - a snapshot at step s holds the weights of a run stopped at s;
//! - `converge` reports the matching ratio and MMCS of the seed pair at
//!   every snapshot, as computed here from the weights by the definition.

use rand::{Rng, SeedableRng};
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn saelab(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_saelab"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

fn ok(args: &[String]) -> String {
    let o = saelab(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A tiny model and a corpus of 107 rows of 32 tokens (3424 tokens: 13
/// batches of 256, so 40 steps run three epochs).
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let mdir = root.join("gpt2-tiny");
    std::fs::create_dir(&mdir).unwrap();
    write_gpt2(&mdir, Gpt2Shape::TINY, 1234, "").unwrap();
    let text: String = (0..200)
        .map(|i| format!("{{\"text\": \"Line {i}: sparse autoencoders find features in the residual stream {}.\"}}\n", i * 3))
        .collect();
    let corpus = root.join("c.jsonl");
    std::fs::write(&corpus, text).unwrap();
    (mdir, corpus)
}

/// The packing flags shared by the harvest and the streamed runs.
const ROWS: [&str; 10] = [
    "--seq-len",
    "32",
    "--batch-rows",
    "16",
    "--rows-per-shard",
    "64",
    "--hook",
    "blocks.2.hook_resid_pre",
    "--model",
    "MODEL",
];

fn rows_flags(model: &Path) -> Vec<String> {
    ROWS.iter()
        .map(|s| match *s {
            "MODEL" => model.to_string_lossy().into_owned(),
            s => s.to_string(),
        })
        .collect()
}

/// Training flags: 2 seeds, `steps` steps of 256 vectors.
fn train_flags(steps: u64, out: &Path) -> Vec<String> {
    let mut a = strings(&[
        "train",
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
        "--checkpoint-every",
        "4",
        "--log-every",
        "2",
        "--buffer-vectors",
        "2048",
        "--lr",
        "3e-3",
    ]);
    a.extend(strings(&[
        "--steps",
        &steps.to_string(),
        "--out",
        &out.to_string_lossy(),
    ]));
    a
}

fn streamed(model: &Path, corpus: &Path, steps: u64, out: &Path) -> Vec<String> {
    let mut a = train_flags(steps, out);
    a.extend(strings(&[
        "--dataset",
        &corpus.to_string_lossy(),
        "--corpus-tokens",
        "8192",
    ]));
    a.extend(rows_flags(model));
    a
}

const NAMES: [&str; 2] = ["topk-n128-k8-s1", "topk-n128-k8-s2"];

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Weights, sparsity and metrics of both SAEs are byte-identical.
fn assert_same_weights(a: &Path, b: &Path, what: &str) {
    for n in NAMES {
        for f in [
            "sae_weights.safetensors",
            "sparsity.safetensors",
            "metrics.jsonl",
        ] {
            assert!(
                read(&a.join(n).join(f)) == read(&b.join(n).join(f)),
                "{what}: {n}/{f} differs"
            );
        }
    }
}

#[test]
fn a_streamed_run_equals_the_store_backed_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(dir.path());
    let store = dir.path().join("store");
    let mut h = strings(&[
        "harvest",
        "--dataset",
        &corpus.to_string_lossy(),
        "--tokens",
        "8192",
        "--dtype",
        "f32",
        "--out",
        &store.to_string_lossy(),
    ]);
    h.extend(rows_flags(&model));
    ok(&h);
    let from_store = dir.path().join("from-store");
    let mut t = train_flags(40, &from_store);
    t.extend(strings(&["--store", &store.to_string_lossy()]));
    ok(&t);
    let from_model = dir.path().join("from-model");
    ok(&streamed(&model, &corpus, 40, &from_model));
    assert_same_weights(&from_store, &from_model, "streamed vs store");
    let cfg = String::from_utf8(read(&from_model.join(NAMES[0]).join("cfg.json"))).unwrap();
    assert!(
        cfg.contains("\"streamed\": true") || cfg.contains("\"streamed\":true"),
        "{cfg}"
    );

    // Two hooks from one forward pass: each lane's SAEs are those of a
    // one-hook run at that hook.
    let two = dir.path().join("two-hooks");
    let mut t2 = streamed(&model, &corpus, 40, &two);
    t2.extend(strings(&["--hook", "blocks.1.hook_resid_pre"]));
    ok(&t2);
    for n in NAMES {
        for f in ["sae_weights.safetensors", "metrics.jsonl"] {
            let lane = two.join(format!("blocks.2.hook_resid_pre-{n}")).join(f);
            assert!(
                read(&lane) == read(&from_model.join(n).join(f)),
                "two hooks: {n}/{f}"
            );
        }
        let other = two.join(format!("blocks.1.hook_resid_pre-{n}"));
        let cfg = String::from_utf8(read(&other.join("cfg.json"))).unwrap();
        assert!(cfg.contains("blocks.1.hook_resid_pre"), "{cfg}");
        assert!(
            read(&other.join("sae_weights.safetensors"))
                != read(&from_model.join(n).join("sae_weights.safetensors"))
        );
    }

    // converge pairs seeds within a hook, never across hooks.
    let conv = dir.path().join("conv-two");
    ok(&strings(&[
        "converge",
        &two.to_string_lossy(),
        "--no-assignment",
        "--out",
        &conv.to_string_lossy(),
    ]));
    let table: serde_json::Value =
        serde_json::from_slice(&read(&conv.join("convergence.json"))).unwrap();
    let pairs: Vec<&str> = table["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pair"].as_str().unwrap())
        .collect();
    assert_eq!(
        pairs,
        [
            "blocks.2.hook_resid_pre-topk-n128-k8-s1 vs blocks.2.hook_resid_pre-topk-n128-k8-s2",
            "blocks.1.hook_resid_pre-topk-n128-k8-s1 vs blocks.1.hook_resid_pre-topk-n128-k8-s2"
        ]
    );

    // Another pos-intervention is another stream: the weights differ.
    let shuffled = dir.path().join("shuffled");
    let mut s = streamed(&model, &corpus, 40, &shuffled);
    s.extend(strings(&["--pos-intervention", "shuffle"]));
    ok(&s);
    let w = |d: &Path| read(&d.join(NAMES[0]).join("sae_weights.safetensors"));
    assert!(
        w(&shuffled) != w(&from_model),
        "the shuffle intervention changed nothing"
    );
}

#[test]
fn a_killed_streamed_run_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(dir.path());
    let reference = dir.path().join("ref");
    let t0 = Instant::now();
    ok(&streamed(&model, &corpus, 40, &reference));
    let full = t0.elapsed();
    let mut out = dir.path().join("run-0");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20_261_128);
    // Kills after which a checkpoint was there to resume from (the resume
    // then recomputes the shards still in the shuffle buffer).
    let (mut kills, mut fresh, mut resumable, mut tries) = (0, 0, 0, 0);
    while (kills < 5 || resumable < 2) && tries < 30 {
        tries += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_saelab"))
            .args(streamed(&model, &corpus, 40, &out))
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.random_range(0.1..0.6)));
        let _ = child.kill(); // SIGKILL
        if child.wait().unwrap().success() {
            // Finished first: check it, go on in a fresh folder.
            assert_same_weights(&reference, &out, "finished between kills");
            fresh += 1;
            out = dir.path().join(format!("run-{fresh}"));
        } else {
            kills += 1;
            resumable += usize::from(out.join("checkpoints/LATEST").exists());
        }
    }
    assert!(
        resumable >= 2,
        "only {resumable} of {kills} kills left a checkpoint"
    );
    assert!(kills >= 5, "only {kills} kills landed");
    ok(&streamed(&model, &corpus, 40, &out));
    assert_same_weights(&reference, &out, "killed and resumed");
    assert!(!out.join("checkpoints").exists());
}

/// Decoder rows of an SAE folder, unit-normalized.
fn unit_decoder(dir: &Path) -> Vec<Vec<f64>> {
    let bytes = read(&dir.join("sae_weights.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("W_dec").unwrap();
    let (n, d) = (w.shape()[0], w.shape()[1]);
    let v: Vec<f32> = w
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (0..n)
        .map(|i| {
            let r: Vec<f64> = v[i * d..(i + 1) * d].iter().map(|&x| x as f64).collect();
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(|x| x / norm.max(1e-300)).collect()
        })
        .collect()
}

/// R(a←b) at τ and the mean max cosine of b's rows in a, by definition.
fn ratio_and_mmcs(a: &[Vec<f64>], b: &[Vec<f64>], tau: f64) -> (f64, f64) {
    let maxes: Vec<f64> = b
        .iter()
        .map(|q| {
            a.iter()
                .map(|r| r.iter().zip(q).map(|(x, y)| x * y).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let n = maxes.len() as f64;
    (
        maxes.iter().filter(|&&m| m > tau).count() as f64 / n,
        maxes.iter().sum::<f64>() / n,
    )
}

#[test]
fn snapshots_hold_the_shorter_runs_and_converge_measures_them() {
    let dir = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(dir.path());
    let long = dir.path().join("long");
    let mut a = streamed(&model, &corpus, 24, &long);
    a.extend(strings(&["--snapshot-tokens", "2048,4096"])); // steps 8 and 16
    ok(&a);
    let short = dir.path().join("short");
    ok(&streamed(&model, &corpus, 16, &short));
    for n in NAMES {
        let snap = long.join(n).join("snapshots/step-00000016");
        assert!(
            read(&snap.join("sae_weights.safetensors"))
                == read(&short.join(n).join("sae_weights.safetensors")),
            "{n}: the step-16 snapshot is not the 16-step run"
        );
    }
    // Zero-token snapshots and snapshots below one batch are refused.
    let mut bad = streamed(&model, &corpus, 24, &dir.path().join("bad"));
    bad.extend(strings(&["--snapshot-tokens", "100"]));
    let o = saelab(&bad);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--snapshot-tokens"));

    let conv = dir.path().join("conv");
    let md = ok(&strings(&[
        "converge",
        &long.to_string_lossy(),
        "--threshold",
        "0.5",
        "--out",
        &conv.to_string_lossy(),
    ]));
    let table: serde_json::Value =
        serde_json::from_slice(&read(&conv.join("convergence.json"))).unwrap();
    let points = table["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{md}");
    for (p, (step, sub)) in points.iter().zip([
        (8u64, "snapshots/step-00000008"),
        (16, "snapshots/step-00000016"),
        (24, ""),
    ]) {
        assert_eq!(p["step"], step);
        assert_eq!(p["tokens"], step * 256);
        let da = unit_decoder(&long.join(NAMES[0]).join(sub));
        let db = unit_decoder(&long.join(NAMES[1]).join(sub));
        let (r_ab, m_ab) = ratio_and_mmcs(&da, &db, 0.5);
        let (r_ba, m_ba) = ratio_and_mmcs(&db, &da, 0.5);
        let close = |k: &str, want: f64| {
            let got = p[k].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-5,
                "step {step} {k}: {got} vs {want}"
            );
        };
        close("ratio_b_in_a", r_ab);
        close("ratio_a_in_b", r_ba);
        close("mmcs", 0.5 * (m_ab + m_ba));
        assert!(p["train"][0]["fvu"].as_f64().unwrap() > 0.0);
    }
    assert!(read(&conv.join("convergence.svg")).starts_with(b"<svg"));
    // A folder without seed pairs is named.
    let one = dir.path().join("one");
    let mut o1 = streamed(&model, &corpus, 4, &one);
    let i = o1.iter().position(|s| s == "2").unwrap();
    o1.drain(i - 1..=i); // drop `--seed 2`
    ok(&o1);
    let o = saelab(&strings(&[
        "converge",
        &one.to_string_lossy(),
        "--out",
        &conv.to_string_lossy(),
    ]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("differ only in their seed"));
}
