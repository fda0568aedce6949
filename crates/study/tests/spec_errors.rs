//! Every spec error names the file, the entry and the problem, before any
//! stage runs.

use saelab_study::Spec;
use std::path::Path;

const BASE: &str = r#"
name = "t"
[model]
name = "smollm2-135m"
[corpora.wiki]
source = "wiki"
tokens = 4096
[corpora.speeches]
source = "speeches"
tokens = 4096
[baseline]
dataset = "wiki"
layer = 3
n = 64
k = 4
seed = 1
[[grid]]
name = "seeds"
seed = [1, 2]
[match]
categories = ["seed"]
"#;

fn err(text: &str) -> String {
    match Spec::parse(text, Path::new("specs/my.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, parts: &[&str]) {
    assert!(msg.starts_with("specs/my.toml: "), "no file in: {msg}");
    for p in parts {
        assert!(msg.contains(p), "`{p}` missing from: {msg}");
    }
}

#[test]
fn the_base_spec_is_valid() {
    Spec::parse(BASE, Path::new("specs/my.toml")).unwrap();
}

#[test]
fn unknown_key() {
    let m = err(&BASE.replace("[baseline]\n", "[baseline]\nlayr = 3\n"));
    assert_names(&m, &["line", "layr", "unknown field"]);
}

#[test]
fn duplicate_grid_name() {
    let m = err(&format!("{BASE}\n[[grid]]\nname = \"seeds\"\nk = [8]\n"));
    assert_names(&m, &["grid[1].name", "duplicate", "seeds"]);
}

#[test]
fn duplicate_corpus_name() {
    let m = err(&BASE.replace("[corpora.speeches]", "[corpora.wiki]"));
    assert_names(&m, &["line", "wiki"]);
}

#[test]
fn layer_out_of_range() {
    let m = err(&format!("{BASE}\n[[grid]]\nlayer = [3, 30]\n"));
    assert_names(&m, &["grid[1].layer", "layer 30", "out of range", "0..29"]);
    let m = err(&BASE.replace("layer = 3", "layer = 31"));
    assert_names(&m, &["baseline.layer", "layer 31"]);
}

#[test]
fn sae_names_an_undeclared_corpus() {
    let m = err(&format!(
        "{BASE}\n[[grid]]\ndataset = [\"wiki\", \"pile\"]\n"
    ));
    assert_names(
        &m,
        &[
            "grid[1].dataset",
            "`pile`",
            "not declared",
            "speeches, wiki",
        ],
    );
    let m = err(&format!("{BASE}\n[eval]\ncorpora = [\"owt\"]\n"));
    assert_names(&m, &["eval.corpora", "`owt`"]);
}

#[test]
fn comparison_with_no_pairs() {
    let m = err(&BASE.replace(
        "categories = [\"seed\"]",
        "categories = [\"seed\", \"dataset\"]",
    ));
    assert_names(&m, &["match.categories", "`dataset` has no pairs"]);
    let m = err(&BASE.replace("categories = [\"seed\"]", "categories = [\"colour\"]"));
    assert_names(&m, &["match.categories", "`colour` is not one of"]);
}

#[test]
fn empty_axis_and_zero_values() {
    let m = err(&BASE.replace("seed = [1, 2]", "seed = []"));
    assert_names(&m, &["grid[0].seed", "empty list"]);
    let m = err(&format!("{BASE}\n[train]\ncheckpoint_every = 0\n"));
    assert_names(&m, &["train.checkpoint_every", "at least 1"]);
    let m = err(&format!("{BASE}\n[train]\ntokens = 100\nsteps = 3\n"));
    assert_names(&m, &["train", "not both"]);
    let m = err(&format!("{BASE}\n[train]\nsource = \"disk\"\n"));
    assert_names(&m, &["train.source", "`disk` is not one of"]);
    let m = err(&format!("{BASE}\n[train]\nsource = \"model\"\n"));
    assert_names(&m, &["train", "needs `tokens` or `steps`"]);
}

#[test]
fn stats_layer_without_its_sae() {
    let m = err(&format!(
        "{BASE}\n[stats]\ncorpus = \"wiki\"\nlayers = [3, 5]\n"
    ));
    assert_names(&m, &["stats.layers", "layer 5", "no SAE"]);
}

#[test]
fn missing_file_is_named() {
    let e = Spec::load(Path::new("no/such/spec.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no/such/spec.toml: "), "{e}");
}
