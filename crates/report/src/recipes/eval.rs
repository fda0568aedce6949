//! The figure of `saelab eval` (`per_position.svg`): per SAE, a panel of
//! clean / spliced / zero-ablated CE by position and a panel of the SAE's
//! reconstruction MSE by position (log scale).

use crate::{Figure, Panel, ReportError, Series};
use saelab_analysis::eval::{EvalOutput, SaeEval};
use std::path::Path;

/// (position, value) points of a curve; NaN / infinite values are skipped
/// when drawn.
fn indexed(v: &[f64]) -> Vec<(f64, f64)> {
    v.iter().enumerate().map(|(t, &y)| (t as f64, y)).collect()
}

/// The two panels of one SAE.
fn sae_panels(s: &SaeEval) -> [Panel; 2] {
    let ce = s.report.ce.as_ref().map(|c| &c.per_position);
    let curve = |f: fn(&saelab_analysis::eval::CeCurves) -> Option<&[f64]>| {
        ce.and_then(f).map(indexed).unwrap_or_default()
    };
    let ce_panel = Panel::new(format!("{} · {}", s.label, s.hook), "position", "CE (nats)")
        .with(Series::line("clean", curve(|c| Some(&c.ce_clean))))
        .with(Series::line("spliced", curve(|c| Some(&c.ce_spliced))))
        .with(Series::line(
            "zero-ablated",
            curve(|c| c.ce_zero.as_deref()),
        ));
    let mse = s
        .report
        .recon
        .as_ref()
        .and_then(|r| r.per_position.as_ref())
        .map(|p| indexed(&p.mse))
        .unwrap_or_default();
    let mut loss = Panel::new(format!("{} · SAE loss", s.label), "position", "MSE");
    loss.y_log = true;
    [ce_panel, loss.with(Series::line("mse", mse))]
}

/// `per_position.svg` of an eval run: two columns, one row per SAE.
pub fn per_position(output: &EvalOutput) -> Figure {
    let mut fig = Figure::new(
        format!(
            "per-position CE and SAE loss ({}, {}, pos {})",
            output.model_name, output.dataset, output.pos_intervention
        ),
        2,
    );
    fig.panels.extend(output.saes.iter().flat_map(sae_panels));
    fig
}

/// Writes the eval figure (`per_position.svg`) into `out`.
pub fn write(out: &Path, output: &EvalOutput) -> Result<(), ReportError> {
    per_position(output).write(&out.join("per_position.svg"))
}
