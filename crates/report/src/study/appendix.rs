//! The report's appendix: CE per position under the interventions (study
//! Fig 15), SAE loss and spliced CE per layer (Fig 16, 17), UMAP of the
//! decoder directions (Fig 18), the train × eval dataset matrix, and the
//! training curves.

use super::positions::{by_layer, indexed, short};
use super::{label, max_layer, thin, thinned_note, MAX_SCATTER};
use crate::html::{Page, Table};
use crate::{palette, Figure, Heatmap, Panel, Series};
use saelab_results::Results;

pub(super) fn write(p: &mut Page, r: &Results) {
    p.section("appendix", "Appendix");
    ce_positions(p, r);
    per_layer(p, r);
    umap(p, r);
    train_eval(p, r);
    curves(p, r);
}

/// Fig 15: the model's CE per position under each intervention.
fn ce_positions(p: &mut Page, r: &Results) {
    p.subsection("CE per position under the interventions (study Fig 15)");
    let layers = by_layer(r);
    let Some(entries) = layers.values().next() else {
        p.missing("No stats stage is complete.");
        return;
    };
    let mut panel = Panel::new("model CE per position", "position", "cross-entropy (nats)");
    for e in entries {
        if let Some(ce) = &e.stats.ce_per_position {
            panel.series.push(
                Series::line(e.intervention.clone(), indexed(&ce.clean, 0))
                    .color(palette::intervention(&e.intervention)),
            );
        }
    }
    if panel.series.is_empty() {
        p.missing("CE per position was not computed (stats.ce_per_position = false).");
        return;
    }
    let f = Figure {
        title: "Model CE per position (study Fig 15)".into(),
        panels: vec![panel],
        cols: 1,
        legend_above: true,
        ..Figure::default()
    };
    p.figure(
        "ce_positions.svg",
        f.to_svg(),
        "Next-token cross-entropy of the model at each position of the stats rows, with the positional signal left alone, zeroed or shuffled (no SAE spliced).",
    );
}

/// Fig 16, 17: FVU per layer, and CE per position with each layer's SAE
/// spliced in.
fn per_layer(p: &mut Page, r: &Results) {
    p.subsection("SAE loss and spliced CE per layer (study Fig 16, 17)");
    let layers = by_layer(r);
    let mut fvu = Panel::new("FVU per layer", "layer", "FVU");
    let mut dce = Panel::new("mean ΔCE with the SAE spliced", "layer", "ΔCE (nats)");
    let mut spliced = Figure::new("CE per position, SAE spliced (study Fig 17)", 3)
        .shared()
        .legend_above();
    for (k, intervention) in ["none", "zero", "shuffle"].iter().enumerate() {
        let c = palette::intervention(intervention);
        let mut f_pts = Vec::new();
        let mut d_pts = Vec::new();
        for (layer, entries) in &layers {
            let Some(e) = entries.iter().find(|e| e.intervention == *intervention) else {
                continue;
            };
            if let Some(v) = e.stats.fvu {
                f_pts.push((*layer as f64, v));
            }
            if let Some(ce) = &e.stats.ce_per_position {
                d_pts.push((*layer as f64, mean(&ce.spliced) - mean(&ce.clean)));
                if k == 0 {
                    spliced.panels.push(
                        Panel::new(format!("layer {layer}"), "position", "cross-entropy")
                            .with(Series::line("clean", indexed(&ce.clean, 0)).color("#222222"))
                            .with(
                                Series::line("SAE spliced", indexed(&ce.spliced, 0))
                                    .color("#d62728"),
                            ),
                    );
                }
            }
        }
        fvu.series.push(Series::line(*intervention, f_pts).color(c));
        dce.series.push(Series::line(*intervention, d_pts).color(c));
    }
    if layers.is_empty() {
        p.missing("No stats stage is complete.");
        return;
    }
    fvu.x_integer = true;
    dce.x_integer = true;
    let f = Figure {
        title: "SAE loss and spliced CE per layer (study Fig 16)".into(),
        panels: vec![fvu, dce],
        cols: 2,
        legend_above: true,
        ..Figure::default()
    };
    p.figure(
        "layer_loss.svg",
        f.to_svg(),
        "Each layer's baseline SAE on the stats rows: fraction of variance unexplained, and the mean increase of next-token CE when its reconstruction replaces the residual stream, per intervention.",
    );
    if !spliced.panels.is_empty() {
        p.figure(
            "ce_spliced_positions.svg",
            spliced.to_svg(),
            "Next-token CE per position, clean and with the layer's SAE spliced in (no intervention).",
        );
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Fig 18: UMAP of each layer's decoder directions.
fn umap(p: &mut Page, r: &Results) {
    p.subsection("UMAP of decoder directions (study Fig 18)");
    if r.umap.is_empty() {
        p.missing("No UMAP stage is complete (it embeds the SAEs of the stats layers).");
        return;
    }
    let top = max_layer(r);
    let mut f = Figure::new("UMAP of decoder directions per layer (study Fig 18)", 3);
    let mut n = 0;
    let mut trust = Vec::new();
    for u in &r.umap {
        n = n.max(u.points.len());
        let pts = thin(u.points.len(), MAX_SCATTER)
            .into_iter()
            .map(|i| (u.points[i][0] as f64, u.points[i][1] as f64))
            .collect();
        f.panels.push(
            Panel::new(
                format!("layer {} ({})", u.layer, short(&label(r, &u.id))),
                "UMAP 1",
                "UMAP 2",
            )
            .with(Series::scatter("", pts).color(palette::layer(u.layer, top))),
        );
        if let Some(t) = u.trustworthiness {
            trust.push(format!("layer {} {t:.3}", u.layer));
        }
    }
    let u0 = &r.umap[0];
    p.figure(
        "umap.svg",
        f.to_svg(),
        &format!(
            "One dot per feature: its decoder direction embedded in 2-D by UMAP (cosine metric, {} neighbours, min_dist {}, seed {}). Trustworthiness (k 10): {}.{}",
            u0.n_neighbors,
            u0.min_dist,
            u0.seed,
            if trust.is_empty() { "not computed".into() } else { trust.join(", ") },
            thinned_note(n)
        ),
    );
}

/// The train × eval dataset matrix: FVU and ΔCE of each SAE on each corpus.
fn train_eval(p: &mut Page, r: &Results) {
    p.subsection("Train × eval datasets");
    if r.train_eval.is_empty() {
        p.missing("No eval stage is complete.");
        return;
    }
    let mut trains: Vec<&str> = Vec::new();
    let mut evals: Vec<&str> = Vec::new();
    for c in &r.train_eval {
        if !trains.contains(&c.train.as_str()) {
            trains.push(&c.train);
        }
        if !evals.contains(&c.eval.as_str()) {
            evals.push(&c.eval);
        }
    }
    let cell = |t: &str, e: &str| r.train_eval.iter().find(|c| c.train == t && c.eval == e);
    let mut header = vec!["trained on".to_string()];
    for e in &evals {
        header.push(format!("FVU on {e}"));
        header.push(format!("ΔCE on {e}"));
    }
    let mut t = Table {
        header,
        left_cols: 1,
        ..Table::default()
    };
    for tr in &trains {
        let mut row = vec![tr.to_string()];
        for e in &evals {
            let c = cell(tr, e);
            row.push(c.map_or_else(String::new, |c| format!("{:.4}", c.metrics.fvu)));
            row.push(c.map_or_else(String::new, |c| format!("{:.4}", c.metrics.delta_ce)));
        }
        t.rows.push(row);
    }
    p.table(&t);
    let values: Vec<Vec<Option<f64>>> = trains
        .iter()
        .map(|tr| {
            evals
                .iter()
                .map(|e| cell(tr, e).map(|c| c.metrics.fvu))
                .collect()
        })
        .collect();
    let vmax = values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b));
    let heat = Heatmap {
        title: "FVU, trained on (rows) × evaluated on (columns)".into(),
        row_labels: trains.iter().map(|s| s.to_string()).collect(),
        col_labels: evals.iter().map(|s| s.to_string()).collect(),
        values,
        vmin: 0.0,
        vmax: vmax.max(1e-9),
        annotate: true,
    };
    p.figure(
        "train_eval.svg",
        heat.to_svg(),
        "Fraction of variance unexplained of the SAE trained on each corpus (rows) when evaluated on each corpus (columns); the diagonal is in-distribution.",
    );
}

/// FVU, L0 and dead fraction against training steps, one line per SAE.
fn curves(p: &mut Page, r: &Results) {
    p.subsection("Training curves");
    let trained: Vec<_> = r.saes.iter().filter(|s| !s.curve.is_empty()).collect();
    if trained.is_empty() {
        p.missing("No train stage is complete.");
        return;
    }
    let mut f = Figure::new("Training curves", 3).legend_above();
    type Metric = fn(&saelab_sae::StepMetrics) -> f64;
    let metrics: [(&str, Metric, bool); 3] = [
        ("FVU", |m| m.fvu, true),
        ("L0", |m| m.l0, false),
        ("dead fraction", |m| m.dead_fraction, false),
    ];
    for (name, get, log) in metrics {
        let mut panel = Panel::new(name, "step", name);
        panel.y_log = log;
        for (i, s) in trained.iter().enumerate() {
            let pts = s.curve.iter().map(|m| (m.step as f64, get(m))).collect();
            panel
                .series
                .push(Series::line(s.label.clone(), pts).color(palette::categorical(i)));
        }
        f.panels.push(panel);
    }
    p.figure(
        "training_curves.svg",
        f.to_svg(),
        "As logged during training (batch of the spec's [train] section per step). Colours repeat after ten SAEs; every curve is in results.json.",
    );
}
