//! §4.1.2 of the study: per-feature statistics per layer — deciles of each
//! feature's nonzero activations (its Fig 10), feature mean vs std (Fig
//! 14) and mean vs firing density, without the BOS position, with no
//! intervention.

use super::positions::{by_layer, short};
use super::{label, max_layer, thin, thinned_note, MAX_SCATTER};
use crate::html::Page;
use crate::{palette, Figure, Panel, Series};
use saelab_results::{LayerStats, Results};

pub(super) fn write(p: &mut Page, r: &Results) {
    p.section("features", "4.1.2 Feature statistics");
    let stats: Vec<&LayerStats> = by_layer(r)
        .values()
        .filter_map(|v| v.iter().find(|e| e.intervention == "none"))
        .map(|e| &e.stats)
        .collect();
    if stats.is_empty() {
        p.missing("No stats stage without intervention is complete: nothing to show per feature.");
        return;
    }
    let n = stats
        .iter()
        .map(|s| s.feature_mean.len())
        .max()
        .unwrap_or(0);
    let note = thinned_note(n);
    p.figure(
        "feature_deciles.svg",
        deciles(r, &stats).to_svg(),
        "Deciles of each feature's nonzero activations (positions ≥ 1), features sorted by their median; lines: the 10th, 50th, 90th percentile and the maximum; features that never fire left out.",
    );
    p.figure(
        "feature_mean_std.svg",
        scatter(r, &stats, "Feature mean vs std (study Fig 14)", false, |s, i| {
            (s.feature_mean[i], s.feature_std[i])
        })
        .to_svg(),
        &format!("One dot per feature that fires at positions ≥ 1: mean and std of its nonzero activations.{note}"),
    );
    p.figure(
        "feature_mean_density.svg",
        scatter(r, &stats, "Feature mean vs firing density", true, |s, i| {
            (s.feature_density[i], s.feature_mean[i])
        })
        .to_svg(),
        &format!("One dot per feature: firing density (share of positions ≥ 1 where it is nonzero, log scale) and mean nonzero activation.{note}"),
    );
}

fn panel_title(r: &Results, s: &LayerStats) -> String {
    format!("layer {} ({})", s.layer, short(&label(r, &s.id)))
}

/// Deciles q10, q50, q90 and the maximum against the median rank.
fn deciles(r: &Results, stats: &[&LayerStats]) -> Figure {
    let mut f = Figure::new("Feature deciles by median rank (study Fig 10)", 3)
        .shared()
        .legend_above();
    for s in stats {
        let mut fired: Vec<&[f64; 10]> = s.deciles.iter().filter(|d| d[9] > 0.0).collect();
        fired.sort_by(|a, b| a[4].total_cmp(&b[4]));
        let keep = thin(fired.len(), 1000);
        let mut panel = Panel::new(panel_title(r, s), "feature (by median)", "activation");
        for (q, name) in [(0, "q10"), (4, "median"), (8, "q90"), (9, "max")] {
            let pts = keep.iter().map(|&i| (i as f64, fired[i][q])).collect();
            panel
                .series
                .push(Series::line(name, pts).color(palette::categorical(q)));
        }
        f.panels.push(panel);
    }
    f
}

/// One scatter panel per layer, in the layer's colour, of `xy(s, i)` for
/// features that fire.
fn scatter(
    r: &Results,
    stats: &[&LayerStats],
    title: &str,
    x_log: bool,
    xy: impl Fn(&LayerStats, usize) -> (f64, f64),
) -> Figure {
    let mut f = Figure::new(title, 3).shared();
    let top = max_layer(r);
    for s in stats {
        let fired: Vec<usize> = (0..s.feature_density.len())
            .filter(|&i| s.feature_density[i] > 0.0)
            .collect();
        let pts = thin(fired.len(), MAX_SCATTER)
            .into_iter()
            .map(|j| xy(s, fired[j]))
            .collect();
        let (x, y) = if x_log {
            ("density", "mean")
        } else {
            ("mean", "std")
        };
        let mut panel = Panel::new(panel_title(r, s), x, y)
            .with(Series::scatter("", pts).color(palette::layer(s.layer, top)));
        panel.x_log = x_log;
        f.panels.push(panel);
    }
    f
}
