//! The match stage: one pair of SAEs compared on decoder (and encoder)
//! feature vectors, both directions, with the exact assignment, through
//! `saelab_analysis::matching::compare` (what `saelab match A B` calls);
//! the pair's files (`match.json`, CSVs) go in the stage folder.

use super::StageError;
use crate::exec::Ctx;
use crate::plan::MatchWork;
use crate::results::{write_stage_result, DirectionPair, Histogram, MatchResult};
use saelab_analysis::matching::grid::{load_sae, write_pair};
use saelab_analysis::matching::{
    compare, Comparison, MatchOptions, Unit, VectorKind, VectorSelection,
};
use std::path::Path;

pub fn run(ctx: &Ctx, w: &MatchWork, dir: &Path) -> Result<Vec<String>, StageError> {
    if ctx.stop.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(StageError::Stopped);
    }
    let path = |r: &crate::plan::SaeRef| ctx.cache.sae_dir(&r.train_stage, &r.name);
    let a = load_sae(&path(&w.a)).map_err(StageError::msg)?;
    let b = load_sae(&path(&w.b)).map_err(StageError::msg)?;
    let opts = MatchOptions {
        threshold: w.threshold as f32,
        top_n: w.top_n,
        vectors: if w.encoder {
            VectorSelection::Both
        } else {
            VectorSelection::Decoder
        },
        neurons: w.neurons && a.config().d_sae == b.config().d_sae,
        assignment: w.assignment,
        labels: (w.a.name.clone(), w.b.name.clone()),
        ..MatchOptions::default()
    };
    let report = compare(&a, &b, &opts).map_err(StageError::msg)?;
    write_pair(dir, &report).map_err(StageError::msg)?;
    let get = |k| report.get(k, Unit::Features);
    let dec = get(VectorKind::Decoder).ok_or_else(|| StageError::msg("no decoder comparison"))?;
    let result = MatchResult {
        category: w.category.clone(),
        a: w.a.id.clone(),
        b: w.b.id.clone(),
        threshold: w.threshold,
        decoder: pair(dec),
        encoder: get(VectorKind::Encoder).map(pair),
        assignment_ratio: dec.assignment.as_ref().map(|s| s.fraction_above),
        shared_fraction: report.shared.as_ref().map(|s| s.shared),
        chance: dec.a_in_b.chance_analytic,
        histograms: report.comparisons.iter().flat_map(histograms).collect(),
    };
    ctx.progress.stage_progress(1, 1, "pairs");
    write_stage_result(dir, &result).map_err(StageError::msg)?;
    Ok(vec![
        "match.json".into(),
        "summary.csv".into(),
        crate::results::STAGE_RESULT.into(),
    ])
}

fn pair(c: &Comparison) -> DirectionPair {
    DirectionPair {
        a_in_b: c.a_in_b.ratio,
        b_in_a: c.b_in_a.ratio,
        mmcs_a_in_b: c.a_in_b.mmcs,
        mmcs_b_in_a: c.b_in_a.mmcs,
    }
}

fn histograms(c: &Comparison) -> Vec<Histogram> {
    let vectors = match c.kind {
        VectorKind::Decoder => "decoder",
        VectorKind::Encoder => "encoder",
    };
    let unit = match c.unit {
        Unit::Features => "feature",
        Unit::Neurons => "neuron",
    };
    [("a_in_b", &c.a_in_b), ("b_in_a", &c.b_in_a)]
        .into_iter()
        .map(|(direction, d)| {
            let (lo, hi, bins) = d
                .histograms
                .first()
                .map_or((-1.0, 1.0, 0), |h| (h.lo, h.hi, h.counts.len()));
            Histogram {
                vectors: vectors.into(),
                unit: unit.into(),
                direction: direction.into(),
                edges: (0..=bins)
                    .map(|i| lo + (hi - lo) * i as f64 / bins.max(1) as f64)
                    .collect(),
                counts: d.histograms.iter().map(|h| h.counts.clone()).collect(),
            }
        })
        .collect()
}
