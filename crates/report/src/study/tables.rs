//! §4.2.2 of the study: Table 1 (matching ratio per comparison category)
//! and Table 2 (feature-count differences between dictionary sizes), with
//! the study's published GPT-2 small numbers in their own columns where
//! our row makes the same comparison.

use super::{pct, sae};
use crate::html::{Page, Table};
use crate::published::{self, Comparison};
use saelab_results::{Results, SaeKey, Table1Row, CATEGORIES as ORDER};

pub(super) fn write(p: &mut Page, r: &Results) {
    p.section("tables", "4.2.2 Matching ratios (Tables 1 and 2)");
    if r.table1.is_empty() {
        p.missing("No match stage is complete: Table 1 is empty.");
    } else {
        p.subsection("Table 1: share of features matched (decoder, τ 0.7)");
        p.para("A in B = the share of A's features whose best cosine among B's exceeds τ. Columns marked \"study\" are the study's published GPT-2 small numbers (its Table 1, quoted in SPEC §6) for the same comparison, not ours; blank where the study has no such row. R_H: the one-to-one (Hungarian) assignment ratio.");
        p.table(&table1(r));
    }
    if r.table2.is_empty() {
        p.missing("No dictionary pair was matched: Table 2 is empty.");
    } else {
        p.subsection("Table 2: feature-count difference between dictionary sizes");
        p.para("n_L·R(L in S) − n_S·R(S in L): how many more of the larger dictionary's features are covered than of the smaller's (the study's definition; it reproduces its 400 / 366 / 156 from its Table 1).");
        p.table(&table2(r));
    }
}

fn table1(r: &Results) -> Table {
    let mut t = Table::new(
        &[
            "category",
            "A",
            "B",
            "differs",
            "A in B (%)",
            "B in A (%)",
            "study A in B (%)",
            "study B in A (%)",
            "MMCS A in B",
            "encoder A in B (%)",
            "encoder B in A (%)",
            "R_H (%)",
            "chance cos",
        ],
        4,
    );
    t.published_cols = vec![6, 7];
    let mut rows: Vec<&Table1Row> = r.table1.iter().collect();
    rows.sort_by_key(|x| {
        ORDER
            .iter()
            .position(|c| *c == x.category)
            .unwrap_or(ORDER.len())
    });
    for row in rows {
        let study = published_for(r, row);
        let fmt = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.2}"));
        t.rows.push(vec![
            row.category.clone(),
            row.a.clone(),
            row.b.clone(),
            row.differs.clone(),
            pct(row.decoder.a_in_b),
            pct(row.decoder.b_in_a),
            fmt(study.map(|s| s.0)),
            fmt(study.map(|s| s.1)),
            format!("{:.3}", row.decoder.mmcs_a_in_b),
            row.encoder
                .as_ref()
                .map_or_else(String::new, |e| pct(e.a_in_b)),
            row.encoder
                .as_ref()
                .map_or_else(String::new, |e| pct(e.b_in_a)),
            row.assignment_ratio.map_or_else(String::new, pct),
            format!("{:.3}", row.chance),
        ]);
    }
    t
}

pub(crate) fn key<'a>(r: &'a Results, label: &str) -> Option<&'a SaeKey> {
    r.saes
        .iter()
        .find(|s| s.label == label)
        .or_else(|| sae(r, label))
        .map(|s| &s.key)
}

/// The study dataset a corpus of ours stands for.
fn stands_for(r: &Results, corpus: &str) -> Option<&'static str> {
    let c = r.corpora.iter().find(|c| c.name == corpus)?;
    published::study_dataset(c.stands_for.as_deref())
}

/// n as a multiple of the model width (the study's sizes are 4, 8, 16·d).
fn multiple_of_d(r: &Results, n: usize) -> Option<usize> {
    r.d_model
        .filter(|&d| d > 0 && n.is_multiple_of(d))
        .map(|d| n / d)
}

/// The published (A in B, B in A) for the comparison a row makes.
fn published_for(r: &Results, row: &Table1Row) -> Option<(f64, f64)> {
    let (a, b) = (key(r, &row.a)?, key(r, &row.b)?);
    let multiple = |n| multiple_of_d(r, n);
    let c = match row.category.as_str() {
        "dataset" => Comparison::Dataset(stands_for(r, &a.dataset)?, stands_for(r, &b.dataset)?),
        "seed" => Comparison::Seed(multiple(a.n)?),
        "dictionary" => Comparison::Dictionary(multiple(a.n)?, multiple(b.n)?),
        "architecture" => Comparison::Architecture(&a.arch, &b.arch),
        "sparsity" => Comparison::Sparsity(a.k?, b.k?),
        _ => return None,
    };
    let ts = stands_for(r, &a.dataset) == Some("TinyStories");
    published::lookup(&c, ts)
}

fn table2(r: &Results) -> Table {
    let mut t = Table::new(
        &[
            "smaller (S)",
            "larger (L)",
            "n_S",
            "n_L",
            "R(L in S) (%)",
            "R(S in L) (%)",
            "difference",
            "study difference",
        ],
        2,
    );
    t.published_cols = vec![7];
    for row in &r.table2 {
        let multiple = |n| multiple_of_d(r, n);
        let ts = key(r, &row.small).and_then(|k| stands_for(r, &k.dataset)) == Some("TinyStories");
        let study = multiple(row.n_small)
            .zip(multiple(row.n_large))
            .and_then(|(s, l)| published::TABLE2.iter().find(|x| x.0 == s && x.1 == l))
            .map(|x| if ts { x.3 } else { x.2 });
        t.rows.push(vec![
            row.small.clone(),
            row.large.clone(),
            row.n_small.to_string(),
            row.n_large.to_string(),
            pct(row.large_in_small),
            pct(row.small_in_large),
            format!("{:.0}", row.difference),
            study.map_or_else(String::new, |v| format!("{v:.0}")),
        ]);
    }
    t
}
