//! Figures of feature matching: the Top-1..Top-n cosine histograms of one
//! direction of a pair (the study's Figure 11) and the heatmap of matching
//! ratios over a set of SAEs (Figure 13). Inputs are plain data, so this
//! crate needs nothing of the analysis crate; callers fill them from its
//! result types.

use crate::{Figure, Heatmap, Panel, Series};

/// One Top-r histogram: counts over equal bins of `[lo, hi]`.
#[derive(Clone, Copy, Debug)]
pub struct RankHistogram<'a> {
    /// 1-based rank (1 = Top-1).
    pub rank: usize,
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Count per bin.
    pub counts: &'a [u64],
}

/// The histograms of one direction of a pair.
#[derive(Clone, Debug)]
pub struct TopNHistograms<'a> {
    /// Figure title (see [`histogram_title`]).
    pub title: String,
    /// Matching threshold τ, marked in every panel.
    pub threshold: f32,
    /// Top-1..Top-n.
    pub histograms: Vec<RankHistogram<'a>>,
}

/// `decoder features: queries B against reference A (b_in_a)`.
pub fn histogram_title(kind: &str, unit: &str, query: &str, reference: &str, tag: &str) -> String {
    format!("{kind} {unit}: queries {query} against reference {reference} ({tag})")
}

/// One panel per rank (up to 4 per row): the histogram as bars and τ as a
/// vertical line.
pub fn top_n_histograms(h: &TopNHistograms) -> Figure {
    let cols = h.histograms.len().clamp(1, 4);
    let mut fig = Figure::new(h.title.clone(), cols);
    for r in &h.histograms {
        fig.panels.push(rank_panel(r, h.threshold));
    }
    fig
}

fn rank_panel(h: &RankHistogram, threshold: f32) -> Panel {
    let bins = h.counts.len().max(1);
    let width = (h.hi - h.lo) / bins as f64;
    let points: Vec<(f64, f64)> = h
        .counts
        .iter()
        .enumerate()
        .map(|(b, &n)| (bin_lo(h, b) + width / 2.0, n as f64))
        .collect();
    let top = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let tau = threshold as f64;
    Panel::new(format!("Top-{}", h.rank), "cosine", "queries")
        .with(Series::bars(format!("Top-{}", h.rank), width, points))
        .with(Series::line(
            format!("τ = {threshold}"),
            vec![(tau, 0.0), (tau, top)],
        ))
}

/// Lower edge of bin `b`.
fn bin_lo(h: &RankHistogram, b: usize) -> f64 {
    h.lo + (h.hi - h.lo) * b as f64 / h.counts.len() as f64
}

/// Matching ratios R(row←column) of a set of SAEs.
#[derive(Clone, Copy, Debug)]
pub struct RatioMatrix<'a> {
    /// SAE labels: rows = reference, columns = query.
    pub labels: &'a [String],
    /// `values[r][c]` = R(r←c); None on the diagonal and for pairs not run.
    pub values: &'a [Vec<Option<f64>>],
    /// Which vectors (`decoder`, `encoder`).
    pub vectors: &'a str,
    /// Matching threshold τ.
    pub threshold: f32,
}

/// The heatmap of a ratio matrix over [0, 1], values printed in the cells
/// up to 16 SAEs.
pub fn ratio_heatmap(m: &RatioMatrix) -> Heatmap {
    Heatmap {
        title: format!(
            "matching ratio R(row←column), {} features, τ = {}",
            m.vectors, m.threshold
        ),
        row_labels: m.labels.to_vec(),
        col_labels: m.labels.to_vec(),
        values: m.values.to_vec(),
        vmin: 0.0,
        vmax: 1.0,
        annotate: m.labels.len() <= 16,
    }
}
