//! The convergence figure and table of `saelab converge`: seed-pair overlap
//! (decoder features, τ) against training tokens, one series per run and
//! pair, beside the training FVU and dead fraction.

use saelab_analysis::convergence::{ConvergencePoint, ConvergenceTable};
use std::fmt::Write;

use crate::{Figure, Panel, Series};

/// Points of one series: one run and one pair.
fn series(t: &ConvergenceTable) -> Vec<(String, Vec<&ConvergencePoint>)> {
    let mut out: Vec<(String, Vec<&ConvergencePoint>)> = Vec::new();
    for p in &t.points {
        let label = series_label(p);
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(p),
            None => out.push((label, vec![p])),
        }
    }
    out
}

fn series_label(p: &ConvergencePoint) -> String {
    format!("{} · {} ({})", p.recipe, p.pair, p.run.display())
}

/// Mean of the two directions' ratios.
fn mean_ratio(p: &ConvergencePoint) -> f64 {
    0.5 * (p.ratio_a_in_b + p.ratio_b_in_a)
}

fn mean_train(
    p: &ConvergencePoint,
    f: fn(&saelab_analysis::convergence::TrainPoint) -> f64,
) -> f64 {
    let v: Vec<f64> = p.train.iter().flatten().map(f).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Four panels over tokens (log x): matching ratio, assignment ratio, MMCS,
/// training FVU.
pub fn figure(t: &ConvergenceTable) -> Figure {
    type Get = fn(&ConvergencePoint) -> f64;
    let panels: [(&str, &str, Get, bool); 4] = [
        (
            "seed-pair matching ratio R",
            "R (mean of both directions)",
            mean_ratio,
            false,
        ),
        (
            "one-to-one assignment ratio R_H",
            "R_H",
            |p| p.assignment_ratio.unwrap_or(f64::NAN),
            false,
        ),
        ("mean max cosine (MMCS)", "MMCS", |p| p.mmcs, false),
        (
            "training FVU (logged batches)",
            "FVU",
            |p| mean_train(p, |m| m.fvu),
            true,
        ),
    ];
    let mut f = Figure::new(
        format!(
            "Seed-pair overlap of decoder features (τ {}) against training tokens",
            t.threshold
        ),
        2,
    )
    .legend_above();
    let all = series(t);
    for (title, y, get, ylog) in panels {
        let mut panel = Panel::new(title, "training tokens", y);
        panel.x_log = true;
        panel.y_log = ylog;
        for (label, pts) in &all {
            let xy = pts.iter().map(|p| (p.tokens as f64, get(p))).collect();
            panel = panel.with(Series::line(label.clone(), xy));
        }
        f.panels.push(panel);
    }
    f
}

/// The table as Markdown (RESULTS-ready), one row per point.
pub fn markdown(t: &ConvergenceTable) -> String {
    let mut s = String::from(
        "| recipe | run | pair | tokens | R(a←b) | R(b←a) | R_H | MMCS | FVU | L0 | dead |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &t.points {
        let run = p.run.file_name().map(|s| s.to_string_lossy().into_owned());
        let pct = |v: f64| match v.is_finite() {
            true => format!("{:.1} %", 100.0 * v),
            false => "–".into(),
        };
        let num = |v: f64, digits: usize| match v.is_finite() {
            true => format!("{v:.digits$}"),
            false => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {} |",
            p.recipe,
            run.unwrap_or_default(),
            p.pair,
            tokens(p.tokens),
            pct(p.ratio_b_in_a),
            pct(p.ratio_a_in_b),
            p.assignment_ratio.map_or("–".into(), pct),
            p.mmcs,
            num(mean_train(p, |m| m.fvu), 3),
            num(mean_train(p, |m| m.l0), 1),
            pct(mean_train(p, |m| m.dead_fraction)),
        );
    }
    s
}

/// 2097152 → "2.1M".
fn tokens(t: u64) -> String {
    match t {
        t if t >= 1_000_000 => format!("{:.1}M", t as f64 / 1e6),
        t if t >= 1_000 => format!("{:.0}k", t as f64 / 1e3),
        t => t.to_string(),
    }
}

/// `convergence.json`, `convergence.md` and `convergence.svg` in `dir`
/// (each atomically); returns their paths.
pub fn write(
    t: &ConvergenceTable,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, String> {
    let paths = ["convergence.json", "convergence.md", "convergence.svg"].map(|f| dir.join(f));
    t.save(&paths[0]).map_err(|e| e.to_string())?;
    saelab_fsio::write_atomic(&paths[1], markdown(t).as_bytes()).map_err(|e| e.to_string())?;
    figure(t).write(&paths[2]).map_err(|e| e.to_string())?;
    Ok(paths.to_vec())
}
