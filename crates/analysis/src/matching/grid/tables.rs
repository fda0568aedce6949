//! The study's tables over a list of pair results: the ratio matrix
//! (Figure 13, the layer study), Table 1 (pairs that differ in one setting,
//! grouped by it) and Table 2 (pairs that differ only in n). They take any
//! list of [`PairResult`]s (a full grid or the pairs a study ran), looking
//! each SAE up by label.

use super::error::{GridError, Result};
use super::pair::{GridSae, PairResult};
use super::settings::{differing, setting_values, Category, SaeSettings, Setting};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// R(row←column) for every pair: rows = reference, columns = query, None
/// on the diagonal and for pairs not computed. Pairs naming an SAE not in
/// `saes` are an error.
pub fn ratio_matrix(saes: &[GridSae], pairs: &[PairResult]) -> Result<Vec<Vec<Option<f64>>>> {
    let index: HashMap<&str, usize> = saes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.as_str(), i))
        .collect();
    let mut m = vec![vec![None; saes.len()]; saes.len()];
    for p in pairs {
        let (i, j) = (find(&index, p, &p.label_a)?, find(&index, p, &p.label_b)?);
        m[i][j] = Some(p.ratio_a_from_b());
        m[j][i] = Some(p.ratio_b_from_a());
    }
    Ok(m)
}

fn find<T: Copy>(index: &HashMap<&str, T>, p: &PairResult, label: &str) -> Result<T> {
    index
        .get(label)
        .copied()
        .ok_or_else(|| GridError::UnknownLabel {
            a: p.label_a.clone(),
            b: p.label_b.clone(),
            missing: label.to_string(),
        })
}

/// Settings of both SAEs of each pair, by label.
fn settings_of<'a>(
    saes: &'a [GridSae],
    pairs: &'a [PairResult],
) -> Result<Vec<(&'a PairResult, &'a SaeSettings, &'a SaeSettings)>> {
    let index: HashMap<&str, &SaeSettings> = saes
        .iter()
        .map(|s| (s.label.as_str(), &s.settings))
        .collect();
    pairs
        .iter()
        .map(|p| {
            Ok((
                p,
                find(&index, p, &p.label_a)?,
                find(&index, p, &p.label_b)?,
            ))
        })
        .collect()
}

/// One line of `table1.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table1Row {
    /// The one setting that differs; None for `other` (several or none).
    pub setting: Option<Setting>,
    /// The study's category.
    pub category: Category,
    /// Label of A.
    pub sae_a: String,
    /// Label of B.
    pub sae_b: String,
    /// A's value of the setting (for `other`: `setting: value | …`).
    pub value_a: String,
    /// B's value.
    pub value_b: String,
    /// R(A←B): share of B's features with a match in A.
    pub ratio_a_from_b: f64,
    /// R(B←A): share of A's features with a match in B.
    pub ratio_b_from_a: f64,
    /// Mean of the two.
    pub mean: f64,
    /// What `ratio_a_from_b` measures, the study's way: "B in A" (for
    /// dictionary sizes the sizes, `12288 in 3072`; else the labels).
    pub ratio_a_from_b_is: String,
    /// What `ratio_b_from_a` measures: "A in B".
    pub ratio_b_from_a_is: String,
}

/// Table 1: pairs that differ in exactly one setting, grouped by it in
/// [`Setting::ALL`] order, then all other pairs as `other`; within a group
/// in the order of `pairs`.
pub fn table1(saes: &[GridSae], pairs: &[PairResult]) -> Result<Vec<Table1Row>> {
    let with = settings_of(saes, pairs)?;
    let diffs: Vec<Vec<Setting>> = with.iter().map(|(_, a, b)| differing(a, b)).collect();
    let mut rows = Vec::new();
    for s in Setting::ALL {
        for ((p, a, b), d) in with.iter().zip(&diffs) {
            if d.as_slice() == [s] {
                let (va, vb) = setting_values(s, a, b);
                rows.push(table1_row(Some(s), p, a, b, va, vb));
            }
        }
    }
    for ((p, a, b), d) in with.iter().zip(&diffs) {
        if d.len() != 1 {
            let (va, vb) = other_values(d, a, b);
            rows.push(table1_row(None, p, a, b, va, vb));
        }
    }
    Ok(rows)
}

/// `setting: value | …` on each side for a pair of several differences.
fn other_values(d: &[Setting], a: &SaeSettings, b: &SaeSettings) -> (String, String) {
    if d.is_empty() {
        let same = "identical recorded settings".to_string();
        return (same.clone(), same);
    }
    let vals: Vec<(String, String)> = d.iter().map(|&s| setting_values(s, a, b)).collect();
    let side = |first: bool| {
        d.iter()
            .zip(&vals)
            .map(|(s, (va, vb))| format!("{}: {}", s.name(), if first { va } else { vb }))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    (side(true), side(false))
}

fn table1_row(
    setting: Option<Setting>,
    p: &PairResult,
    a: &SaeSettings,
    b: &SaeSettings,
    value_a: String,
    value_b: String,
) -> Table1Row {
    let (ra, rb) = (p.ratio_a_from_b(), p.ratio_b_from_a());
    // Dictionary rows read as sizes ("12288 in 3072"), as in the study.
    let (name_a, name_b) = if setting == Some(Setting::N) {
        (a.n.to_string(), b.n.to_string())
    } else {
        (p.label_a.clone(), p.label_b.clone())
    };
    Table1Row {
        setting,
        category: setting.map_or(Category::Other, Setting::category),
        sae_a: p.label_a.clone(),
        sae_b: p.label_b.clone(),
        value_a,
        value_b,
        ratio_a_from_b: ra,
        ratio_b_from_a: rb,
        mean: (ra + rb) / 2.0,
        ratio_a_from_b_is: format!("{name_b} in {name_a}"),
        ratio_b_from_a_is: format!("{name_a} in {name_b}"),
    }
}

/// One line of `table2.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table2Row {
    pub sae_small: String,
    pub sae_large: String,
    pub n_small: usize,
    pub n_large: usize,
    /// n_large − n_small.
    pub n_diff: usize,
    /// Share of the small SAE's features with a match in the large one.
    pub ratio_small_in_large: f64,
    /// Share of the large SAE's features with a match in the small one.
    pub ratio_large_in_small: f64,
    /// Features of the large SAE without a match above τ in the small one:
    /// round(n_large · (1 − ratio_large_in_small)).
    pub large_unmatched: u64,
}

/// Table 2: the pairs that differ only in n, small SAE first.
pub fn table2(saes: &[GridSae], pairs: &[PairResult]) -> Result<Vec<Table2Row>> {
    let with = settings_of(saes, pairs)?;
    let rows = with
        .into_iter()
        .filter(|(_, a, b)| differing(a, b) == [Setting::N])
        .map(|(p, a, b)| {
            // small-in-large = queries of the small SAE against the large one.
            let (small, large, ns, nl, small_in_large, large_in_small) = if a.n <= b.n {
                (
                    &p.label_a,
                    &p.label_b,
                    a.n,
                    b.n,
                    p.ratio_b_from_a(),
                    p.ratio_a_from_b(),
                )
            } else {
                (
                    &p.label_b,
                    &p.label_a,
                    b.n,
                    a.n,
                    p.ratio_a_from_b(),
                    p.ratio_b_from_a(),
                )
            };
            Table2Row {
                sae_small: small.clone(),
                sae_large: large.clone(),
                n_small: ns,
                n_large: nl,
                n_diff: nl - ns,
                ratio_small_in_large: small_in_large,
                ratio_large_in_small: large_in_small,
                large_unmatched: (nl as f64 * (1.0 - large_in_small)).round() as u64,
            }
        })
        .collect();
    Ok(rows)
}
