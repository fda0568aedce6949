//! Unit tests of the grid module: which settings differ and the category,
//! the tables from a hand-made list of pair results, `grid` against
//! `match_pair` per pair (the study runner's path), storing a `PairResult`,
//! loading weights from a directory, and refused options.

use super::*;
use crate::matching::MatchError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::{ArchSpec, ExportMeta, SaeConfig, SaeParams};
use std::collections::BTreeMap;

fn settings(arch: &str, k: Option<usize>, n: usize, seed: &str) -> SaeSettings {
    SaeSettings {
        dataset: Some("owt".into()),
        seed: Some(seed.into()),
        data_seed: None,
        d_in: 8,
        n,
        k,
        architecture: arch.into(),
        arch_hparams: BTreeMap::new(),
        hook: Some("blocks.8.hook_resid_pre".into()),
        layer: Some(8),
        hparams: BTreeMap::from([("train.lr".to_string(), "0.0003".to_string())]),
    }
}

fn random_sae(d: usize, n: usize, seed: u64) -> Sae {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = SaeParams::zeros(d, n, false);
    for v in p.w_enc_t.iter_mut().chain(p.w_dec.iter_mut()) {
        *v = rng.random_range(-1.0f32..1.0);
    }
    Sae::new(SaeConfig::new(d, n, ArchSpec::TopK { k: 2 }), p).unwrap()
}

fn opts() -> MatchOptions {
    MatchOptions {
        chance_queries: 16,
        hist_bins: 20,
        ..MatchOptions::default()
    }
}

#[test]
fn one_setting_one_category() {
    let base = settings("topk", Some(16), 3072, "42");
    let cases = [
        (settings("topk", Some(16), 3072, "49"), vec![Setting::Seed]),
        (settings("topk", Some(32), 3072, "42"), vec![Setting::K]),
        (settings("topk", Some(16), 12288, "42"), vec![Setting::N]),
        // k belongs to the architecture when only one side has a k.
        (
            settings("jumprelu", None, 3072, "42"),
            vec![Setting::Architecture],
        ),
        (
            settings("batchtopk", Some(16), 3072, "42"),
            vec![Setting::Architecture],
        ),
        (
            settings("batchtopk", Some(32), 3072, "42"),
            vec![Setting::K, Setting::Architecture],
        ),
    ];
    for (other, want) in cases {
        assert_eq!(differing(&base, &other), want, "{other:?}");
        let cat = match want.as_slice() {
            [one] => Some(one.category()),
            _ => None,
        };
        assert_eq!(category_of(&base, &other), cat);
    }
    assert_eq!(Setting::K.category(), Category::Sparsity);
    assert_eq!(Setting::N.category(), Category::DictionarySize);
    assert_eq!(Setting::Hook.category(), Category::Layer);

    // An architecture's own hyperparameters count only for the same one.
    let mut a = settings("jumprelu", None, 3072, "42");
    let mut b = a.clone();
    a.arch_hparams.insert("l0_coeff".into(), "0.004".into());
    b.arch_hparams.insert("l0_coeff".into(), "0.0008".into());
    assert_eq!(differing(&a, &b), [Setting::Hparams]);
    assert_eq!(
        setting_values(Setting::Hparams, &a, &b),
        ("arch.l0_coeff=0.004".into(), "arch.l0_coeff=0.0008".into())
    );
}

fn direction(ratio: f64) -> DirectionResult {
    DirectionResult {
        ratio,
        mmcs: ratio,
        top_mean: vec![ratio],
        chance_analytic: 0.1,
        chance_monte_carlo: 0.1,
        histograms: Vec::new(),
    }
}

fn pair(a: &str, b: &str, a_from_b: f64, b_from_a: f64) -> PairResult {
    PairResult {
        label_a: a.into(),
        label_b: b.into(),
        kind: VectorKind::Decoder,
        n_a: 0,
        n_b: 0,
        dim: 8,
        threshold: 0.7,
        b_in_a: direction(a_from_b),
        a_in_b: direction(b_from_a),
        r_h: None,
        shared: None,
    }
}

fn grid_sae(label: &str, s: SaeSettings) -> GridSae {
    GridSae {
        label: label.into(),
        dir: label.into(),
        settings: s,
        sae: None,
    }
}

#[test]
fn tables_from_a_list_of_pairs() {
    let saes = [
        grid_sae("big", settings("topk", Some(16), 12288, "42")),
        grid_sae("small", settings("topk", Some(16), 3072, "42")),
        grid_sae("seed49", settings("topk", Some(16), 3072, "49")),
    ];
    // Not a full grid: the pairs a study ran, in its order.
    let pairs = [
        pair("small", "seed49", 0.8, 0.6),
        pair("big", "small", 0.9, 0.25),
    ];
    let t1 = table1(&saes, &pairs).unwrap();
    assert_eq!(t1.len(), 2);
    assert_eq!(t1[0].setting, Some(Setting::Seed));
    assert_eq!(t1[0].category, Category::Seed);
    assert_eq!(t1[1].category, Category::DictionarySize);
    // R(big←small) = 0.9 = share of small's features matched in big.
    assert_eq!(t1[1].ratio_a_from_b, 0.9);
    assert_eq!(t1[1].ratio_a_from_b_is, "3072 in 12288");
    assert_eq!(t1[1].ratio_b_from_a_is, "12288 in 3072");

    let t2 = table2(&saes, &pairs).unwrap();
    assert_eq!(t2.len(), 1);
    assert_eq!((t2[0].sae_small.as_str(), t2[0].n_diff), ("small", 9216));
    assert_eq!(t2[0].ratio_small_in_large, 0.9);
    assert_eq!(t2[0].ratio_large_in_small, 0.25);
    assert_eq!(t2[0].large_unmatched, 9216);

    let m = ratio_matrix(&saes, &pairs).unwrap();
    assert_eq!(m[0][1], Some(0.9));
    assert_eq!(m[1][0], Some(0.25));
    assert_eq!(m[0][2], None);

    let stray = [pair("small", "nowhere", 0.5, 0.5)];
    let err = table1(&saes, &stray).unwrap_err().to_string();
    assert!(err.contains("no SAE labelled nowhere"), "{err}");
}

#[test]
fn grid_equals_match_pair_per_pair_and_results_round_trip() {
    let labels = ["a", "b", "c"];
    let weights = [
        random_sae(8, 32, 1),
        random_sae(8, 32, 2),
        random_sae(8, 48, 3),
    ];
    let saes: Vec<GridSae> = labels
        .iter()
        .zip(&weights)
        .map(|(l, w)| GridSae {
            sae: Some(w.clone()),
            ..grid_sae(l, settings("topk", Some(2), w.config().d_sae, l))
        })
        .collect();
    let g = grid(&saes, &opts()).unwrap();
    assert_eq!(g.pairs.len(), 3);
    let mut k = 0;
    for i in 0..3 {
        for j in i + 1..3 {
            let o = MatchOptions {
                labels: (labels[i].into(), labels[j].into()),
                ..opts()
            };
            let p = match_pair(&weights[i], &weights[j], &o).unwrap();
            assert_eq!(g.pairs[k].result, p);
            let text = serde_json::to_string(&p).unwrap();
            let back: PairResult = serde_json::from_str(&text).unwrap();
            assert_eq!(back, p);
            k += 1;
        }
    }
    assert_eq!(g.pairs[0].result.b_in_a.histograms.len(), 4);
    // A GridSae stored as JSON comes back without weights.
    let text = serde_json::to_string(&saes[0]).unwrap();
    let back: GridSae = serde_json::from_str(&text).unwrap();
    assert!(back.sae.is_none());
    assert_eq!(back.settings, saes[0].settings);
}

#[test]
fn grid_loads_weights_it_was_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ExportMeta {
        model_name: "tiny".into(),
        hook_name: "blocks.1.hook_resid_post".into(),
        context_size: 16,
        prepend_bos: true,
        dataset_path: "c.jsonl".into(),
        extra: Default::default(),
    };
    let dirs: Vec<(std::path::PathBuf, Option<String>)> = (0..2)
        .map(|i| {
            let d = dir.path().join(format!("s{i}"));
            saelab_sae::save_sae(&d, &random_sae(8, 32, i), &meta, None).unwrap();
            (d, None)
        })
        .collect();
    let kept = GridSae::load_all(&dirs).unwrap();
    assert_eq!(kept[0].settings.layer, Some(1));
    assert_eq!(kept[0].settings.dataset.as_deref(), Some("c.jsonl"));
    let bare: Vec<GridSae> = kept
        .iter()
        .map(|s| GridSae {
            sae: None,
            ..s.clone()
        })
        .collect();
    let (a, b) = (grid(&kept, &opts()).unwrap(), grid(&bare, &opts()).unwrap());
    assert_eq!(a.results(), b.results());

    let missing = dir.path().join("gone");
    let err = GridSae::load(&missing, None).unwrap_err().to_string();
    assert_eq!(err, format!("{}: no such directory", missing.display()));
}

#[test]
fn refused_options() {
    let (a, b) = (random_sae(8, 32, 1), random_sae(8, 32, 2));
    let o = MatchOptions {
        chance_queries: 0,
        ..opts()
    };
    match match_pair(&a, &b, &o) {
        Err(GridError::Compare { source, .. }) => match *source {
            MatchError::InvalidOption(m) => assert!(m.contains("chance_queries"), "{m}"),
            other => panic!("expected an invalid-option error, got {other:?}"),
        },
        other => panic!("expected a compare error, got {other:?}"),
    }
    let one = [grid_sae("a", settings("topk", Some(2), 32, "1"))];
    assert!(matches!(grid(&one, &opts()), Err(GridError::TooFew(1))));
}
