//! The output files of a pair and of a grid, written atomically, CSV
//! through the `csv` crate (fields quoted only when they need it). Figures
//! (Top-n histograms, the heatmap) are not written here: they come from
//! `saelab_report::recipes::matching`, which this crate does not depend on.
//!
//! Pair (`write_pair`): `match.json` (the [`MatchReport`]); `summary.csv`,
//! one line per comparison × direction: `kind,unit,direction,reference,
//! query,n_ref,n_query,ratio,mmcs,chance_analytic,chance_monte_carlo,r_h,
//! assignment_mean_cosine,assignment_path,certified` (the last four empty
//! without assignment; `direction` is `b_in_a` = queries of B against
//! reference A, i.e. R(A←B), or `a_in_b`); `top_<kind>_<unit>_<direction>
//! .csv`: every query's top-n, `query,idx_1,cos_1,…` (indices into the
//! reference); `assignment_<kind>.csv` / `assignment_<kind>_neurons.csv`:
//! `a,b,cosine`, by A index.
//!
//! Grid (`write_grid`): `grid.json` (schema [`GRID_SCHEMA`]: the SAEs with
//! their settings, the ratio matrix, per pair the settings that differ and
//! the report); `ratios.csv`: R(row←column), empty diagonal; `table1.csv`:
//! `setting,sae_a,sae_b,value_a,value_b,ratio_a_from_b,ratio_b_from_a,mean,
//! category,ratio_a_from_b_is,ratio_b_from_a_is`; `table2.csv`:
//! `sae_small,sae_large,n_small,n_large,n_diff,ratio_small_in_large,
//! ratio_large_in_small,large_unmatched`. Ratios with 6 decimals.

use super::error::{GridError, Result};
use super::tables::{ratio_matrix, table1, table2, Table1Row, Table2Row};
use super::{GridReport, Setting};
use crate::matching::{AssignmentPath, Comparison, Direction, MatchReport, Unit};
use saelab_fsio::{write_atomic, write_json_atomic};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Schema of `grid.json`.
pub const GRID_SCHEMA: &str = "saelab.match_grid.v1";

type CsvWriter = csv::Writer<Vec<u8>>;

/// Builds a CSV in memory with `fill` and writes it atomically to `path`.
fn write_csv(path: &Path, fill: impl FnOnce(&mut CsvWriter) -> csv::Result<()>) -> Result<()> {
    let csv_err = |source: csv::Error| GridError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    fill(&mut w).map_err(csv_err)?;
    let bytes = w.into_inner().map_err(|e| csv_err(e.into_error().into()))?;
    Ok(write_atomic(path, &bytes)?)
}

fn create_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| GridError::Io {
        path: out.to_path_buf(),
        source,
    })
}

fn f6(x: f64) -> String {
    format!("{x:.6}")
}

// ---------------------------------------------------------------- pair

/// Writes the files of one pair (see the module docs) into `out`.
pub fn write_pair(out: &Path, r: &MatchReport) -> Result<()> {
    create_dir(out)?;
    write_json_atomic(&out.join("match.json"), r)?;
    write_csv(&out.join("summary.csv"), |w| summary(w, r))?;
    for c in &r.comparisons {
        for (tag, d) in [("b_in_a", &c.b_in_a), ("a_in_b", &c.a_in_b)] {
            let stem = format!("{}_{}_{tag}", c.kind.name(), c.unit.name());
            write_csv(&out.join(format!("top_{stem}.csv")), |w| top(w, d))?;
        }
        if let Some(asg) = &c.assignment_pairs {
            let name = match c.unit {
                Unit::Features => format!("assignment_{}.csv", c.kind.name()),
                Unit::Neurons => format!("assignment_{}_neurons.csv", c.kind.name()),
            };
            write_csv(&out.join(name), |w| {
                w.write_record(["a", "b", "cosine"])?;
                for (&(i, j), &cos) in asg.pairs.iter().zip(&asg.cosines) {
                    w.write_record([i.to_string(), j.to_string(), format!("{cos:.6}")])?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// `dense`, `dense_fallback` or `sparse`.
pub fn path_kind(p: &AssignmentPath) -> &'static str {
    match p {
        AssignmentPath::Dense {
            fallback: false, ..
        } => "dense",
        AssignmentPath::Dense { fallback: true, .. } => "dense_fallback",
        AssignmentPath::Sparse { .. } => "sparse",
    }
}

fn summary(w: &mut CsvWriter, r: &MatchReport) -> csv::Result<()> {
    w.write_record([
        "kind",
        "unit",
        "direction",
        "reference",
        "query",
        "n_ref",
        "n_query",
        "ratio",
        "mmcs",
        "chance_analytic",
        "chance_monte_carlo",
        "r_h",
        "assignment_mean_cosine",
        "assignment_path",
        "certified",
    ])?;
    for c in &r.comparisons {
        for (tag, d) in [("b_in_a", &c.b_in_a), ("a_in_b", &c.a_in_b)] {
            w.write_record(summary_record(c, tag, d))?;
        }
    }
    Ok(())
}

fn summary_record(c: &Comparison, tag: &str, d: &Direction) -> Vec<String> {
    let mut rec = vec![
        c.kind.name().to_string(),
        c.unit.name().to_string(),
        tag.to_string(),
        d.reference.clone(),
        d.query.clone(),
        d.n_ref.to_string(),
        d.n_query.to_string(),
        f6(d.ratio),
        f6(d.mmcs),
        f6(d.chance_analytic),
        f6(d.chance_monte_carlo),
    ];
    match &c.assignment {
        Some(x) => rec.extend([
            f6(x.fraction_above),
            f6(x.mean_cosine),
            path_kind(&x.path).to_string(),
            x.certificate.certified.to_string(),
        ]),
        None => rec.extend(std::iter::repeat_n(String::new(), 4)),
    }
    rec
}

fn top(w: &mut CsvWriter, d: &Direction) -> csv::Result<()> {
    let t = &d.top;
    let mut header = vec!["query".to_string()];
    for r in 1..=t.k {
        header.extend([format!("idx_{r}"), format!("cos_{r}")]);
    }
    w.write_record(&header)?;
    let mut buf = String::new();
    for q in 0..t.n_queries {
        let (ix, vs) = t.row(q);
        w.write_field(q.to_string())?;
        for (i, v) in ix.iter().zip(vs) {
            w.write_field(i.to_string())?;
            buf.clear();
            use std::fmt::Write as _;
            let _ = write!(buf, "{v:.6}");
            w.write_field(&buf)?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- grid

/// `grid.json`. Written through `serde_json::Value`, whose maps sort their
/// keys: the layout every earlier `grid.json` has.
#[derive(Serialize)]
struct GridJson<'a> {
    schema: &'static str,
    threshold: f32,
    top_n: usize,
    matrix: String,
    saes: Vec<SaeJson<'a>>,
    ratios: &'a [Vec<Option<f64>>],
    notes: &'a [String],
    pairs: Vec<PairJson<'a>>,
}

#[derive(Serialize)]
struct SaeJson<'a> {
    label: &'a str,
    dir: String,
    settings: BTreeMap<&'static str, Option<String>>,
}

#[derive(Serialize)]
struct PairJson<'a> {
    a: &'a str,
    b: &'a str,
    differs: Vec<&'static str>,
    report: &'a MatchReport,
}

/// Writes the data files of a grid (see the module docs) into `out`.
pub fn write_grid(out: &Path, g: &GridReport) -> Result<()> {
    create_dir(out)?;
    let results = g.results();
    let matrix = ratio_matrix(&g.saes, &results)?;
    write_grid_json(&out.join("grid.json"), g, &matrix)?;
    let labels: Vec<&str> = g.saes.iter().map(|s| s.label.as_str()).collect();
    write_csv(&out.join("ratios.csv"), |w| ratios(w, &labels, &matrix))?;
    let t1 = table1(&g.saes, &results)?;
    write_csv(&out.join("table1.csv"), |w| table1_csv(w, &t1))?;
    let t2 = table2(&g.saes, &results)?;
    write_csv(&out.join("table2.csv"), |w| table2_csv(w, &t2))?;
    Ok(())
}

fn write_grid_json(path: &Path, g: &GridReport, matrix: &[Vec<Option<f64>>]) -> Result<()> {
    let kind = g.kind.name();
    let doc = GridJson {
        schema: GRID_SCHEMA,
        threshold: g.threshold,
        top_n: g.top_n,
        matrix: format!(
            "{kind} features: ratios[r][c] = R(r←c), queries of SAE c against reference SAE r"
        ),
        saes: g
            .saes
            .iter()
            .map(|s| SaeJson {
                label: &s.label,
                dir: s.dir.display().to_string(),
                settings: Setting::ALL
                    .iter()
                    .map(|&k| (k.name(), s.settings.value(k)))
                    .collect(),
            })
            .collect(),
        ratios: matrix,
        notes: &g.notes,
        pairs: g
            .pairs
            .iter()
            .map(|p| PairJson {
                a: &p.result.label_a,
                b: &p.result.label_b,
                differs: p.differs.iter().map(|s| s.name()).collect(),
                report: &p.report,
            })
            .collect(),
    };
    let value = serde_json::to_value(&doc).map_err(|source| GridError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(write_json_atomic(path, &value)?)
}

fn ratios(w: &mut CsvWriter, labels: &[&str], matrix: &[Vec<Option<f64>>]) -> csv::Result<()> {
    let mut header = vec!["reference\\query"];
    header.extend(labels);
    w.write_record(&header)?;
    for (l, row) in labels.iter().zip(matrix) {
        let mut rec = vec![l.to_string()];
        rec.extend(row.iter().map(|v| v.map(f6).unwrap_or_default()));
        w.write_record(&rec)?;
    }
    Ok(())
}

fn table1_csv(w: &mut CsvWriter, rows: &[Table1Row]) -> csv::Result<()> {
    w.write_record([
        "setting",
        "sae_a",
        "sae_b",
        "value_a",
        "value_b",
        "ratio_a_from_b",
        "ratio_b_from_a",
        "mean",
        "category",
        "ratio_a_from_b_is",
        "ratio_b_from_a_is",
    ])?;
    for r in rows {
        w.write_record([
            r.setting.map_or("other", Setting::name).to_string(),
            r.sae_a.clone(),
            r.sae_b.clone(),
            r.value_a.clone(),
            r.value_b.clone(),
            f6(r.ratio_a_from_b),
            f6(r.ratio_b_from_a),
            f6(r.mean),
            r.category.name().to_string(),
            r.ratio_a_from_b_is.clone(),
            r.ratio_b_from_a_is.clone(),
        ])?;
    }
    Ok(())
}

fn table2_csv(w: &mut CsvWriter, rows: &[Table2Row]) -> csv::Result<()> {
    w.write_record([
        "sae_small",
        "sae_large",
        "n_small",
        "n_large",
        "n_diff",
        "ratio_small_in_large",
        "ratio_large_in_small",
        "large_unmatched",
    ])?;
    for r in rows {
        w.write_record([
            r.sae_small.clone(),
            r.sae_large.clone(),
            r.n_small.to_string(),
            r.n_large.to_string(),
            r.n_diff.to_string(),
            f6(r.ratio_small_in_large),
            f6(r.ratio_large_in_small),
            r.large_unmatched.to_string(),
        ])?;
    }
    Ok(())
}
