//! §4.2.1 and §4.2.3 of the study: top-n cosine histograms of a seed pair
//! and a dataset pair (its Fig 11: encoder / decoder × feature / neuron),
//! and the layer × layer matching heatmap (Fig 13).

use super::{label, pct};
use crate::html::{Page, Table};
use crate::{palette, Figure, Heatmap, Panel, Series};
use saelab_results::{Histogram, MatchResult, Results};

pub(super) fn cosines(p: &mut Page, r: &Results) {
    p.section("cosines", "4.2.1 Cosine similarity of matched features");
    let mut any = false;
    for category in ["seed", "dataset"] {
        let Some((_, m)) = r.matches.iter().find(|(_, m)| m.category == category) else {
            p.missing(&format!("No {category} pair was matched."));
            continue;
        };
        any = true;
        let (a, b) = (label(r, &m.a), label(r, &m.b));
        let neurons = if m.histograms.iter().any(|h| h.unit == "neuron") {
            "neurons: the transposed vectors"
        } else {
            "neuron vectors were not matched (the spec's match.neurons is off)"
        };
        p.figure(
            &format!("cosines_{category}.svg"),
            histograms(m, &format!("Top-n cosine, {category} pair (study Fig 11)")).to_svg(),
            &format!(
                "{a} (A) against {b} (B): for each of A's vectors, the histogram of its 1st..4th highest cosine among B's. Features: rows of W_dec / columns of W_enc; {neurons}. τ = {} is the matching threshold; chance level of the best cosine ≈ {:.3}. Cosines below the lowest one seen are not drawn.",
                m.threshold, m.chance
            ),
        );
    }
    if !any {
        return;
    }
    p.para("A feature counts as matched when its best cosine exceeds τ; the share of such features is the matching ratio of Table 1.");
}

fn histograms(m: &MatchResult, title: &str) -> Figure {
    let mut f = Figure::new(title, 4).shared().legend_above();
    // Start the shared axis a little below the lowest non-empty bin.
    let lo = m
        .histograms
        .iter()
        .filter_map(|h| {
            let first = h
                .counts
                .iter()
                .filter_map(|c| c.iter().position(|&x| x > 0))
                .min()?;
            h.edges.get(first).copied()
        })
        .fold(f64::INFINITY, f64::min)
        - 0.05;
    for (vectors, unit) in [
        ("decoder", "feature"),
        ("encoder", "feature"),
        ("decoder", "neuron"),
        ("encoder", "neuron"),
    ] {
        let Some(h) = m
            .histograms
            .iter()
            .find(|h| h.vectors == vectors && h.unit == unit && h.direction == "a_in_b")
        else {
            continue;
        };
        let mut panel = Panel::new(format!("{vectors} {unit}s"), "cosine", "count");
        for (rank, counts) in h.counts.iter().enumerate() {
            panel.series.push(
                Series::line(format!("top-{}", rank + 1), centres(h, counts, lo))
                    .color(palette::categorical(rank)),
            );
        }
        f.panels.push(panel);
    }
    f
}

/// (bin centre, count) of one rank's histogram, bins from `from` on.
fn centres(h: &Histogram, counts: &[u64], from: f64) -> Vec<(f64, f64)> {
    counts
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| {
            let (lo, hi) = (h.edges.get(i)?, h.edges.get(i + 1)?);
            Some(((lo + hi) / 2.0, c as f64))
        })
        .filter(|&(x, _)| x >= from)
        .collect()
}

pub(super) fn layers(p: &mut Page, r: &Results) {
    p.section("layers", "4.2.3 Features shared across layers");
    let Some(lm) = &r.layer_matrix else {
        p.missing("No layer pairs were matched (the spec's match categories have no `layer`, or those stages have not run).");
        return;
    };
    let names: Vec<String> = lm.layers.iter().map(|l| format!("L{l}")).collect();
    let heat = Heatmap {
        title: "Matching ratio between layers (study Fig 13)".into(),
        row_labels: names.clone(),
        col_labels: names.clone(),
        values: lm.ratio.clone(),
        vmin: 0.0,
        vmax: lm
            .ratio
            .iter()
            .flatten()
            .flatten()
            .fold(0.0f64, |a, &b| a.max(b))
            .max(1e-9),
        annotate: true,
    };
    p.figure(
        "layer_matrix.svg",
        heat.to_svg(),
        "Row i, column j: the share of layer i's SAE features (decoder, τ) whose best cosine in layer j's SAE exceeds τ. SAEs: the baseline setting at each layer.",
    );
    let mut header = vec!["layer".to_string()];
    header.extend(names.iter().map(|n| format!("in {n} (%)")));
    let mut t = Table {
        header,
        left_cols: 1,
        ..Table::default()
    };
    for (i, row) in lm.ratio.iter().enumerate() {
        let mut cells = vec![names[i].clone()];
        cells.extend(row.iter().map(|v| v.map_or_else(|| "—".into(), pct)));
        t.rows.push(cells);
    }
    p.table(&t);
}
