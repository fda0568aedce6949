//! `saelab study` end to end on a tiny generated GPT-2 and two small
//! corpora: every stage kind runs; a run killed with SIGKILL inside
//! harvest, inside train, inside the analyses and between stages, then
//! re-run, ends with the same `results.json` as an uninterrupted run
//! (timings aside); a re-run skips every stage; a one-stage run needs its
//! inputs; and the smoke preset runs on the real offline model.

use saelab_lm::testing::{write_gpt2, Gpt2Shape};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A corpus of `docs` short documents in one of two styles.
fn corpus(path: &Path, style: usize, docs: usize) {
    let mut s = String::new();
    for i in 0..docs {
        let text = if style == 0 {
            format!("Report {i}: the committee met on day {} and agreed on {} items; the budget rose by {}%.", i % 28 + 1, i % 7 + 2, i % 13)
        } else {
            format!("Once upon a time a small fox named Pip{} found {} shiny stones near the river and sang.", i % 11, i % 5 + 1)
        };
        s.push_str(&serde_json::json!({ "text": text }).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// A tiny study in `dir`: model, corpora and spec (relative paths, so two
/// folders give identical results files).
fn setup(dir: &Path) -> PathBuf {
    let m = dir.join("gpt2-tiny");
    std::fs::create_dir_all(&m).unwrap();
    write_gpt2(&m, Gpt2Shape::TINY, 5, "").unwrap();
    corpus(&dir.join("a.jsonl"), 0, 400);
    corpus(&dir.join("b.jsonl"), 1, 400);
    let spec = r#"
name = "tiny"
[model]
name = "gpt2-tiny"
n_layers = 3
[corpora.a]
source = "a.jsonl"
tokens = 4096
[corpora.b]
source = "b.jsonl"
tokens = 4096
[harvest]
seq_len = 16
batch_rows = 8
rows_per_shard = 32
dtype = "f32"
[train]
batch = 64
steps = 40
lr = 3e-3
buffer_vectors = 512
checkpoint_every = 5
log_every = 5
[baseline]
dataset = "a"
layer = 1
n = 64
k = 4
seed = 1
[[grid]]
seed = [1, 2]
[[grid]]
dataset = ["a", "b"]
[[grid]]
layer = [0, 1, 2]
[eval]
corpora = ["a", "b"]
tokens = 512
[stats]
corpus = "a"
layers = [0, 1, 2]
interventions = ["none", "shuffle"]
rows = 8
[match]
categories = ["dataset", "seed", "layer"]
"#;
    let p = dir.join("study.toml");
    std::fs::write(&p, spec).unwrap();
    p
}

fn saelab(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_saelab"));
    c.args(args)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = saelab(dir, args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "saelab {args:?} failed:\n{err}");
    String::from_utf8_lossy(&out.stdout).to_string() + &err
}

/// results.json without what legitimately differs between runs.
fn results(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("runs/study-tiny/results.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["wall_seconds"] = Value::Null;
    v["machine"] = Value::Null;
    for s in v["stages"].as_array_mut().unwrap() {
        s["seconds"] = Value::Null;
    }
    v
}

/// Files under `dir` whose name is `name` (recursive).
fn count_named(dir: &Path, name: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_named(&p, name)
            } else {
                usize::from(p.file_name().is_some_and(|n| n == name))
            }
        })
        .sum()
}

/// Starts a run and SIGKILLs it once `ready` holds; returns whether it
/// was killed (false: it finished first).
fn kill_when(dir: &Path, ready: impl Fn() -> bool) -> bool {
    let mut child = saelab(dir, &["study", "run", "study.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "run failed before the kill point");
            return false;
        }
        if ready() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "kill point never reached"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_runs_resume_to_the_same_results() {
    let reference = tempfile::tempdir().unwrap();
    setup(reference.path());
    let out = run_ok(reference.path(), &["study", "run", "study.toml"]);
    assert!(
        out.contains("results: runs/study-tiny/results.json"),
        "{out}"
    );
    let want = results(reference.path());
    // Every section has data.
    assert_eq!(want["missing"], Value::Array(vec![]), "{}", want["missing"]);
    assert_eq!(want["saes"].as_array().unwrap().len(), 5);
    let cats: Vec<&str> = want["table1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["category"].as_str().unwrap())
        .collect();
    assert_eq!(cats.iter().filter(|c| **c == "layer").count(), 3);
    assert!(cats.contains(&"dataset") && cats.contains(&"seed"));
    // A second run does nothing and gives the same results.
    let again = run_ok(reference.path(), &["study", "run", "study.toml"]);
    assert!(again.contains("0 stage(s) run"), "{again}");
    assert_eq!(results(reference.path()), want);
    // A slim copy of results.json rebuilds the same findings and tables.
    slim_copy_reproduces_the_findings(reference.path());

    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_path_buf();
    setup(&w);
    let cache = w.join("runs/cache");
    let inside = |kind: &'static str, file: &'static str| {
        let cache = cache.clone();
        move || {
            std::fs::read_dir(&cache).is_ok_and(|rd| {
                rd.filter_map(|e| e.ok()).any(|e| {
                    e.file_name().to_string_lossy().starts_with(kind)
                        && count_named(&e.path(), file) > 0
                })
            })
        }
    };
    let mut killed = 0;
    killed += usize::from(kill_when(&w, inside("harvest", "shard-00000.safetensors")));
    killed += usize::from(kill_when(&w, inside("train", "LATEST")));
    let c = cache.clone();
    killed += usize::from(kill_when(&w, move || count_named(&c, "stage.json") >= 6));
    killed += usize::from(kill_when(&w, inside("eval", "summary.json")));
    let c = cache.clone();
    killed += usize::from(kill_when(&w, move || count_named(&c, "stage.json") >= 12));
    assert!(killed >= 3, "only {killed} of 5 kill points were reached");
    run_ok(&w, &["study", "run", "study.toml"]);
    assert_eq!(
        results(&w),
        want,
        "results after kills differ from an uninterrupted run"
    );
}

/// `study slim` then `study report --results` on the copy: the same
/// findings.md and Table 1 as the study's own report, notes for the rest.
fn slim_copy_reproduces_the_findings(dir: &Path) {
    let study = dir.join("runs/study-tiny");
    run_ok(
        dir,
        &[
            "study",
            "slim",
            "runs/study-tiny/results.json",
            "slim.json.gz",
        ],
    );
    let full = std::fs::metadata(study.join("results.json")).unwrap().len();
    let slim = std::fs::metadata(dir.join("slim.json.gz")).unwrap().len();
    assert!(slim * 3 < full, "slim copy {slim} bytes of {full}");
    run_ok(
        dir,
        &[
            "study",
            "report",
            "--results",
            "slim.json.gz",
            "--out",
            "from-slim",
        ],
    );
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let findings = read(study.join("findings.md"));
    assert!(findings.contains("| (a) |"), "{findings}");
    assert_eq!(read(dir.join("from-slim/findings.md")), findings);
    let table1 = |html: String| {
        let start = html.find("Table 1:").unwrap();
        html[start..start + html[start..].find("</table>").unwrap()].to_string()
    };
    assert_eq!(
        table1(read(dir.join("from-slim/report.html"))),
        table1(read(study.join("report.html")))
    );
    assert!(read(dir.join("from-slim/report.html")).contains("dropped from this slim copy"));
}

/// `sae_weights.safetensors` of every SAE under `cache`, by SAE folder name.
fn weights_by_label(cache: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for stage in std::fs::read_dir(cache).unwrap().filter_map(|e| e.ok()) {
        if !stage.file_name().to_string_lossy().starts_with("train-") {
            continue;
        }
        for sae in std::fs::read_dir(stage.path())
            .unwrap()
            .filter_map(|e| e.ok())
        {
            let w = sae.path().join("sae_weights.safetensors");
            if w.exists() {
                let label = sae.file_name().to_string_lossy().to_string();
                assert!(out.insert(label, std::fs::read(w).unwrap()).is_none());
            }
        }
    }
    out
}

#[test]
fn a_study_trained_from_the_model_matches_one_trained_from_f32_stores() {
    // From stores: only the harvest and train stages.
    let stored = tempfile::tempdir().unwrap();
    setup(stored.path());
    let text = run_ok(stored.path(), &["study", "plan", "study.toml", "--json"]);
    let plan: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    for kind in ["harvest", "train"] {
        for s in plan["stages"].as_array().unwrap() {
            if s["kind"] == kind {
                let hash = s["hash"].as_str().unwrap();
                run_ok(
                    stored.path(),
                    &["study", "run", "study.toml", "--stage", hash],
                );
            }
        }
    }
    // From the model: the whole study, no store on disk.
    let streamed = tempfile::tempdir().unwrap();
    let spec = setup(streamed.path());
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("[train]\n", "[train]\nsource = \"model\"\n"),
    )
    .unwrap();
    let text = run_ok(streamed.path(), &["study", "plan", "study.toml", "--json"]);
    let plan: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let kinds: Vec<&str> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"harvest"), "{kinds:?}");
    // Corpus a's four SAEs (three layers) train in one stage, b's in another.
    assert_eq!(kinds.iter().filter(|k| **k == "train").count(), 2);
    run_ok(streamed.path(), &["study", "run", "study.toml"]);
    assert_eq!(results(streamed.path())["missing"], Value::Array(vec![]));
    assert_eq!(
        count_named(&streamed.path().join("runs/cache"), "manifest.json"),
        0
    );

    let want = weights_by_label(&stored.path().join("runs/cache"));
    let got = weights_by_label(&streamed.path().join("runs/cache"));
    assert_eq!(want.len(), 5);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (label, w) in &want {
        assert!(
            got[label] == *w,
            "{label}: weights differ between store and model"
        );
    }
}

#[test]
fn plan_json_and_single_stage_runs() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let text = run_ok(d.path(), &["study", "plan", "study.toml", "--json"]);
    let plan: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(plan["schema"], "saelab.plan.v1");
    let stages = plan["stages"].as_array().unwrap();
    for s in stages {
        assert_eq!(s["state"], "to run");
        for key in ["kind", "hash", "dir", "deps", "inputs", "estimate_seconds"] {
            assert!(!s[key].is_null(), "stage without {key}: {s}");
        }
    }
    let train = stages.iter().find(|s| s["kind"] == "train").unwrap();
    assert!(!train["saes"].as_array().unwrap().is_empty());
    // A train stage before its store: refused, naming the store stage.
    let hash = train["hash"].as_str().unwrap();
    let out = saelab(
        d.path(),
        &["study", "run", "study.toml", "--stage", &hash[..16]],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs harvest") && err.contains("not complete"),
        "{err}"
    );
    // Its store first, then the stage itself.
    let store = train["deps"][0].as_str().unwrap();
    run_ok(d.path(), &["study", "run", "study.toml", "--stage", store]);
    run_ok(d.path(), &["study", "run", "study.toml", "--stage", hash]);
    let text = run_ok(d.path(), &["study", "plan", "study.toml", "--json"]);
    let plan: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let state = |h: &str| {
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["hash"] == h)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(store), "done");
    assert_eq!(state(hash), "done");
    // The report of a study with only these stages: every other section
    // is left out with a note, and nothing fails.
    run_ok(d.path(), &["study", "report", "study.toml"]);
    let html = std::fs::read_to_string(d.path().join("runs/study-tiny/report.html")).unwrap();
    for note in [
        "No stats stage is complete",
        "No match stage is complete: Table 1 is empty.",
        "No layer pairs were matched",
        "No UMAP stage is complete",
        "No eval stage is complete.",
    ] {
        assert!(
            html.contains(note),
            "no note {note:?} in the partial report"
        );
    }
    assert!(html.contains("Training curves") && html.contains("training_curves.svg"));
    // A stage folder without stage.json is partial.
    let eval = stages.iter().find(|s| s["kind"] == "eval").unwrap();
    std::fs::create_dir_all(d.path().join(eval["dir"].as_str().unwrap())).unwrap();
    let text = run_ok(d.path(), &["study", "plan", "study.toml", "--json"]);
    let plan: Value = serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    let e = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hash"] == eval["hash"])
        .unwrap();
    assert_eq!(e["state"], "partial");
}

#[test]
fn a_bad_spec_is_named_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let p = setup(d.path());
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("layer = [0, 1, 2]", "layer = [0, 7]");
    std::fs::write(&p, text).unwrap();
    let out = saelab(d.path(), &["study", "run", "study.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("study.toml: grid[2].layer: layer 7 is out of range"),
        "{err}"
    );
    assert!(
        !d.path().join("runs/cache").exists(),
        "a stage ran before the spec was checked"
    );
}

/// The smoke preset on the real offline model (CI has the assets).
#[test]
fn smoke_preset_runs_on_the_offline_model() {
    let root = saelab_assets::root();
    let have = ["wiki", "speeches"]
        .iter()
        .all(|c| root.join(format!("corpora/{c}.jsonl")).exists())
        && saelab_assets::default_model_gguf().is_ok_and(|p| p.exists());
    if !have {
        assert!(
            !saelab_assets::assets_required(),
            "SAELAB_REQUIRE_ASSETS is set but the smoke assets (SmolLM2, wiki, speeches) are missing"
        );
        eprintln!("SKIPPED: smoke preset (offline assets missing; scripts/test fetches them)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let out = run_ok(d.path(), &["study", "run", "smoke"]);
    assert!(out.contains("14 stage(s) run"), "{out}");
    report_rebuilds_and_opens_in_chromium(d.path());
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("runs/study-smoke/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["missing"], Value::Array(vec![]));
    assert_eq!(r["table1"].as_array().unwrap().len(), 3);
    // The baseline SAE reconstructs its own corpus better than chance.
    let cell = r["train_eval"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["train"] == "wiki" && c["eval"] == "wiki")
        .unwrap();
    let fvu = cell["metrics"]["fvu"].as_f64().unwrap();
    assert!(fvu > 0.0 && fvu < 0.5, "FVU {fvu}");
}

/// `study report` rebuilds the run's results.json and report.html byte for
/// byte, and the page passes the browser checks (a page that requests
/// something from outside must fail them).
fn report_rebuilds_and_opens_in_chromium(dir: &Path) {
    let study = dir.join("runs/study-smoke");
    let read = |f: &str| std::fs::read(study.join(f)).unwrap();
    let (results, page) = (read("results.json"), read("report.html"));
    for _ in 0..2 {
        run_ok(dir, &["study", "report", "smoke"]);
        assert!(
            read("results.json") == results,
            "results.json changed on rebuild"
        );
        assert!(
            read("report.html") == page,
            "report.html changed on rebuild"
        );
    }
    let html = String::from_utf8(page).unwrap();
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    let Some(ok) = browser_check(&study.join("report.html"), &["--min-table1-rows", "3"]) else {
        return;
    };
    assert!(ok.0, "report failed the browser checks:\n{}", ok.1);
    // The checker fails a page that reaches outside the file.
    let bad = study.join("bad.html");
    let leak = html.replacen(
        "<body>",
        "<body><img src=\"https://example.invalid/x.png\">",
        1,
    );
    std::fs::write(&bad, leak).unwrap();
    let bad_run = browser_check(&bad, &[]).unwrap();
    assert!(
        !bad_run.0,
        "the browser check passed a page with an outside request"
    );
}

/// Runs `tests/browser/check_report.mjs` (Playwright driving Debian's
/// Chromium) on a page: (passed, output). `None` when Chromium or the npm
/// package is missing and `SAELAB_REQUIRE_BROWSER` is not set (scripts/test
/// sets it and installs them; .ci/run installs Chromium).
fn browser_check(page: &Path, args: &[&str]) -> Option<(bool, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let have = dir.join("node_modules/playwright-core").exists() && Path::new(&chromium).exists();
    if !have {
        assert!(
            std::env::var_os("SAELAB_REQUIRE_BROWSER").is_none(),
            "SAELAB_REQUIRE_BROWSER is set but Chromium ({chromium}) or tests/browser/node_modules is missing: apt-get install chromium; (cd tests/browser && npm ci)"
        );
        eprintln!(
            "SKIPPED: browser check (no Chromium or playwright-core; scripts/test installs it)"
        );
        return None;
    }
    let out = Command::new("node")
        .arg(dir.join("check_report.mjs"))
        .arg(page)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}
