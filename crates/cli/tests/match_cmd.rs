//! End-to-end `saelab match`: an SAE against itself (ratio 1, MMCS 1,
//! identity assignment), a permuted and perturbed copy (the permutation comes
//! back in the assignment CSV), a grid of three SAEs (heatmap, ratio matrix,
//! Tables 1 and 2 from the configs; the ratios against a brute-force cosine
//! computation; the same files at 1 and 3 threads), and bad input named in
//! the error.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::{ArchSpec, ExportMeta, Sae, SaeConfig, SaeParams, TrainConfig};
use std::path::Path;
use std::process::{Command, Output};

fn saelab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saelab"))
        .arg("match")
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

/// R(ref←query) at τ 0.7 on decoder rows, recomputed in f64 from the SAE
/// files (independent of the matching library): the share of the query's
/// rows whose best cosine with a reference row is above τ.
fn brute_force_ratio(reference: &Path, query: &Path) -> f64 {
    let rows = |dir: &Path| {
        let sae = saelab_sae::load_sae(dir).unwrap();
        let p = sae.params();
        (0..p.n)
            .map(|i| {
                let r: Vec<f64> = p.w_dec[i * p.d..(i + 1) * p.d]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-8);
                r.iter().map(|v| v / norm).collect::<Vec<f64>>()
            })
            .collect::<Vec<_>>()
    };
    let (refs, queries) = (rows(reference), rows(query));
    let hits = queries
        .iter()
        .filter(|q| {
            refs.iter()
                .map(|r| r.iter().zip(q.iter()).map(|(a, b)| a * b).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max)
                > 0.7
        })
        .count();
    hits as f64 / queries.len() as f64
}

/// Every file of `dir` by name, with its bytes.
/// The output files of a run (not the run's lock file).
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            (name, std::fs::read(e.path()).unwrap())
        })
        .filter(|(name, _)| name != ".saelab.lock")
        .collect()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "saelab match failed:\n{err}");
    err
}

fn failed(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "expected a failure, got success:\n{err}"
    );
    err
}

/// A TopK SAE with Gaussian weights.
fn random_sae(d: usize, n: usize, seed: u64) -> Sae {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = SaeParams::zeros(d, n, false);
    for v in p.w_enc_t.iter_mut().chain(p.w_dec.iter_mut()) {
        *v = rng.random_range(-1.0f32..1.0);
    }
    Sae::new(SaeConfig::new(d, n, ArchSpec::TopK { k: 4 }), p).unwrap()
}

/// Latent i of `sae` becomes latent perm[i], with noise of relative size ~`eps`.
fn permuted(sae: &Sae, perm: &[usize], eps: f32, seed: u64) -> Sae {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p = sae.params();
    let (d, n) = (p.d, p.n);
    let mut q = SaeParams::zeros(d, n, false);
    for (i, &j) in perm.iter().enumerate() {
        for c in 0..d {
            q.w_dec[j * d + c] = p.w_dec[i * d + c] + eps * rng.random_range(-1.0f32..1.0);
            q.w_enc_t[j * d + c] = p.w_enc_t[i * d + c] + eps * rng.random_range(-1.0f32..1.0);
        }
        q.b_enc[j] = p.b_enc[i];
    }
    Sae::new(sae.config().clone(), q).unwrap()
}

/// Saves like `saelab train` does: the training config (with its seed) and
/// the dataset in the cfg.json metadata.
fn save(dir: &Path, sae: &Sae, seed: u64) {
    let mut tc = TrainConfig::new(sae.config().clone());
    tc.seed = seed;
    let extra = serde_json::json!({"saelab_train_config": tc, "steps": 100, "batch": 64});
    let meta = ExportMeta {
        model_name: "tiny".into(),
        hook_name: "blocks.1.hook_resid_post".into(),
        context_size: 16,
        prepend_bos: true,
        dataset_path: "c.jsonl".into(),
        extra: extra.as_object().cloned().unwrap(),
    };
    saelab_sae::save_sae(dir, sae, &meta, None).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sae_against_itself() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    save(&a, &random_sae(16, 64, 1), 1);
    let out = dir.path().join("out");
    let err = ok(&saelab(&[
        s(&a),
        s(&a),
        "--vectors",
        "both",
        "--neurons",
        "--assignment",
        "--out",
        s(&out),
    ]));
    assert!(err.contains("R(A←B) = 1.0000"), "{err}");
    assert!(err.contains("certified"), "{err}");
    let j: serde_json::Value = serde_json::from_str(&read(&out.join("match.json"))).unwrap();
    assert_eq!(j["schema"], "saelab.match.v1");
    let comps = j["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 4, "decoder/encoder × features/neurons");
    for c in comps {
        for dir in ["b_in_a", "a_in_b"] {
            assert_eq!(c[dir]["ratio"].as_f64().unwrap(), 1.0, "{c}");
            assert!(c[dir]["mmcs"].as_f64().unwrap() > 0.9999, "{c}");
        }
        assert_eq!(c["assignment"]["fraction_above"].as_f64().unwrap(), 1.0);
    }
    assert_eq!(j["shared"]["shared"].as_f64().unwrap(), 1.0);

    let summary = read(&out.join("summary.csv"));
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 1 + 4 * 2, "{summary}");
    assert!(lines[0].starts_with("kind,unit,direction,reference,query,n_ref,n_query,ratio,mmcs"));
    assert!(
        lines[1].starts_with("decoder,features,b_in_a,"),
        "{}",
        lines[1]
    );

    let asg = read(&out.join("assignment_decoder.csv"));
    let rows: Vec<&str> = asg.lines().skip(1).collect();
    assert_eq!(rows.len(), 64);
    for (i, r) in rows.iter().enumerate() {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(
            (f[0], f[1]),
            (i.to_string().as_str(), i.to_string().as_str())
        );
        assert!(f[2].parse::<f64>().unwrap() > 0.9999);
    }
    assert!(out.join("assignment_encoder.csv").exists());
    assert!(out.join("assignment_decoder_neurons.csv").exists());

    let top = read(&out.join("top_decoder_features_b_in_a.csv"));
    let mut tl = top.lines();
    assert_eq!(
        tl.next().unwrap(),
        "query,idx_1,cos_1,idx_2,cos_2,idx_3,cos_3,idx_4,cos_4"
    );
    let first: Vec<&str> = tl.next().unwrap().split(',').collect();
    assert_eq!((first[0], first[1]), ("0", "0"));
    assert_eq!(top.lines().count(), 65);

    let svg = read(&out.join("hist_decoder_features_b_in_a.svg"));
    assert!(svg.starts_with("<svg") || svg.contains("<svg"));
    assert!(svg.contains("Top-1") && svg.contains("Top-4"));
    assert!(out.join("hist_encoder_neurons_a_in_b.svg").exists());
}

#[test]
fn permuted_copy_gives_the_permutation_back() {
    let dir = tempfile::tempdir().unwrap();
    let (d, n) = (32, 128);
    let base = random_sae(d, n, 7);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(3));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    save(&a, &base, 1);
    save(&b, &permuted(&base, &perm, 1e-3, 9), 1);
    let out = dir.path().join("out");
    ok(&saelab(&[s(&a), s(&b), "--assignment", "--out", s(&out)]));
    let asg = read(&out.join("assignment_decoder.csv"));
    let mut lines = asg.lines();
    assert_eq!(lines.next(), Some("a,b,cosine"));
    let got: Vec<(usize, usize)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    let want: Vec<(usize, usize)> = (0..n).map(|i| (i, perm[i])).collect();
    assert_eq!(got, want);
    // The top-1 of every query of B is its preimage in A.
    let top = read(&out.join("top_decoder_features_b_in_a.csv"));
    let mut inv = vec![0; n];
    for (i, &j) in perm.iter().enumerate() {
        inv[j] = i;
    }
    for (q, l) in top.lines().skip(1).enumerate() {
        let idx: usize = l.split(',').nth(1).unwrap().parse().unwrap();
        assert_eq!(idx, inv[q]);
    }
}

#[test]
fn grid_of_three_with_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = 16;
    let (s1, s2, s3) = (
        dir.path().join("seed1"),
        dir.path().join("seed2"),
        dir.path().join("n128"),
    );
    save(&s1, &random_sae(d, 64, 1), 1);
    save(&s2, &random_sae(d, 64, 2), 2);
    save(&s3, &random_sae(d, 128, 3), 1);
    // Two via the command line, one via a grid file with a relative path.
    let list = dir.path().join("list.toml");
    std::fs::write(&list, "saes = [{ path = \"n128\", label = \"big\" }]\n").unwrap();
    let out = dir.path().join("grid");
    let err = ok(&saelab(&[
        "--grid",
        s(&s1),
        s(&s2),
        "--grid-file",
        s(&list),
        "--neurons",
        "--out",
        s(&out),
    ]));
    assert!(err.contains("neurons skipped"), "{err}");
    assert!(read(&out.join("heatmap.svg")).contains("<svg"));

    let ratios = read(&out.join("ratios.csv"));
    let rows: Vec<Vec<&str>> = ratios.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{ratios}");
    assert_eq!(rows[0], ["reference\\query", "seed1", "seed2", "big"]);
    let dirs = [&s1, &s2, &s3];
    let mut nontrivial = 0;
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r.len(), 4, "{ratios}");
        for (j, v) in r[1..].iter().enumerate() {
            if i == j {
                assert_eq!(*v, "", "diagonal: {ratios}");
            } else {
                // R(row←column): queries of SAE j against reference SAE i.
                let x: f64 = v.parse().unwrap();
                let want = brute_force_ratio(dirs[i], dirs[j]);
                assert!(
                    (x - want).abs() < 1e-6,
                    "R({i}←{j}) = {x}, brute force {want}"
                );
                if want > 0.0 && want < 1.0 {
                    nontrivial += 1;
                }
            }
        }
    }
    assert!(nontrivial >= 3, "ratios all 0 or 1 prove little: {ratios}");

    let t1 = read(&out.join("table1.csv"));
    let lines: Vec<&str> = t1.lines().collect();
    // Today's columns, then the category and which containment each ratio is.
    assert_eq!(
        lines[0],
        "setting,sae_a,sae_b,value_a,value_b,ratio_a_from_b,ratio_b_from_a,mean,\
         category,ratio_a_from_b_is,ratio_b_from_a_is"
    );
    assert_eq!(lines.len(), 4, "{t1}");
    assert!(lines[1].starts_with("seed,seed1,seed2,1,2,"), "{t1}");
    assert!(
        lines[1].ends_with(",seed,seed2 in seed1,seed1 in seed2"),
        "{t1}"
    );
    assert!(lines[2].starts_with("n,seed1,big,64,128,"), "{t1}");
    assert!(
        lines[2].ends_with(",dictionary_size,128 in 64,64 in 128"),
        "{t1}"
    );
    assert!(lines[3].starts_with("other,seed2,big,"), "{t1}");
    assert!(
        lines[3].ends_with(",other,big in seed2,seed2 in big"),
        "{t1}"
    );
    // ratio_a_from_b = R(seed1←big) = "128 in 64", the matrix's [0][2].
    let n_row: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(n_row[5], rows[1][3], "{t1}\n{ratios}");
    assert_eq!(n_row[6], rows[3][1], "{t1}\n{ratios}");

    let t2 = read(&out.join("table2.csv"));
    let l2: Vec<&str> = t2.lines().collect();
    assert_eq!(l2.len(), 2, "{t2}");
    assert!(l2[1].starts_with("seed1,big,64,128,64,"), "{t2}");

    let g: serde_json::Value = serde_json::from_str(&read(&out.join("grid.json"))).unwrap();
    assert_eq!(g["schema"], "saelab.match_grid.v1");
    assert_eq!(g["pairs"].as_array().unwrap().len(), 3);
    assert_eq!(g["saes"][0]["settings"]["seed"], "1");
    // The matrix in JSON matches the pair reports.
    let p01 = &g["pairs"][0]["report"]["comparisons"][0];
    assert_eq!(g["ratios"][0][1], p01["b_in_a"]["ratio"]);
    assert_eq!(g["ratios"][1][0], p01["a_in_b"]["ratio"]);
    assert!(g["ratios"][0][0].is_null());

    // The same files at 1 and at 3 threads.
    let run_at = |threads: &str| {
        let o = dir.path().join(format!("grid_t{threads}"));
        ok(&saelab(&[
            "--threads",
            threads,
            "--grid",
            s(&s1),
            s(&s2),
            "--grid-file",
            s(&list),
            "--neurons",
            "--out",
            s(&o),
        ]));
        files(&o)
    };
    let (t1, t3) = (run_at("1"), run_at("3"));
    assert_eq!(
        t1.keys().collect::<Vec<_>>(),
        [
            "grid.json",
            "heatmap.svg",
            "ratios.csv",
            "table1.csv",
            "table2.csv"
        ]
    );
    for (name, bytes) in &t1 {
        assert!(t3[name] == *bytes, "{name} differs between 1 and 3 threads");
    }
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good16");
    save(&good, &random_sae(16, 64, 1), 1);
    let wide = dir.path().join("wide24");
    save(&wide, &random_sae(24, 64, 2), 1);
    let big = dir.path().join("big128");
    save(&big, &random_sae(16, 128, 3), 1);
    let junk = dir.path().join("not_an_sae");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), "hello").unwrap();
    let out = dir.path().join("out");

    let err = failed(&saelab(&[s(&good), s(&junk), "--out", s(&out)]));
    assert!(
        err.contains("not_an_sae: not a loadable SAE directory"),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let err = failed(&saelab(&[s(&good), s(&missing), "--out", s(&out)]));
    let want = format!("{}: no such directory", missing.display());
    assert!(err.contains(&want), "want {want:?} in {err}");
    let err = failed(&saelab(&[
        s(&good),
        s(&good.join("cfg.json")),
        "--out",
        s(&out),
    ]));
    assert!(err.contains("cfg.json: not a directory"), "{err}");

    // No random queries would report a chance level of 0.0: refused.
    let err = failed(&saelab(&[
        s(&good),
        s(&good),
        "--chance-queries",
        "0",
        "--out",
        s(&out),
    ]));
    assert!(err.contains("chance_queries must be at least 1"), "{err}");

    let err = failed(&saelab(&[s(&good), s(&wide), "--out", s(&out)]));
    assert!(err.contains("good16") && err.contains("wide24"), "{err}");
    let err = failed(&saelab(&[
        "--grid",
        s(&good),
        s(&big),
        s(&wide),
        "--out",
        s(&out),
    ]));
    assert!(err.contains("good16") && err.contains("wide24"), "{err}");

    let err = failed(&saelab(&[s(&good), s(&big), "--neurons", "--out", s(&out)]));
    assert!(err.contains("--neurons") && err.contains("big128"), "{err}");

    let err = failed(&saelab(&["--grid", s(&good), "--out", s(&out)]));
    assert!(err.contains("at least 2"), "{err}");
    let err = failed(&saelab(&[s(&good), "--out", s(&out)]));
    assert!(err.contains("two SAE directories"), "{err}");
    assert!(!out.join("match.json").exists());
}
