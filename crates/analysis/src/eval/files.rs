//! The files of `saelab eval`: per SAE `eval.json`, `positions.csv`,
//! `features.csv` (one folder per SAE), and the run's `summary.json` and
//! `summary.csv`, all from the typed results. The figure
//! (`per_position.svg`) is drawn by `saelab_report::recipes::eval`.

use super::run::{EvalOutput, SaeEval};
use super::{CeReport, EvalError, EvalReport, ReconReport, Result};
use crate::stats::output::{cell, cell_opt, csv_table, num, write_files};
use saelab_data::packing::Packing;
use saelab_lm::Precision;
use serde::Serialize;
use std::path::{Path, PathBuf};

impl EvalReport {
    /// `positions.csv`: `position,tokens,mse,nmse,l0,ce_clean,ce_spliced,
    /// ce_zero,delta_ce,ce_recovered,kl`, one line per position t of the
    /// longest curve. CE columns at t are the loss of predicting token t + 1
    /// (empty at the last position); reconstruction columns are empty
    /// without `seq_len`, optional metrics empty when not computed.
    pub fn positions_csv(&self) -> String {
        let rc = self.recon.as_ref().and_then(|r| r.per_position.as_ref());
        let cc = self.ce.as_ref().map(|c| &c.per_position);
        let len = [
            rc.map_or(0, |r| r.mse.len()),
            cc.map_or(0, |c| c.ce_clean.len()),
            cc.and_then(|c| c.kl.as_ref()).map_or(0, |k| k.len()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let header = [
            "position",
            "tokens",
            "mse",
            "nmse",
            "l0",
            "ce_clean",
            "ce_spliced",
            "ce_zero",
            "delta_ce",
            "ce_recovered",
            "kl",
        ];
        csv_table(
            &header,
            (0..len).map(|t| {
                [
                    t.to_string(),
                    rc.and_then(|r| r.tokens.get(t))
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    cell(rc.map(|r| r.mse.as_slice()), t),
                    cell_opt(rc.map(|r| r.nmse.as_slice()), t),
                    cell(rc.map(|r| r.l0.as_slice()), t),
                    cell(cc.map(|c| c.ce_clean.as_slice()), t),
                    cell(cc.map(|c| c.ce_spliced.as_slice()), t),
                    cell(cc.and_then(|c| c.ce_zero.as_deref()), t),
                    cell(cc.map(|c| c.delta_ce.as_slice()), t),
                    cell_opt(cc.and_then(|c| c.ce_recovered.as_deref()), t),
                    cell(cc.and_then(|c| c.kl.as_deref()), t),
                ]
            }),
        )
    }

    /// `features.csv`: `feature,fire_count,density` (empty without
    /// reconstruction metrics).
    pub fn features_csv(&self) -> String {
        let r = self.recon.as_ref();
        let counts = r.map_or(&[][..], |r| &r.fire_count);
        let density = r.map_or(&[][..], |r| &r.density);
        csv_table(
            &["feature", "fire_count", "density"],
            counts
                .iter()
                .zip(density)
                .enumerate()
                .map(|(i, (c, d))| [i.to_string(), c.to_string(), num(*d)]),
        )
    }

    /// Writes `eval.json` (pretty JSON), `positions.csv` and `features.csv`
    /// into `dir` (created if missing), each atomically; one directory per SAE.
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| EvalError::Json {
            path: dir.join("eval.json"),
            msg: e.to_string(),
        })?;
        let files = [
            ("eval.json", json),
            ("positions.csv", self.positions_csv()),
            ("features.csv", self.features_csv()),
        ];
        Ok(write_files(dir, &files)?)
    }
}

/// A `summary.csv` number as JSON writes it (so the table shows what
/// `summary.json` says); NaN / infinity (JSON null) is an empty cell.
fn json_num(v: f64) -> String {
    if v.is_finite() {
        serde_json::to_string(&v).unwrap_or_default()
    } else {
        String::new()
    }
}

fn json_opt(v: Option<f64>) -> String {
    v.map(json_num).unwrap_or_default()
}

/// The `summary.csv` columns: sae, hook, d_sae, then reconstruction and CE
/// metrics (empty when not computed).
const SUMMARY_HEADER: [&str; 16] = [
    "sae",
    "hook",
    "d_sae",
    "tokens",
    "mse",
    "normalized_mse",
    "fvu",
    "explained_variance",
    "l0",
    "dead_fraction",
    "ce_clean",
    "ce_spliced",
    "ce_zero",
    "delta_ce",
    "ce_recovered",
    "kl",
];

fn summary_record(s: &SaeEval) -> Vec<String> {
    let mut r = vec![s.label.clone(), s.hook.clone(), s.d_sae.to_string()];
    match &s.report.recon {
        Some(x) => r.extend([
            x.tokens.to_string(),
            json_num(x.mse),
            json_opt(x.nmse),
            json_opt(x.fvu),
            json_opt(x.explained_variance),
            json_num(x.l0),
            json_num(x.dead_fraction),
        ]),
        None => r.extend(std::iter::repeat_n(String::new(), 7)),
    }
    match &s.report.ce {
        Some(c) => r.extend([
            json_num(c.ce_clean),
            json_num(c.ce_spliced),
            json_opt(c.ce_zero),
            json_num(c.delta_ce),
            json_opt(c.ce_recovered),
            json_opt(c.kl),
        ]),
        None => r.extend(std::iter::repeat_n(String::new(), 6)),
    }
    r
}

/// `summary.csv`: one line per SAE (columns in [`SUMMARY_HEADER`]).
pub fn summary_csv(output: &EvalOutput) -> String {
    csv_table(&SUMMARY_HEADER, output.saes.iter().map(summary_record))
}

/// One SAE's entry of `summary.json`.
#[derive(Serialize)]
struct SaeLine<'a> {
    sae: &'a str,
    dir: &'a Path,
    hook: &'a str,
    centered: bool,
    recon: &'a Option<ReconReport>,
    ce: &'a Option<CeReport>,
}

/// `summary.json` of a run.
#[derive(Serialize)]
struct Summary<'a> {
    schema: &'static str,
    model: &'a str,
    precision: Precision,
    dataset: &'a str,
    rows: usize,
    seq_len: usize,
    packing: Packing,
    pos_intervention: &'a str,
    seed: u64,
    skip_bos: bool,
    splice_keep_bos: bool,
    seconds: f64,
    saes: Vec<SaeLine<'a>>,
}

/// `summary.json` of `output` (pretty JSON, keys sorted as a
/// `serde_json::Value` orders them).
pub fn summary_json(output: &EvalOutput) -> Result<String> {
    let summary = Summary {
        schema: "saelab.eval-summary.v1",
        model: &output.model,
        precision: output.precision,
        dataset: &output.dataset,
        rows: output.rows,
        seq_len: output.seq_len,
        packing: output.packing,
        pos_intervention: &output.pos_intervention,
        seed: output.seed,
        skip_bos: output.skip_bos,
        splice_keep_bos: output.splice_keep_bos,
        seconds: output.seconds,
        saes: output
            .saes
            .iter()
            .map(|s| SaeLine {
                sae: &s.label,
                dir: &s.dir,
                hook: &s.hook,
                centered: s.centered,
                recon: &s.report.recon,
                ce: &s.report.ce,
            })
            .collect(),
    };
    let json_err = |e: serde_json::Error| EvalError::Json {
        path: PathBuf::from("summary.json"),
        msg: e.to_string(),
    };
    let v = serde_json::to_value(&summary).map_err(json_err)?;
    serde_json::to_string_pretty(&v).map_err(json_err)
}

/// Writes the data files of an eval run into `out`: `summary.json`,
/// `summary.csv`, and one folder per SAE (named by its label) with
/// [`EvalReport::write_all`]'s files. The figure is
/// `saelab_report::recipes::eval::write`'s.
pub fn write(out: &Path, output: &EvalOutput) -> Result<()> {
    for s in &output.saes {
        s.report.write_all(&out.join(&s.label))?;
    }
    let files = [
        ("summary.json", summary_json(output)?),
        ("summary.csv", summary_csv(output)),
    ];
    Ok(write_files(out, &files)?)
}
