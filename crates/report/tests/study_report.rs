//! The study report built from hand-made results: sections in the study's
//! order, Table 1 with the published column where the comparison matches
//! (values from SPEC §6), notes for missing parts, figures saved beside the
//! page, and the page written last.

use saelab_report::study::findings::{findings, Verdict, FINDINGS_FILE};
use saelab_report::study::{build, write, FIGURES_DIR, REPORT_FILE};
use saelab_results::*;
use std::path::PathBuf;

fn key(dataset: &str, n: usize, seed: u64) -> SaeKey {
    SaeKey {
        dataset: dataset.into(),
        layer: 8,
        arch: "topk".into(),
        n,
        k: Some(16),
        seed,
        lr: 3e-4,
        coeffs: ArchCoeffs::default(),
    }
}

fn sae(id: &str, k: SaeKey) -> SaeResult {
    SaeResult {
        id: id.into(),
        label: k.label(),
        key: k,
        dir: PathBuf::from("x"),
        train_stage: "t".into(),
        final_metrics: None,
        curve: vec![],
    }
}

fn row(category: &str, a: &SaeResult, b: &SaeResult, ab: f64, ba: f64) -> Table1Row {
    Table1Row {
        category: category.into(),
        a: a.label.clone(),
        b: b.label.clone(),
        differs: String::new(),
        decoder: DirectionPair {
            a_in_b: ab,
            b_in_a: ba,
            ..DirectionPair::default()
        },
        encoder: None,
        assignment_ratio: None,
        chance: 0.16,
        stage: "m".into(),
    }
}

fn corpus(name: &str, stands_for: &str) -> CorpusEntry {
    CorpusEntry {
        name: name.into(),
        source: name.into(),
        tokens: 1,
        stands_for: Some(stands_for.into()),
    }
}

/// Results with Table 1 only (no stats, eval, layer matrix or UMAP).
fn results() -> Results {
    let base = sae("a", key("web", 3072, 49));
    let seed = sae("b", key("web", 3072, 42));
    let big = sae("c", key("web", 6144, 49));
    let other = sae("d", key("stories", 3072, 49));
    Results {
        schema: RESULTS_SCHEMA.into(),
        study: "t".into(),
        spec: serde_json::json!({
            "model": {"name": "m", "precision": "f32"},
            "train": {"batch": 1024, "tokens": 524288, "lr": 0.003, "b_dec_init": "zeros", "auxk": true}
        }),
        saelab_version: "0".into(),
        machine: Machine::default(),
        wall_seconds: 1.0,
        stages: vec![],
        corpora: vec![
            corpus("web", "OpenWebText"),
            corpus("stories", "TinyStories"),
        ],
        d_model: Some(768),
        table1: vec![
            row("seed", &base, &seed, 0.5, 0.5),
            row("dataset", &base, &other, 0.1, 0.1),
            row("dictionary", &base, &big, 0.8, 0.4),
        ],
        saes: vec![base, seed, big, other],
        table2: vec![],
        layer_matrix: None,
        matches: vec![],
        train_eval: vec![],
        positions: vec![],
        umap: vec![],
        missing: vec!["activation statistics: no stats stage is complete".into()],
    }
}

/// The cells of the Table 1 row whose category is `cat`.
fn table1_cells(html: &str, cat: &str) -> Vec<String> {
    let start = html.find("Table 1:").unwrap();
    let table = &html[start..html[start..].find("</table>").unwrap() + start];
    let row = table
        .split("<tr>")
        .find(|r| r.contains(&format!(">{cat}</td>")))
        .unwrap();
    row.split("</td>")
        .filter_map(|c| c.rsplit('>').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn table1_shows_published_numbers_beside_ours() {
    let html = build(&results()).html;
    // seed pair at n = 4·d: ours 50.00, study 83.46 (SPEC §6, n 3072).
    let seed = table1_cells(&html, "seed");
    assert_eq!(
        &seed[4..8],
        ["50.00", "50.00", "83.46", "83.46"],
        "{seed:?}"
    );
    // OpenWebText vs TinyStories: 15.45.
    let ds = table1_cells(&html, "dataset");
    assert_eq!(&ds[6..8], ["15.45", "15.45"], "{ds:?}");
    // 3072 in 6144 = 89.25, 6144 in 3072 = 47.15 (directional).
    let dict = table1_cells(&html, "dictionary");
    assert_eq!(
        &dict[4..8],
        ["80.00", "40.00", "89.25", "47.15"],
        "{dict:?}"
    );
    // The budget the ratios were measured at.
    assert!(
        html.contains("Training: 512 steps of 1024 activations (524288 tokens) per SAE, lr 0.003")
    );
    // Sections in the study's order.
    let pos = |id: &str| html.find(&format!("id=\"{id}\"")).unwrap();
    assert!(pos("positions") < pos("features") && pos("features") < pos("cosines"));
    assert!(pos("cosines") < pos("tables") && pos("tables") < pos("layers"));
    assert!(pos("layers") < pos("appendix"));
}

#[test]
fn missing_parts_get_notes_and_the_page_is_written_last() {
    let r = results();
    let rep = build(&r);
    for note in [
        "No stats stage is complete",
        "No seed pair was matched.",
        "No dictionary pair was matched: Table 2 is empty.",
        "No layer pairs were matched",
        "No UMAP stage is complete",
        "No eval stage is complete.",
        "No train stage is complete.",
        "Not in this report: activation statistics",
    ] {
        assert!(rep.html.contains(note), "no note {note:?}");
    }
    assert!(rep.figures.is_empty(), "figures without data");
    let dir = tempfile::tempdir().unwrap();
    let page = write(dir.path(), &rep).unwrap();
    assert_eq!(page, dir.path().join(REPORT_FILE));
    assert!(dir.path().join(FIGURES_DIR).is_dir());
    // Same results, same bytes.
    assert_eq!(build(&r).html, std::fs::read_to_string(page).unwrap());
}

fn verdicts(r: &Results) -> Vec<(char, Verdict)> {
    findings(r).iter().map(|f| (f.key, f.verdict)).collect()
}

fn stats_entry(intervention: &str, layer: usize, curve: Vec<f64>) -> PositionEntry {
    PositionEntry {
        intervention: intervention.into(),
        stage: "s".into(),
        stats: LayerStats {
            id: "a".into(),
            layer,
            position_mean: curve,
            position_std: vec![],
            position_density: vec![],
            position_mean_ma: vec![],
            feature_mean: vec![],
            feature_std: vec![],
            feature_density: vec![],
            deciles: vec![],
            ce_per_position: None,
            fvu: None,
        },
    }
}

#[test]
fn findings_follow_their_rules() {
    use Verdict::*;
    let mut r = results();
    // Dataset 10 % < seed 50 %; 3072 in 6144 80 % > 6144 in 3072 40 %.
    assert_eq!(
        verdicts(&r),
        [
            ('a', Holds),
            ('b', Holds),
            ('c', NotMeasured),
            ('d', NotMeasured),
            ('e', NotMeasured),
            ('f', NotMeasured),
            ('g', NotMeasured)
        ]
    );
    // A dataset pair above the seed pair makes (a) unclear; a second
    // seed pair at 6144 sharing more than at 3072 contradicts (c).
    let base = r.saes[0].clone();
    let big2 = sae("e", key("web", 6144, 42));
    let big = r.saes[2].clone();
    let other2 = sae("f", key("stories2", 3072, 49));
    r.table1.push(row("dataset", &base, &other2, 0.7, 0.6));
    r.table1.push(row("seed", &big, &big2, 0.6, 0.6));
    r.saes.extend([big2, other2]);
    let v = verdicts(&r);
    assert_eq!(v[0], ('a', Unclear));
    assert_eq!(v[2], ('c', DoesNotHold));
    // (d): sparsity pairs above every dataset pair.
    let k32 = sae(
        "g",
        SaeKey {
            k: Some(32),
            ..key("web", 3072, 49)
        },
    );
    r.table1.push(row("sparsity", &base, &k32, 0.8, 0.8));
    r.saes.push(k32);
    assert_eq!(verdicts(&r)[3], ('d', Holds));
    // (g): an encoder ratio below its decoder ratio, then one above.
    r.table1[0].encoder = Some(DirectionPair {
        a_in_b: 0.1,
        b_in_a: 0.1,
        ..DirectionPair::default()
    });
    assert_eq!(verdicts(&r)[6], ('g', Holds));
    r.table1[1].encoder = Some(DirectionPair {
        a_in_b: 0.9,
        b_in_a: 0.9,
        ..DirectionPair::default()
    });
    assert_eq!(verdicts(&r)[6], ('g', Unclear));
    // (b) with the pair written large-first reads the other direction.
    let mut swapped = results();
    let (small, large) = (swapped.saes[0].clone(), swapped.saes[2].clone());
    swapped.table1[2] = row("dictionary", &large, &small, 0.4, 0.8);
    assert_eq!(verdicts(&swapped)[1], ('b', Holds));
    swapped.table1[2] = row("dictionary", &large, &small, 0.8, 0.4);
    assert_eq!(verdicts(&swapped)[1], ('b', DoesNotHold));
}

#[test]
fn the_position_finding_measures_the_wiggle() {
    let mut r = results();
    let wiggly: Vec<f64> = (0..64)
        .map(|t| 10.0 + if t % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let smooth: Vec<f64> = (0..64).map(|t| 10.0 + t as f64 * 0.01).collect();
    r.positions = vec![
        stats_entry("none", 8, wiggly.clone()),
        stats_entry("zero", 8, smooth.clone()),
        stats_entry("shuffle", 8, smooth.clone()),
    ];
    let f = &findings(&r)[5];
    assert_eq!(f.verdict, Verdict::Holds, "{}", f.here);
    // Second differences of a ±1 alternation are 4; the level over
    // positions 1..63 is 10 − 1/63 (32 odd, 31 even): 4 / 9.984 = 0.401.
    assert!(f.here.contains("L8 0.401 / 0.000 / 0.000"), "{}", f.here);
    r.positions[2] = stats_entry("shuffle", 8, wiggly.clone());
    assert_eq!(findings(&r)[5].verdict, Verdict::DoesNotHold);
    // A layer measured without its interventions is not judged.
    r.positions = vec![stats_entry("none", 8, wiggly)];
    assert_eq!(findings(&r)[5].verdict, Verdict::NotMeasured);
}

#[test]
fn findings_md_is_written_beside_the_report() {
    let d = tempfile::tempdir().unwrap();
    let rep = build(&results());
    write(d.path(), &rep).unwrap();
    let md = std::fs::read_to_string(d.path().join(FINDINGS_FILE)).unwrap();
    assert!(md.contains("| (a) | the dataset changes the feature set more than the seed does"));
    assert!(md.contains("**holds**"));
    assert!(rep.html.contains("id=\"findings\""));
}

#[test]
fn committed_study_smollm2_results_reproduce_their_findings() {
    // bench/study-smollm2: the slim copy of the preset's results.json and
    // the findings.md its run wrote; rebuilding the report from the copy
    // must give the same findings, number for number.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/study-smollm2");
    let out = tempfile::tempdir().unwrap();
    saelab_report::study::render_file(&dir.join("results.slim.json.gz"), out.path()).unwrap();
    let got = std::fs::read_to_string(out.path().join(FINDINGS_FILE)).unwrap();
    let want = std::fs::read_to_string(dir.join(FINDINGS_FILE)).unwrap();
    assert_eq!(got, want);
    assert!(want.contains("| (a) |") && want.contains("**holds**"));
}
