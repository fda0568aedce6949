//! The files of `saelab stats`: per SAE `stats.json`, `positions.csv`,
//! `features.csv`, `deciles.csv`, `sweep.csv` (one folder per SAE), and the
//! run's `summary.json`, all from the typed results. The figures are drawn
//! by `saelab_report::recipes::stats`.

use super::output::{csv_table, num, write_files};
use super::run::{SaeStats, StatsOutput};
use super::{Aggregate, DecileMode, Result, StatsError, StatsReport};
use saelab_data::packing::Packing;
use saelab_lm::Precision;
use serde::Serialize;
use std::path::{Path, PathBuf};

impl StatsReport {
    /// `positions.csv`: `position,count,mean,std,density,mean_ma,
    /// mean_ma_excl0` (T lines; `mean_ma_excl0` is empty at position 0).
    pub fn positions_csv(&self) -> String {
        let p = &self.summary.positions;
        let header = [
            "position",
            "count",
            "mean",
            "std",
            "density",
            "mean_ma",
            "mean_ma_excl0",
        ];
        csv_table(
            &header,
            (0..p.count.len()).map(|t| {
                let ma0 = t
                    .checked_sub(1)
                    .and_then(|i| p.mean_ma_excl0.get(i))
                    .map_or(String::new(), |&v| num(v));
                [
                    t.to_string(),
                    p.count[t].to_string(),
                    num(p.mean[t]),
                    num(p.std[t]),
                    num(p.density[t]),
                    num(p.mean_ma[t]),
                    ma0,
                ]
            }),
        )
    }

    /// `features.csv`: `feature,count,mean,std,density,mean_all,std_all,
    /// count_pos0` (see [`super::FeatureTable`]).
    pub fn features_csv(&self) -> String {
        let f = &self.features;
        let header = [
            "feature",
            "count",
            "mean",
            "std",
            "density",
            "mean_all",
            "std_all",
            "count_pos0",
        ];
        csv_table(
            &header,
            (0..f.count.len()).map(|i| {
                [
                    i.to_string(),
                    f.count[i].to_string(),
                    num(f.mean[i]),
                    num(f.std[i]),
                    num(f.density[i]),
                    num(f.mean_all[i]),
                    num(f.std_all[i]),
                    f.count_pos0[i].to_string(),
                ]
            }),
        )
    }

    /// `deciles.csv`: `feature,count_all,q10,…,q100,count_excl0,
    /// q10_excl0,…,q100_excl0,sampled_all,sampled_excl0`.
    pub fn deciles_csv(&self) -> String {
        let d = &self.deciles;
        let mut header = vec!["feature".to_string(), "count_all".to_string()];
        header.extend((1..=10).map(|k| format!("q{}", k * 10)));
        header.push("count_excl0".into());
        header.extend((1..=10).map(|k| format!("q{}_excl0", k * 10)));
        header.extend(["sampled_all".into(), "sampled_excl0".into()]);
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        csv_table(
            &header,
            (0..d.all.len()).map(|i| {
                let mut r = vec![i.to_string(), d.count_all[i].to_string()];
                r.extend(d.all[i].iter().map(|&v| num(v)));
                r.push(d.count_excl0[i].to_string());
                r.extend(d.excl_pos0[i].iter().map(|&v| num(v)));
                r.push(d.sampled_all[i].to_string());
                r.push(d.sampled_excl0[i].to_string());
                r
            }),
        )
    }

    /// `sweep.csv`: `threshold,below_median,below_mean`.
    pub fn sweep_csv(&self) -> String {
        let w = &self.summary.sweep;
        csv_table(
            &["threshold", "below_median", "below_mean"],
            (0..w.thresholds.len()).map(|j| {
                [
                    num(w.thresholds[j]),
                    w.below_median[j].to_string(),
                    w.below_mean[j].to_string(),
                ]
            }),
        )
    }

    /// Writes `stats.json` (the summary, pretty JSON), `positions.csv`,
    /// `features.csv`, `deciles.csv` and `sweep.csv` into `dir` (created if
    /// missing), each atomically. For several layers, one directory per layer.
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(&self.summary).map_err(|e| StatsError::Json {
            path: dir.join("stats.json"),
            msg: e.to_string(),
        })?;
        let files = [
            ("stats.json", json),
            ("positions.csv", self.positions_csv()),
            ("features.csv", self.features_csv()),
            ("deciles.csv", self.deciles_csv()),
            ("sweep.csv", self.sweep_csv()),
        ];
        Ok(write_files(dir, &files)?)
    }
}

/// One SAE's line of `summary.json`.
#[derive(Serialize)]
struct SaeLine<'a> {
    sae: &'a str,
    dir: &'a Path,
    hook: &'a str,
    centered: bool,
    memory_bytes: u64,
    decile_mode: DecileMode,
    mean_excl_pos0: &'a Aggregate,
    all_positions: &'a Aggregate,
    never_fired_excl0: u64,
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
    seconds: f64,
    saes: Vec<SaeLine<'a>>,
}

fn sae_line(s: &SaeStats) -> SaeLine<'_> {
    let r = &s.report.summary;
    SaeLine {
        sae: &s.label,
        dir: &s.dir,
        hook: &s.hook,
        centered: s.centered,
        memory_bytes: s.memory_bytes,
        decile_mode: r.deciles.mode,
        mean_excl_pos0: &r.positions.excl_pos0,
        all_positions: &r.positions.all,
        never_fired_excl0: r.features.never_fired_excl0,
    }
}

/// `summary.json` of `output` (pretty JSON, keys sorted as a
/// `serde_json::Value` orders them).
pub fn summary_json(output: &StatsOutput) -> Result<String> {
    let summary = Summary {
        schema: "saelab.stats-summary.v1",
        model: &output.model,
        precision: output.precision,
        dataset: &output.dataset,
        rows: output.rows,
        seq_len: output.seq_len,
        packing: output.packing,
        pos_intervention: &output.pos_intervention,
        seed: output.seed,
        seconds: output.seconds,
        saes: output.saes.iter().map(sae_line).collect(),
    };
    let json_err = |e: serde_json::Error| StatsError::Json {
        path: PathBuf::from("summary.json"),
        msg: e.to_string(),
    };
    let v = serde_json::to_value(&summary).map_err(json_err)?;
    serde_json::to_string_pretty(&v).map_err(json_err)
}

/// Writes the data files of a stats run into `out`: `summary.json` and one
/// folder per SAE (named by its label) with [`StatsReport::write_all`]'s
/// files. The figures are `saelab_report::recipes::stats::write`'s.
pub fn write(out: &Path, output: &StatsOutput) -> Result<()> {
    for s in &output.saes {
        s.report.write_all(&out.join(&s.label))?;
    }
    let json = summary_json(output)?;
    Ok(write_files(out, &[("summary.json", json)])?)
}
