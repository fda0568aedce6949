//! The study's findings (a)–(g), each measured on this grid and marked
//! holds / does not hold / unclear by a stated rule, beside what the study
//! reports for GPT-2 small. Built from [`Results`] alone (Table 1, the
//! layer matrix, the per-position curves), so any grid that has the pairs a
//! finding needs gets its verdict; a finding without them says what is
//! missing. Also written as `findings.md` beside the report (the
//! study-smollm2 preset's is committed under `bench/study-smollm2/`).

use super::pct;
use super::tables::key;
use crate::html::{Page, Table};
use saelab_results::{Results, Table1Row};

/// The file the findings table is written to, beside `report.html`.
pub const FINDINGS_FILE: &str = "findings.md";

/// What the numbers say about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    DoesNotHold,
    Unclear,
    /// The grid lacks the pairs or curves the finding needs.
    NotMeasured,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Unclear => "unclear",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One finding: the claim, the study's numbers, ours, the verdict and the
/// rule that gave it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub key: char,
    pub claim: &'static str,
    pub study: &'static str,
    pub here: String,
    pub verdict: Verdict,
    pub rule: &'static str,
}

/// Every finding, in the study's order.
pub fn findings(r: &Results) -> Vec<Finding> {
    vec![
        dataset_vs_seed(r),
        nesting(r),
        seed_vs_size(r),
        sparsity_architecture_vs_dataset(r),
        layers(r),
        positions(r),
        encoder_vs_decoder(r),
    ]
}

/// The report section.
pub fn write(p: &mut Page, r: &Results) {
    p.section("findings", "The study's findings on this grid");
    p.para(
        "Each claim of the study beside what this grid measured (decoder features, τ as in \
         Table 1, ratios as the mean of both directions unless a direction is named). A \
         finding that does not reproduce is a result: the numbers are here either way.",
    );
    let mut t = Table::new(
        &[
            "",
            "claim",
            "study (GPT-2 small)",
            "this grid",
            "verdict",
            "rule",
        ],
        6,
    );
    for f in findings(r) {
        t.rows.push(vec![
            format!("({})", f.key),
            f.claim.into(),
            f.study.into(),
            f.here,
            f.verdict.text().into(),
            f.rule.into(),
        ]);
    }
    p.table(&t);
}

/// The findings as a markdown table.
pub fn markdown(r: &Results) -> String {
    let mut s = format!(
        "Findings of study `{}` (saelab {}), from its results.json.\n\n\
         | | claim | study (GPT-2 small) | this grid | verdict |\n|---|---|---|---|---|\n",
        r.study, r.saelab_version
    );
    for f in findings(r) {
        s.push_str(&format!(
            "| ({}) | {} | {} | {} | **{}** |\n",
            f.key,
            f.claim,
            f.study,
            f.here.replace('|', "/"),
            f.verdict.text()
        ));
    }
    s.push_str("\nRules:\n");
    for f in findings(r) {
        s.push_str(&format!("- ({}) {}\n", f.key, f.rule));
    }
    s
}

/// Mean of a row's two decoder directions.
fn mean(row: &Table1Row) -> f64 {
    (row.decoder.a_in_b + row.decoder.b_in_a) / 2.0
}

fn rows<'a>(r: &'a Results, category: &str) -> Vec<&'a Table1Row> {
    r.table1.iter().filter(|t| t.category == category).collect()
}

/// Dictionary size of an SAE of the study (by label or id).
fn n_of(r: &Results, sae: &str) -> Option<usize> {
    key(r, sae).map(|k| k.n)
}

fn not_measured(key: char, claim: &'static str, study: &'static str, why: &str) -> Finding {
    Finding {
        key,
        claim,
        study,
        here: format!("not measured: {why}"),
        verdict: Verdict::NotMeasured,
        rule: "",
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if (hi - lo).abs() < 5e-5 {
        format!("{} %", pct(lo))
    } else {
        format!("{}–{} %", pct(lo), pct(hi))
    }
}

/// `below` entirely under `above` → holds; entirely over → does not hold.
fn compare(below: &[f64], above: &[f64]) -> Verdict {
    let max_b = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_b = below.iter().copied().fold(f64::INFINITY, f64::min);
    let min_a = above.iter().copied().fold(f64::INFINITY, f64::min);
    let max_a = above.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max_b < min_a {
        Verdict::Holds
    } else if min_b > max_a {
        Verdict::DoesNotHold
    } else {
        Verdict::Unclear
    }
}

/// The axes a pair shares besides the one its category varies: n, k,
/// architecture and layer of its first SAE (by label or id).
fn setting(r: &Results, sae: &str) -> Option<(usize, Option<usize>, String, usize)> {
    key(r, sae).map(|k| (k.n, k.k, k.arch.clone(), k.layer))
}

fn dataset_vs_seed(r: &Results) -> Finding {
    const CLAIM: &str = "the dataset changes the feature set more than the seed does";
    const STUDY: &str = "dataset pairs 6.2–29.5 %; seed pairs 54.9–83.5 %";
    let seeds = rows(r, "seed");
    // Each dataset pair against the seed pairs of the same n, k,
    // architecture and layer.
    let mut data = Vec::new();
    let mut seed = Vec::new();
    for d in rows(r, "dataset") {
        let s = setting(r, &d.a);
        let same: Vec<f64> = seeds
            .iter()
            .filter(|t| s.is_some() && setting(r, &t.a) == s)
            .map(|t| mean(t))
            .collect();
        if !same.is_empty() {
            data.push(mean(d));
            seed.extend(same);
        }
    }
    if data.is_empty() {
        return not_measured(
            'a',
            CLAIM,
            STUDY,
            "needs a dataset pair and a seed pair with the same n, k, architecture and layer",
        );
    }
    seed.sort_by(f64::total_cmp);
    seed.dedup();
    Finding {
        key: 'a',
        claim: CLAIM,
        study: STUDY,
        here: format!(
            "{} dataset pairs {}; seed pair {}",
            data.len(),
            range(&data),
            range(&seed)
        ),
        verdict: compare(&data, &seed),
        rule: "dataset pairs against the seed pairs of the same n, k, architecture and layer: \
               holds if every dataset pair shares fewer features than those seed pairs, does not \
               hold if every one shares more",
    }
}

fn nesting(r: &Results) -> Finding {
    const CLAIM: &str = "features of smaller dictionaries are largely contained in larger ones";
    const STUDY: &str =
        "small in large 72.8–89.3 %, large in small 25.6–47.2 % (Table 2: 156–400 features)";
    let mut small_in_large = Vec::new();
    let mut large_in_small = Vec::new();
    for t in rows(r, "dictionary") {
        let (Some(na), Some(nb)) = (n_of(r, &t.a), n_of(r, &t.b)) else {
            continue;
        };
        if na < nb {
            small_in_large.push(t.decoder.a_in_b);
            large_in_small.push(t.decoder.b_in_a);
        } else if nb < na {
            small_in_large.push(t.decoder.b_in_a);
            large_in_small.push(t.decoder.a_in_b);
        }
    }
    if small_in_large.is_empty() {
        return not_measured('b', CLAIM, STUDY, "needs two dictionary sizes");
    }
    let diff: Vec<String> = r
        .table2
        .iter()
        .map(|t| format!("{:.0}", t.difference))
        .collect();
    // Per size pair: contained (≥ half) and more contained than the reverse.
    let pass = small_in_large
        .iter()
        .zip(&large_in_small)
        .filter(|(s, l)| **s >= 0.5 && s > l)
        .count();
    Finding {
        key: 'b',
        claim: CLAIM,
        study: STUDY,
        here: format!(
            "small in large {}, large in small {}; Table 2 difference {} features",
            range(&small_in_large),
            range(&large_in_small),
            if diff.is_empty() {
                "–".into()
            } else {
                diff.join(", ")
            }
        ),
        verdict: if pass == small_in_large.len() {
            Verdict::Holds
        } else if pass == 0 {
            Verdict::DoesNotHold
        } else {
            Verdict::Unclear
        },
        rule: "a size pair passes if at least half of the smaller dictionary's features have a \
               match in the larger one and that share exceeds the reverse one; holds if every \
               size pair passes, does not hold if none does",
    }
}

fn seed_vs_size(r: &Results) -> Finding {
    const CLAIM: &str = "seed overlap falls as the dictionary grows";
    const STUDY: &str = "83.5 / 65.9 / 54.9 % at n 4·d / 8·d / 16·d (OpenWebText)";
    // Seed pairs grouped by everything but n: dataset, k, architecture, layer.
    let mut groups: std::collections::BTreeMap<String, Vec<(usize, f64)>> = Default::default();
    for t in rows(r, "seed") {
        let Some(k) = key(r, &t.a) else { continue };
        let g = format!("{} k{:?} {} L{}", k.dataset, k.k, k.arch, k.layer);
        groups.entry(g).or_default().push((k.n, mean(t)));
    }
    let lines: Vec<Vec<(usize, f64)>> = groups
        .into_values()
        .map(|mut v| {
            v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            v.dedup_by_key(|x| x.0);
            v
        })
        .filter(|v| v.len() >= 2)
        .collect();
    if lines.is_empty() {
        return not_measured(
            'c',
            CLAIM,
            STUDY,
            "needs seed pairs at two dictionary sizes",
        );
    }
    let falls = lines
        .iter()
        .filter(|v| v.windows(2).all(|w| w[1].1 < w[0].1))
        .count();
    let rises = lines
        .iter()
        .filter(|v| v.windows(2).all(|w| w[1].1 > w[0].1))
        .count();
    Finding {
        key: 'c',
        claim: CLAIM,
        study: STUDY,
        here: lines
            .iter()
            .map(|v| {
                v.iter()
                    .map(|(n, x)| format!("n {n}: {} %", pct(*x)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join("; "),
        verdict: if falls == lines.len() {
            Verdict::Holds
        } else if rises == lines.len() {
            Verdict::DoesNotHold
        } else {
            Verdict::Unclear
        },
        rule: "seed pairs that differ only in n: holds if the overlap decreases at every larger \
               size, in every such series",
    }
}

fn sparsity_architecture_vs_dataset(r: &Results) -> Finding {
    const CLAIM: &str = "sparsity and architecture change the set less than the dataset does";
    const STUDY: &str = "sparsity 42.8–55.5 %, architecture 53.9–60.2 %; dataset 6.2–29.5 %";
    let data: Vec<f64> = rows(r, "dataset").into_iter().map(mean).collect();
    let other: Vec<f64> = rows(r, "sparsity")
        .into_iter()
        .chain(rows(r, "architecture"))
        .map(mean)
        .collect();
    if data.is_empty() || other.is_empty() {
        return not_measured(
            'd',
            CLAIM,
            STUDY,
            "needs dataset pairs and sparsity or architecture pairs",
        );
    }
    let show = |cat: &str| {
        let v: Vec<f64> = rows(r, cat).into_iter().map(mean).collect();
        if v.is_empty() {
            "–".to_string()
        } else {
            range(&v)
        }
    };
    Finding {
        key: 'd',
        claim: CLAIM,
        study: STUDY,
        here: format!(
            "sparsity {}, architecture {}; dataset {}",
            show("sparsity"),
            show("architecture"),
            range(&data)
        ),
        verdict: compare(&data, &other),
        rule: "holds if every sparsity and architecture pair shares more features than every \
               dataset pair",
    }
}

fn layers(r: &Results) -> Finding {
    const CLAIM: &str = "later layers share more features with their neighbours than early layers";
    const STUDY: &str = "Fig 13 (TinyStories): adjacent-layer overlap grows with depth";
    let Some(m) = &r.layer_matrix else {
        return not_measured('e', CLAIM, STUDY, "needs a layer sweep");
    };
    let adjacent: Vec<(usize, usize, f64)> = (1..m.layers.len())
        .filter_map(|i| {
            let (a, b) = (m.ratio[i - 1][i]?, m.ratio[i][i - 1]?);
            Some((m.layers[i - 1], m.layers[i], (a + b) / 2.0))
        })
        .collect();
    if adjacent.len() < 2 {
        return not_measured('e', CLAIM, STUDY, "needs three or more layers");
    }
    let ups = adjacent.windows(2).filter(|w| w[1].2 > w[0].2).count();
    let downs = adjacent.len() - 1 - ups;
    let (first, last) = (adjacent[0].2, adjacent[adjacent.len() - 1].2);
    Finding {
        key: 'e',
        claim: CLAIM,
        study: STUDY,
        here: adjacent
            .iter()
            .map(|(a, b, v)| format!("L{a}–L{b}: {} %", pct(*v)))
            .collect::<Vec<_>>()
            .join("; "),
        verdict: if last > first && ups > downs {
            Verdict::Holds
        } else if last < first && downs > ups {
            Verdict::DoesNotHold
        } else {
            Verdict::Unclear
        },
        rule: "holds if the deepest adjacent pair shares more than the shallowest and the \
               adjacent overlap rises more often than it falls",
    }
}

/// High-frequency wiggle of a per-position curve: mean |second difference|
/// of the curve over positions ≥ 1 (BOS left out; the first second
/// difference, centred on position 2, is skipped too), relative to the
/// curve's mean over positions ≥ 1.
fn oscillation(curve: &[f64]) -> Option<f64> {
    if curve.len() < 5 {
        return None;
    }
    let c = &curve[1..];
    let level = c.iter().sum::<f64>() / c.len() as f64;
    let wiggle = c
        .windows(3)
        .skip(1)
        .map(|w| (w[2] - 2.0 * w[1] + w[0]).abs())
        .sum::<f64>()
        / (c.len() - 3) as f64;
    (level.abs() > 0.0).then(|| wiggle / level.abs())
}

fn positions(r: &Results) -> Finding {
    const CLAIM: &str = "per-position activation oscillates with position, and the pattern \
                         vanishes when positions are zeroed or shuffled";
    const STUDY: &str =
        "GPT-2 (learned wpe): oscillation at every layer, gone under zero / shuffle";
    let mut per_layer: Vec<(usize, f64, Option<f64>, Option<f64>)> = Vec::new();
    for e in r.positions.iter().filter(|e| e.intervention == "none") {
        let layer = e.stats.layer;
        let Some(none) = oscillation(&e.stats.position_mean) else {
            continue;
        };
        let under = |what: &str| {
            r.positions
                .iter()
                .find(|x| x.intervention == what && x.stats.layer == layer)
                .and_then(|x| oscillation(&x.stats.position_mean))
        };
        per_layer.push((layer, none, under("zero"), under("shuffle")));
    }
    per_layer.sort_by_key(|x| x.0);
    // Judged only where both interventions were measured.
    per_layer.retain(|x| x.2.is_some() && x.3.is_some());
    if per_layer.is_empty() {
        return not_measured(
            'f',
            CLAIM,
            STUDY,
            "needs stats under none, zero and shuffle",
        );
    }
    let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.3}"));
    // Vanishes: the wiggle under an intervention is under half of the clean one.
    let vanish = |x: &(usize, f64, Option<f64>, Option<f64>)| {
        [x.2, x.3].iter().flatten().all(|&v| v < 0.5 * x.1)
    };
    let gone = per_layer.iter().filter(|x| vanish(x)).count();
    Finding {
        key: 'f',
        claim: CLAIM,
        study: STUDY,
        here: format!(
            "oscillation index none / zero / shuffle: {}",
            per_layer
                .iter()
                .map(|x| format!("L{} {} / {} / {}", x.0, f(Some(x.1)), f(x.2), f(x.3)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        verdict: if gone == per_layer.len() {
            Verdict::Holds
        } else if gone == 0 {
            Verdict::DoesNotHold
        } else {
            Verdict::Unclear
        },
        rule: "oscillation index = mean |second difference| of the mean activation per position \
               (positions ≥ 1) over its mean; holds if zero and shuffle each leave under half of \
               the clean index at every stats layer measured under both, does not hold if at none",
    }
}

fn encoder_vs_decoder(r: &Results) -> Finding {
    const CLAIM: &str = "encoder-based matching gives lower ratios than decoder-based";
    const STUDY: &str = "Fig 11: encoder top-1 cosines below decoder ones";
    let pairs: Vec<(f64, f64)> = r
        .table1
        .iter()
        .filter_map(|t| {
            let e = t.encoder.as_ref()?;
            Some(((e.a_in_b + e.b_in_a) / 2.0, mean(t)))
        })
        .collect();
    if pairs.is_empty() {
        return not_measured('g', CLAIM, STUDY, "needs encoder matching");
    }
    let lower = pairs.iter().filter(|(e, d)| e < d).count();
    let higher = pairs.iter().filter(|(e, d)| e > d).count();
    let enc: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let dec: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    Finding {
        key: 'g',
        claim: CLAIM,
        study: STUDY,
        here: format!(
            "encoder lower in {lower}, equal in {}, higher in {higher} of {} pairs; encoder {}, \
             decoder {}",
            pairs.len() - lower - higher,
            pairs.len(),
            range(&enc),
            range(&dec)
        ),
        verdict: if higher == 0 && lower > 0 {
            Verdict::Holds
        } else if lower == 0 && higher > 0 {
            Verdict::DoesNotHold
        } else {
            Verdict::Unclear
        },
        rule: "holds if no matched pair has an encoder ratio above its decoder ratio and some \
               have it below (pairs where both are equal, e.g. both 0, are ties), does not hold \
               in the reverse case",
    }
}
