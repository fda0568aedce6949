//! The seven figures of `saelab stats` (the study's §4.1 plots), one panel
//! per SAE (per layer when given one SAE per layer): mean activation vs
//! position with and without position 0 (moving average overlaid),
//! per-position mean vs std, per-feature mean vs std and vs density,
//! per-feature deciles sorted by median, and the threshold sweep.

use crate::{Figure, Panel, ReportError, Series};
use saelab_analysis::stats::{StatsOutput, StatsReport};
use std::path::Path;

/// Most features drawn in the per-feature decile scatter (evenly spaced by
/// median rank), to keep the SVG readable.
const DECILE_PLOT_FEATURES: usize = 1000;

/// File names of the figures, in the order [`figures`] returns them.
pub const FILES: [&str; 7] = [
    "position_mean.svg",
    "position_mean_no_bos.svg",
    "position_mean_std.svg",
    "feature_mean_std.svg",
    "feature_mean_density.svg",
    "feature_deciles.svg",
    "threshold_sweep.svg",
];

/// Titles of the figures, in [`FILES`] order.
const TITLES: [&str; 7] = [
    "mean activation vs position",
    "mean activation vs position, without position 0",
    "per-position mean vs std",
    "per-feature mean vs std (positions ≥ 1)",
    "per-feature mean vs density (positions ≥ 1)",
    "per-feature deciles (positions ≥ 1), features sorted by median",
    "features whose median / mean is below a threshold",
];

/// (t, v[t]) for t ≥ `from`.
fn indexed(v: &[f64], from: usize) -> Vec<(f64, f64)> {
    v.iter()
        .enumerate()
        .skip(from)
        .map(|(t, &y)| (t as f64, y))
        .collect()
}

/// The seven panels of one SAE, in [`FILES`] order.
fn sae_panels(label: &str, r: &StatsReport) -> [Panel; 7] {
    let p = &r.summary.positions;
    let ma = format!("moving avg ({})", p.ma_window);
    [
        Panel::new(label, "position", "mean nonzero activation")
            .with(Series::line("mean", indexed(&p.mean, 0)))
            .with(Series::line(&ma, indexed(&p.mean_ma, 0))),
        Panel::new(label, "position", "mean nonzero activation")
            .with(Series::line("mean", indexed(&p.mean, 1)))
            .with(Series::line(&ma, indexed(&p.mean_ma_excl0, 1))),
        Panel::new(label, "mean", "std").with(Series::scatter(
            "positions ≥ 1",
            p.mean
                .iter()
                .zip(&p.std)
                .skip(1)
                .map(|(&m, &s)| (m, s))
                .collect(),
        )),
        feature_mean_std(label, r),
        feature_mean_density(label, r),
        deciles(label, r),
        sweep(label, r),
    ]
}

/// Features that fire at positions ≥ 1.
fn fired(r: &StatsReport) -> Vec<usize> {
    let f = &r.features;
    (0..f.count.len()).filter(|&i| f.count[i] > 0).collect()
}

fn feature_mean_std(label: &str, r: &StatsReport) -> Panel {
    let f = &r.features;
    Panel::new(label, "mean", "std").with(Series::scatter(
        "",
        fired(r).iter().map(|&i| (f.mean[i], f.std[i])).collect(),
    ))
}

fn feature_mean_density(label: &str, r: &StatsReport) -> Panel {
    let f = &r.features;
    let mut pd = Panel::new(label, "mean", "density");
    pd.y_log = true;
    pd.with(Series::scatter(
        "",
        fired(r)
            .iter()
            .map(|&i| (f.mean[i], f.density[i]))
            .collect(),
    ))
}

/// q10, median, q90 and max of at most [`DECILE_PLOT_FEATURES`] features,
/// evenly spaced by the rank of their median.
fn deciles(label: &str, r: &StatsReport) -> Panel {
    let d = &r.deciles;
    let mut order: Vec<usize> = (0..d.excl_pos0.len())
        .filter(|&i| d.count_excl0[i] > 0)
        .collect();
    order.sort_by(|&x, &y| d.excl_pos0[x][4].total_cmp(&d.excl_pos0[y][4]));
    let step = order.len().div_ceil(DECILE_PLOT_FEATURES).max(1);
    let picked: Vec<(usize, usize)> = order.iter().copied().enumerate().step_by(step).collect();
    let mut dp = Panel::new(label, "feature (rank of median)", "activation");
    for (q, name) in [(0usize, "q10"), (4, "median"), (8, "q90"), (9, "max")] {
        dp.series.push(Series::scatter(
            name,
            picked
                .iter()
                .map(|&(rank, i)| (rank as f64, d.excl_pos0[i][q]))
                .collect(),
        ));
    }
    dp
}

fn sweep(label: &str, r: &StatsReport) -> Panel {
    let s = &r.summary.sweep;
    let counts = |below: &[u64]| {
        s.thresholds
            .iter()
            .zip(below)
            .map(|(&t, &c)| (t, c as f64))
            .collect()
    };
    Panel::new(label, "threshold", "features below")
        .with(Series::line("median", counts(&s.below_median)))
        .with(Series::line("mean", counts(&s.below_mean)))
}

/// The seven figures of a stats run, in [`FILES`] order.
pub fn figures(output: &StatsOutput) -> [Figure; 7] {
    let n = output.saes.len();
    let cols = if n >= 9 { 4 } else { n.clamp(1, 3) };
    let title = format!(
        "{} · {} · pos {} · {}×{}",
        output.model_name, output.dataset, output.pos_intervention, output.rows, output.seq_len
    );
    let mut figs = TITLES.map(|name| Figure::new(format!("{name} — {title}"), cols));
    for s in &output.saes {
        let label = format!("{} · {}", s.label, s.hook);
        for (fig, panel) in figs.iter_mut().zip(sae_panels(&label, &s.report)) {
            fig.panels.push(panel);
        }
    }
    figs
}

/// Writes the seven stats figures ([`FILES`]) into `out`.
pub fn write(out: &Path, output: &StatsOutput) -> Result<(), ReportError> {
    for (fig, name) in figures(output).iter().zip(FILES) {
        fig.write(&out.join(name))?;
    }
    Ok(())
}
