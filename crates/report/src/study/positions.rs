//! §4.1.1 of the study: mean activation per token position, one panel per
//! layer (its Fig 7–9), with and without the BOS position, the moving
//! average dashed, the positional interventions overlaid.

use super::label;
use crate::html::Page;
use crate::{palette, Figure, Panel, Series};
use saelab_results::{PositionEntry, Results};
use std::collections::BTreeMap;

/// Entries grouped by layer (ascending), interventions in study order.
pub(super) fn by_layer(r: &Results) -> BTreeMap<usize, Vec<&PositionEntry>> {
    let mut m: BTreeMap<usize, Vec<&PositionEntry>> = BTreeMap::new();
    for e in &r.positions {
        m.entry(e.stats.layer).or_default().push(e);
    }
    for v in m.values_mut() {
        v.sort_by_key(|e| order(&e.intervention));
    }
    m
}

fn order(intervention: &str) -> usize {
    ["none", "zero", "shuffle"]
        .iter()
        .position(|x| *x == intervention)
        .unwrap_or(3)
}

/// (t, v[t]) for t ≥ `from`.
pub(super) fn indexed(v: &[f64], from: usize) -> Vec<(f64, f64)> {
    v.iter()
        .enumerate()
        .skip(from)
        .map(|(t, &y)| (t as f64, y))
        .collect()
}

pub(super) fn write(p: &mut Page, r: &Results) {
    p.section("positions", "4.1.1 Activation by token position");
    let layers = by_layer(r);
    if layers.is_empty() {
        p.missing(
            "No stats stage is complete: the spec has no [stats] section or it has not run yet.",
        );
        return;
    }
    let corpus = r.spec["stats"]["corpus"].as_str().unwrap_or("?");
    let rows = r.spec["stats"]["rows"].as_u64().unwrap_or(0);
    let ma = r.spec["stats"]["ma_window"].as_u64().unwrap_or(0);
    let what = format!(
        "{rows} rows of `{corpus}`, BOS at position 0, the baseline SAE of each layer; solid: mean nonzero SAE activation per position, dashed: moving average (window {ma}); colours: interventions (none / zero / shuffle the positional signal, SPEC §1.4)."
    );
    let no_bos = figure(
        r,
        &layers,
        1,
        "Mean activation per position, without BOS (study Fig 7, 9)",
    );
    p.figure(
        "positions_no_bos.svg",
        no_bos.to_svg(),
        &format!("Positions ≥ 1. {what}"),
    );
    let with_bos = figure(
        r,
        &layers,
        0,
        "Mean activation per position, with BOS (study Fig 8)",
    );
    p.figure(
        "positions_with_bos.svg",
        with_bos.to_svg(),
        &format!("All positions, BOS (position 0) included. {what}"),
    );
}

fn figure(
    r: &Results,
    layers: &BTreeMap<usize, Vec<&PositionEntry>>,
    from: usize,
    title: &str,
) -> Figure {
    let mut f = Figure::new(title, 3).shared().legend_above();
    for (layer, entries) in layers {
        let id = &entries[0].stats.id;
        let mut panel = Panel::new(
            format!("layer {layer} ({})", short(&label(r, id))),
            "position",
            "mean activation",
        );
        for e in entries {
            let c = palette::intervention(&e.intervention);
            let s = &e.stats;
            panel.series.push(
                Series::line(e.intervention.clone(), indexed(&s.position_mean, from)).color(c),
            );
            // The moving average covers positions ≥ 1: its entry 0 is position 1.
            let ma = s
                .position_mean_ma
                .iter()
                .enumerate()
                .map(|(t, &y)| ((t + 1) as f64, y))
                .collect();
            panel.series.push(
                Series::line(format!("{} (moving avg)", e.intervention), ma)
                    .color(c)
                    .dashed(),
            );
        }
        f.panels.push(panel);
    }
    f
}

/// An SAE label without its layer and lr (the panel title has the layer).
pub(super) fn short(label: &str) -> String {
    label.split("-L").next().unwrap_or(label).to_string()
}
