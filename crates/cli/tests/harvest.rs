//! End-to-end `saelab harvest` on a tiny generated GPT-2 and a small text
//! corpus: the store holds exactly what a direct forward pass gives, a run
//! killed (SIGKILL) mid-way resumes to byte-identical shards, a complete
//! store is checked against the request, and bad input is named.

use saelab_data::store::{ActivationStore, StoreManifest};
use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use saelab_lm::{ForwardSpec, HookPoint, Model};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("corpus.jsonl");
    let mut s = String::new();
    // Enough documents that an open-ended harvest (`--tokens 0`) runs long
    // enough to be killed mid-way; the first 64 rows are the same as ever.
    for i in 0..3000 {
        let text = format!(
            "Document {i}: the quick brown fox jumps over the lazy dog {} times, \u{e9}t\u{e9} \u{1F600}.\\nSecond line with code `let x = {i};`",
            i * 7
        );
        s.push_str(&serde_json::json!({ "text": text }).to_string());
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn saelab(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_saelab"));
    c.args(args).env("RAYON_NUM_THREADS", "2");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Shard files renamed into place in `dir` (temp files not counted).
fn shards_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("shard-") && n.ends_with(".safetensors")
            })
            .count()
    })
}

/// Runs `saelab args` and SIGKILLs it as soon as `n` shards are on disk in
/// `out` (no cleanup, like a crash). Panics if the run ends by itself first.
fn kill_after_shards(args: &[&str], out: &Path, n: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_saelab"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while shards_on_disk(out) < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the harvest ended ({status}) before {n} shards were seen; make it longer");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no shard after 300 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed run reported success");
}

struct Setup {
    _dir: tempfile::TempDir,
    model: String,
    corpus: String,
    root: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("gpt2-tiny");
    std::fs::create_dir(&mdir).unwrap();
    write_gpt2(&mdir, Gpt2Shape::TINY, 1234, "").unwrap();
    let c = corpus(dir.path());
    Setup {
        model: mdir.to_string_lossy().into(),
        corpus: c.to_string_lossy().into(),
        root: dir.path().to_path_buf(),
        _dir: dir,
    }
}

fn harvest_args<'a>(s: &'a Setup, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "harvest",
        "--model",
        &s.model,
        "--dataset",
        &s.corpus,
        "--hook",
        "blocks.1.hook_resid_pre",
        "--hook",
        "blocks.2.hook_resid_post",
        "--tokens",
        "2048",
        "--seq-len",
        "32",
        "--batch-rows",
        "8",
        "--rows-per-shard",
        "16",
        "--out",
        out,
    ];
    // A flag of `extra` already in the defaults replaces its value.
    let mut rest = extra.iter();
    while let Some(&flag) = rest.next() {
        let value = rest.next().copied();
        match (v.iter().position(|&x| x == flag && flag != "--hook"), value) {
            (Some(i), Some(val)) => v[i + 1] = val,
            _ => v.extend([flag].into_iter().chain(value)),
        }
    }
    v
}

#[test]
fn store_equals_direct_forward_and_resume_is_byte_identical() {
    let s = setup();
    let a = s.root.join("a").to_string_lossy().to_string();
    let o = saelab(
        &harvest_args(&s, &a, &["--pos-intervention", "shuffle"]),
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = ActivationStore::open(&a).unwrap();
    store.verify().unwrap();
    assert_eq!(store.rows(), 64);
    assert_eq!(store.num_shards(), 4);

    // Killed (SIGKILL) once 2 shards are on disk, then resumed: the same
    // bytes. An open-ended harvest over the whole corpus, so the process is
    // still running when it is killed.
    let full = s.root.join("full").to_string_lossy().to_string();
    let open_ended = ["--pos-intervention", "shuffle", "--tokens", "0"];
    let o = saelab(&harvest_args(&s, &full, &open_ended), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = s.root.join("b").to_string_lossy().to_string();
    kill_after_shards(&harvest_args(&s, &b, &open_ended), Path::new(&b), 2);
    assert!(
        ActivationStore::open(&b).is_err(),
        "an interrupted store is not complete"
    );
    let stored = StoreManifest::load(Path::new(&b)).unwrap().rows;
    assert!(stored >= 16 && stored.is_multiple_of(16), "{stored}");
    let o = saelab(&harvest_args(&s, &b, &open_ended), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("resuming after {stored} rows")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let full_store = ActivationStore::open(&full).unwrap();
    let resumed = ActivationStore::open(&b).unwrap();
    assert_eq!(full_store.num_shards(), resumed.num_shards());
    assert!(full_store.num_shards() > 8, "{}", full_store.num_shards());
    for i in 0..full_store.num_shards() {
        let f = format!("shard-{i:05}.safetensors");
        assert_eq!(
            std::fs::read(Path::new(&full).join(&f)).unwrap(),
            std::fs::read(Path::new(&b).join(&f)).unwrap(),
            "{f}"
        );
    }
    // The first 4 shards of the open-ended store are the 2048-token store.
    for i in 0..4 {
        let f = format!("shard-{i:05}.safetensors");
        assert_eq!(
            std::fs::read(Path::new(&a).join(&f)).unwrap(),
            std::fs::read(Path::new(&b).join(&f)).unwrap(),
            "{f}"
        );
    }
    // A finished store is left alone.
    let before = std::fs::read(Path::new(&a).join("manifest.json")).unwrap();
    let o = saelab(
        &harvest_args(&s, &a, &["--pos-intervention", "shuffle"]),
        &[],
    );
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already complete"));
    // ... but only for the request it holds: another one is an error naming
    // the field, stored vs requested (it used to say "already complete").
    for (extra, field) in [
        (
            &["--hook", "blocks.0.hook_resid_pre"][..],
            "hooks (store has",
        ),
        (
            &["--dtype", "f16"][..],
            "dtype (store has \"f32\", requested \"f16\")",
        ),
        (
            &["--tokens", "4096"][..],
            "target_rows (store has 64, requested 128)",
        ),
        (
            &["--seq-len", "16"][..],
            "seq_len (store has 32, requested 16)",
        ),
    ] {
        let mut args = vec!["--pos-intervention", "shuffle"];
        args.extend_from_slice(extra);
        let o = saelab(&harvest_args(&s, &a, &args), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?}: {err}");
        assert!(
            err.contains(field) && !err.contains("already complete"),
            "{extra:?}: {err}"
        );
    }
    assert_eq!(
        before,
        std::fs::read(Path::new(&a).join("manifest.json")).unwrap()
    );

    // Without intervention: the stored activations are a direct forward pass
    // of the stored tokens.
    let c = s.root.join("c").to_string_lossy().to_string();
    let o = saelab(&harvest_args(&s, &c, &[]), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = ActivationStore::open(&c).unwrap();
    let m = Model::load(&s.model).unwrap();
    let hooks: Vec<HookPoint> = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_post"]
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    let sh = store.shard(1, "blocks.2.hook_resid_post").unwrap();
    let out = m
        .forward(&sh.tokens, 16, 32, &mut ForwardSpec::reads(&hooks))
        .unwrap();
    assert_eq!(out.hook(hooks[1]).unwrap(), &sh.acts[..]);
    // Concat packing: row 0 starts with BOS and the first document's tokens.
    let first = store.shard(0, "blocks.1.hook_resid_pre").unwrap();
    let tok = m.tokenizer().unwrap();
    let doc0 = tok.encode("Document 0: the quick brown fox").unwrap();
    assert_eq!(first.tokens[0], 50256);
    assert_eq!(&first.tokens[1..1 + doc0.len()], &doc0[..]);
}

/// `--precision bf16`: recorded in the manifest, activations within the
/// fast path's error of the f32 store (and not equal to it), same tokens;
/// resuming it as f32 is refused.
#[test]
fn bf16_harvest_is_recorded_and_close_to_f32() {
    let s = setup();
    let a = s.root.join("f32").to_string_lossy().to_string();
    let b = s.root.join("bf16").to_string_lossy().to_string();
    let o = saelab(&harvest_args(&s, &a, &[]), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = saelab(&harvest_args(&s, &b, &["--precision", "bf16"]), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (sa, sb) = (
        ActivationStore::open(&a).unwrap(),
        ActivationStore::open(&b).unwrap(),
    );
    assert_eq!(sa.spec().extra["precision"], "f32");
    assert_eq!(sb.spec().extra["precision"], "bf16");
    for i in 0..sa.num_shards() {
        let (x, y) = (
            sa.shard(i, "blocks.2.hook_resid_post").unwrap(),
            sb.shard(i, "blocks.2.hook_resid_post").unwrap(),
        );
        assert_eq!(x.tokens, y.tokens);
        let (mut num, mut den) = (0f64, 0f64);
        for (&p, &q) in y.acts.iter().zip(&x.acts) {
            num += (p as f64 - q as f64).powi(2);
            den += (q as f64).powi(2);
        }
        let rel = (num / den).sqrt();
        assert!(rel > 0.0 && rel < 2e-2, "shard {i}: relative error {rel}");
    }
    // A bf16 store is not resumed by an f32 harvest.
    let std_err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    let c = s.root.join("mixed").to_string_lossy().to_string();
    let bf16_open_ended = ["--precision", "bf16", "--tokens", "0"];
    kill_after_shards(&harvest_args(&s, &c, &bf16_open_ended), Path::new(&c), 1);
    let o = saelab(&harvest_args(&s, &c, &["--tokens", "0"]), &[]);
    assert!(!o.status.success(), "{}", std_err(&o));
    assert!(std_err(&o).contains("precision"), "{}", std_err(&o));
}

#[test]
fn bad_input_is_named() {
    let s = setup();
    let out = s.root.join("x").to_string_lossy().to_string();
    let o = saelab(
        &harvest_args(&s, &out, &["--hook", "blocks.9.hook_resid_pre"]),
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("blocks.9.hook_resid_pre") && err.contains("3 layers"),
        "{err}"
    );

    let empty = s.root.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let e = empty.to_string_lossy().to_string();
    let o = saelab(
        &[
            "harvest",
            "--model",
            &s.model,
            "--dataset",
            &e,
            "--out",
            &out,
            "--hook",
            "blocks.0.hook_resid_pre",
            "--seq-len",
            "32",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("empty.txt"), "{err}");

    let o = saelab(
        &[
            "harvest",
            "--model",
            "/no/such/model.gguf",
            "--dataset",
            &s.corpus,
            "--out",
            &out,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("/no/such/model.gguf"),
        "{err}"
    );

    let o = saelab(
        &[
            "harvest",
            "--model",
            &s.model,
            "--dataset",
            &s.corpus,
            "--seq-len",
            "100",
            "--hook",
            "blocks.0.hook_resid_pre",
            "--out",
            &out,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--seq-len 100"),
        "{err}"
    );

    // A store shard that fails its checksum is reported by name.
    let good = s.root.join("g").to_string_lossy().to_string();
    assert!(saelab(&harvest_args(&s, &good, &[]), &[]).status.success());
    let shard = Path::new(&good).join("shard-00001.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let e = ActivationStore::open(&good)
        .unwrap()
        .verify()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shard-00001.safetensors") && e.contains("checksum"),
        "{e}"
    );
}

/// The real offline model on a small slice of a real corpus (runs when the
/// assets are fetched; `scripts/test` fetches them and requires them).
#[test]
fn smollm2_on_wiki_slice() {
    let root = saelab_assets::root();
    let gguf = saelab_assets::default_model_gguf().unwrap();
    let wiki = saelab_assets::corpus_path(&root, "wiki").unwrap();
    if !gguf.exists() || !wiki.exists() {
        assert!(
            !saelab_assets::assets_required(),
            "assets missing: run scripts/fetch-assets"
        );
        eprintln!("skipping: offline assets not fetched");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store").to_string_lossy().to_string();
    let o = saelab(
        &[
            "harvest",
            "--model",
            "smollm2-135m",
            "--dataset",
            "wiki",
            "--hook",
            "blocks.3.hook_resid_pre",
            "--hook",
            "blocks.8.hook_resid_post",
            "--tokens",
            "1024",
            "--seq-len",
            "64",
            "--batch-rows",
            "8",
            "--rows-per-shard",
            "8",
            "--packing",
            "bos_rows",
            "--dtype",
            "f16",
            "--out",
            &out,
        ],
        &[("SAELAB_ASSETS", root.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = ActivationStore::open(&out).unwrap();
    store.verify().unwrap();
    assert_eq!(
        (store.rows(), store.spec().d, store.num_shards()),
        (16, 576, 2)
    );
    let sh = store.shard(1, "blocks.8.hook_resid_post").unwrap();
    // bos_rows: every row starts with SmolLM2's BOS (1).
    assert!(sh.tokens.chunks(64).all(|r| r[0] == 1));
    // Residuals are finite and not degenerate; the BOS position carries the
    // well-known large-norm outlier (attention sink) at this depth.
    assert!(sh.acts.iter().all(|v| v.is_finite()));
    let norm = |r: usize, t: usize| {
        sh.acts[(r * 64 + t) * 576..(r * 64 + t + 1) * 576]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
    };
    let mean_rest: f32 = (1..64).map(|t| norm(0, t)).sum::<f32>() / 63.0;
    eprintln!(
        "BOS norm {} vs mean norm of other positions {mean_rest}",
        norm(0, 0)
    );
    // The stored vectors are the model's own forward pass of the stored
    // tokens at that hook, rounded to f16: per vector ‖Δ‖/‖x‖ within f16
    // rounding (2⁻¹¹ per element), not just "not degenerate".
    let m = Model::load(&gguf.to_string_lossy()).unwrap();
    let hook: HookPoint = "blocks.8.hook_resid_post".parse().unwrap();
    let rows = sh.tokens.len() / 64;
    let out = m
        .forward(&sh.tokens, rows, 64, &mut ForwardSpec::reads(&[hook]))
        .unwrap();
    let want = out.hook(hook).unwrap();
    let mut worst = 0.0f64;
    for (got, exp) in sh.acts.chunks(576).zip(want.chunks(576)) {
        let d2: f64 = got
            .iter()
            .zip(exp)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        let x2: f64 = exp.iter().map(|&b| f64::from(b).powi(2)).sum();
        worst = worst.max((d2 / x2).sqrt());
    }
    eprintln!("stored vs forward: max ‖Δ‖/‖x‖ {worst:e}");
    assert!(
        worst < 1e-3,
        "stored vectors differ from the forward pass: ‖Δ‖/‖x‖ {worst}"
    );
    assert!(
        worst > 0.0,
        "f16 store equals the f32 forward exactly: rounding not applied?"
    );
}

/// The manifest records the path of the dense products; a store made on one
/// path is not taken for a request on another (their results agree to f32
/// rounding, not bit for bit). `SAELAB_SIMD=scalar` forces the portable f32
/// path; on an avx512f or avx2 + fma CPU the default is the packed kernel.
#[test]
fn product_path_is_recorded_and_checked() {
    let s = setup();
    let dir = s.root.join("portable").to_string_lossy().to_string();
    let o = saelab(&harvest_args(&s, &dir, &[]), &[("SAELAB_SIMD", "scalar")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = ActivationStore::open(&dir).unwrap();
    assert_eq!(store.spec().extra["product_path"], "portable");
    let again = saelab(&harvest_args(&s, &dir, &[]), &[]);
    #[cfg(target_arch = "x86_64")]
    let packed = std::is_x86_feature_detected!("avx512f")
        || (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
    #[cfg(not(target_arch = "x86_64"))]
    let packed = false;
    let err = String::from_utf8_lossy(&again.stderr);
    if packed {
        assert!(
            !again.status.success(),
            "a portable store accepted on the packed path"
        );
        assert!(err.contains("product_path"), "{err}");
    } else {
        assert!(!err.contains("product_path"), "{err}");
    }
}
