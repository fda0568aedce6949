//! Planner tests: the presets plan, hashes are stable across runs and
//! folders, a changed setting invalidates exactly its downstream, shared
//! stores are shared, and `study-gpt2.toml` plans to the 72 distinct SAEs
//! of the study's Table 3.

use saelab_study::plan::{plan, Plan, Work};
use saelab_study::Spec;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn preset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../experiments")
        .join(name)
}

fn load(name: &str) -> Spec {
    Spec::load(&preset(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn hashes(p: &Plan) -> Vec<String> {
    p.stages.iter().map(|s| s.hash.clone()).collect()
}

#[test]
fn study_gpt2_plans_the_72_distinct_saes_of_table_3() {
    let spec = load("study-gpt2.toml");
    let p = plan(&spec).unwrap();
    assert_eq!(p.saes.len(), 72);
    let ids: BTreeSet<&str> = p.saes.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), 72, "SAE ids are distinct");
    // Table 3 by row (SPEC §6): count SAEs per (arch, dataset).
    let count = |arch: &str, ds: &str| {
        p.saes
            .iter()
            .filter(|s| s.key.arch == arch && s.key.dataset == ds)
            .count()
    };
    assert_eq!(count("topk", "openwebtext"), 18);
    // 18 at layer 8 + 24 layer-sweep SAEs − 2 shared.
    assert_eq!(count("topk", "tinystories"), 40);
    assert_eq!(count("topk", "redpajama"), 1);
    assert_eq!(count("topk", "pile"), 1);
    assert_eq!(count("batchtopk", "openwebtext"), 3);
    assert_eq!(count("batchtopk", "tinystories"), 6);
    assert_eq!(count("jumprelu", "tinystories"), 3);
    // One store per dataset; SAEs grouped by the store and hook they read.
    let stores = p.stages.iter().filter(|s| s.kind == "harvest").count();
    assert_eq!(stores, 4);
    let trained: usize = p
        .stages
        .iter()
        .filter_map(|s| match &s.work {
            Work::Train(t) => Some(t.saes.len()),
            _ => None,
        })
        .sum();
    assert_eq!(trained, 72);
}

#[test]
fn hashes_are_stable_across_runs_and_working_directories() {
    let a = hashes(&plan(&load("quick.toml")).unwrap());
    let b = hashes(&plan(&load("quick.toml")).unwrap());
    assert_eq!(a, b);
    // Another working directory: relative paths resolve elsewhere but
    // nothing in a hash depends on where we stand.
    let here = std::env::current_dir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_current_dir(tmp.path()).unwrap();
    let c = hashes(&plan(&load("quick.toml")).unwrap());
    std::env::set_current_dir(here).unwrap();
    assert_eq!(a, c);
}

/// A hash computed once and written down: the same spec must give it on
/// any machine and in any folder. (If a change of this crate alters it,
/// every cached stage of every user re-runs: only do that on purpose, and
/// bump `identity::code_version` when a stage's results change.)
#[test]
fn hashes_are_pinned() {
    let text = r#"
name = "pin"
[model]
name = "smollm2-135m"
[corpora.wiki]
source = "wiki"
tokens = 8192
[baseline]
dataset = "wiki"
layer = 3
n = 1152
"#;
    let spec = Spec::parse(text, Path::new("pin.toml")).unwrap();
    let p = plan(&spec).unwrap();
    let got: Vec<(&str, &str)> = p
        .stages
        .iter()
        .map(|s| (s.kind.as_str(), &s.hash[..16]))
        .collect();
    assert_eq!(got, PINNED, "stage hashes changed");
}

const PINNED: &[(&str, &str)] = &[
    ("harvest", "9b7f4ae488ff0d36"),
    ("train", "c22cb25bb6b21a3f"),
];

/// Stages whose hash differs between two plans.
fn changed(a: &Plan, b: &Plan) -> BTreeSet<String> {
    let hb: BTreeSet<&String> = b.stages.iter().map(|s| &s.hash).collect();
    a.stages
        .iter()
        .filter(|s| !hb.contains(&s.hash))
        .map(|s| s.kind.clone())
        .collect()
}

fn with(text_edit: impl Fn(&str) -> String) -> Plan {
    let path = preset("quick.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let spec = Spec::parse(&text_edit(&text), &path).unwrap_or_else(|e| panic!("{e}"));
    plan(&spec).unwrap()
}

#[test]
fn a_changed_setting_invalidates_exactly_its_downstream() {
    let base = with(|t| t.to_string());
    // Match threshold: only match stages.
    let m = with(|t| t.replace("[match]\n", "[match]\nthreshold = 0.6\n"));
    assert_eq!(changed(&base, &m), BTreeSet::from(["match".to_string()]));
    // Stats rows: only stats.
    let s = with(|t| t.replace("rows = 32", "rows = 16"));
    assert_eq!(changed(&base, &s), BTreeSet::from(["stats".to_string()]));
    // Eval tokens: only eval.
    let e = with(|t| t.replace("tokens = 4096", "tokens = 2048"));
    assert_eq!(changed(&base, &e), BTreeSet::from(["eval".to_string()]));
    // Training lr: train and every analysis of the SAEs, not the stores.
    let l = with(|t| t.replace("lr = 3e-3", "lr = 1e-3"));
    let kinds = changed(&base, &l);
    assert!(!kinds.contains("harvest"), "{kinds:?}");
    for k in ["train", "eval", "stats", "match"] {
        assert!(kinds.contains(k), "{k} not invalidated: {kinds:?}");
    }
    // Every stage of the new plan that has the old hash is the old stage.
    let n_same = l.stages.iter().filter(|s| s.kind == "harvest").count();
    assert_eq!(n_same, 3);
    // A corpus budget: that corpus's store and everything downstream of
    // it, but not the other stores.
    let c = with(|t| {
        t.replacen(
            "tokens = 131_072\nstands_for = \"RedPajama",
            "tokens = 65_536\nstands_for = \"RedPajama",
            1,
        )
    });
    let stores_changed = c
        .stages
        .iter()
        .filter(|s| s.kind == "harvest" && !base.stages.iter().any(|b| b.hash == s.hash))
        .count();
    assert_eq!(stores_changed, 1);
}

#[test]
fn two_specs_that_need_the_same_store_share_its_stage() {
    let a = with(|t| t.to_string());
    // Another study name and other analyses, same corpora and layers.
    let b = with(|t| {
        t.replace("name = \"quick\"", "name = \"other\"")
            .replace("rows = 32", "rows = 8")
    });
    let ha: BTreeSet<_> = a
        .stages
        .iter()
        .filter(|s| s.kind == "harvest")
        .map(|s| &s.hash)
        .collect();
    let hb: BTreeSet<_> = b
        .stages
        .iter()
        .filter(|s| s.kind == "harvest")
        .map(|s| &s.hash)
        .collect();
    assert_eq!(ha, hb);
    let ta: BTreeSet<_> = a
        .stages
        .iter()
        .filter(|s| s.kind == "train")
        .map(|s| &s.hash)
        .collect();
    let tb: BTreeSet<_> = b
        .stages
        .iter()
        .filter(|s| s.kind == "train")
        .map(|s| &s.hash)
        .collect();
    assert_eq!(ta, tb);
}

#[test]
fn every_preset_plans() {
    for p in [
        "smoke.toml",
        "quick.toml",
        "study-smollm2.toml",
        "study-gpt2.toml",
    ] {
        let spec = load(p);
        let pl = plan(&spec).unwrap();
        for kind in ["harvest", "train", "eval", "stats", "match"] {
            assert!(
                pl.stages.iter().any(|s| s.kind == kind),
                "{p}: no {kind} stage"
            );
        }
    }
}

#[test]
fn training_from_the_model_plans_no_store_and_one_stage_per_corpus() {
    let stored = with(|t| t.to_string());
    let streamed = with(|t| t.replace("[train]\n", "[train]\nsource = \"model\"\n"));
    assert!(!streamed.stages.iter().any(|s| s.kind == "harvest"));
    let train: Vec<&saelab_study::plan::TrainWork> = streamed
        .stages
        .iter()
        .filter_map(|s| match &s.work {
            saelab_study::plan::Work::Train(t) => Some(t),
            _ => None,
        })
        .collect();
    // One stage per corpus, every layer of it a lane of one forward pass.
    assert_eq!(train.len(), 3);
    let wiki = train
        .iter()
        .find(|t| t.stream.as_ref().unwrap().corpus == "wiki")
        .unwrap();
    let hooks = &wiki.stream.as_ref().unwrap().hooks;
    assert_eq!(hooks.len(), 4, "{hooks:?}");
    for sae in &wiki.saes {
        let hook = &hooks[sae.lane];
        assert_eq!(hook, &format!("blocks.{}.hook_resid_pre", sae.key.layer));
    }
    // Streamed SAEs are other SAEs (f32 vectors, not the f16 store's):
    // no id is shared, and the analyses follow them.
    let ids = |p: &Plan| -> BTreeSet<String> { p.saes.iter().map(|s| s.id.clone()).collect() };
    assert!(ids(&stored).is_disjoint(&ids(&streamed)));
    // The corpus's size changes its train stage.
    let more = with(|t| {
        t.replace("[train]\n", "[train]\nsource = \"model\"\n")
            .replacen("tokens = 131_072", "tokens = 65_536", 1)
    });
    assert_eq!(
        changed(&streamed, &more),
        BTreeSet::from(["train", "eval", "stats", "match", "umap"].map(String::from))
    );
}
