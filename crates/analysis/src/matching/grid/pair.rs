//! One pair of SAEs: loading an SAE directory with its settings
//! ([`GridSae`]), and the compact, storable result of comparing two SAEs
//! ([`PairResult`]) that the grid tables are computed from.

use super::error::{GridError, Result};
use super::settings::{read_settings, SaeSettings};
use crate::matching::{compare, Direction, Histogram, MatchOptions, MatchReport, Unit, VectorKind};
use saelab_sae::Sae;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Loads the SAE in `dir`, naming the directory in the error.
pub fn load_sae(dir: &Path) -> Result<Sae> {
    if !dir.exists() {
        return Err(GridError::Missing(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(GridError::NotADirectory(dir.to_path_buf()));
    }
    saelab_sae::load_sae(dir).map_err(|source| GridError::Load {
        dir: dir.to_path_buf(),
        source,
    })
}

/// One SAE of a grid: its label, directory and settings; the loaded
/// weights when [`GridSae::load`] built it (not serialized: a `GridSae`
/// read back from JSON has none, and [`super::grid`] loads them from `dir`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GridSae {
    /// Unique label in tables and figures.
    pub label: String,
    /// SAE directory.
    pub dir: PathBuf,
    /// Settings read from the SAE and its `cfg.json`.
    pub settings: SaeSettings,
    /// The loaded SAE, if kept.
    #[serde(skip)]
    pub sae: Option<Sae>,
}

impl GridSae {
    /// Loads the SAE in `dir` and reads its settings; the label defaults to
    /// the directory's name.
    pub fn load(dir: &Path, label: Option<String>) -> Result<GridSae> {
        let sae = load_sae(dir)?;
        let settings = read_settings(dir, &sae)?;
        Ok(GridSae {
            label: label.unwrap_or_else(|| dir_label(dir)),
            dir: dir.to_path_buf(),
            settings,
            sae: Some(sae),
        })
    }

    /// Loads a list of `(dir, label)`: checks that all have one model width
    /// and makes labels unique (a repeated label gets `-<index>`).
    pub fn load_all(entries: &[(PathBuf, Option<String>)]) -> Result<Vec<GridSae>> {
        let mut saes: Vec<GridSae> = Vec::with_capacity(entries.len());
        for (dir, label) in entries {
            let mut s = GridSae::load(dir, label.clone())?;
            if let Some(first) = saes.first() {
                let (d_a, d_b) = (first.settings.d_in, s.settings.d_in);
                if d_a != d_b {
                    return Err(GridError::Width {
                        dir_a: first.dir.clone(),
                        d_a,
                        dir_b: dir.clone(),
                        d_b,
                    });
                }
            }
            if saes.iter().any(|x| x.label == s.label) {
                s.label = format!("{}-{}", s.label, saes.len());
            }
            saes.push(s);
        }
        Ok(saes)
    }
}

/// The last component of `dir`, or the whole path when it has none.
fn dir_label(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().to_string())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| dir.display().to_string())
}

/// One direction of a pair result: queries of one SAE against the other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionResult {
    /// Matching ratio R(reference←query) at τ: the share of the query's
    /// features with a match in the reference.
    pub ratio: f64,
    /// Mean max cosine.
    pub mmcs: f64,
    /// Mean Top-1..Top-n cosines.
    pub top_mean: Vec<f64>,
    /// √(2 ln n_ref)/√d.
    pub chance_analytic: f64,
    /// Seeded Monte Carlo chance level.
    pub chance_monte_carlo: f64,
    /// Top-1..Top-n cosine histograms (the study's Figure 11); a few
    /// hundred counts each, so always kept.
    pub histograms: Vec<Histogram>,
}

impl From<&Direction> for DirectionResult {
    fn from(d: &Direction) -> Self {
        DirectionResult {
            ratio: d.ratio,
            mmcs: d.mmcs,
            top_mean: d.top_mean.clone(),
            chance_analytic: d.chance_analytic,
            chance_monte_carlo: d.chance_monte_carlo,
            histograms: d.histograms.clone(),
        }
    }
}

/// The compact result of comparing SAE A (reference) with SAE B, on the
/// feature vectors of the first selected kind (decoder unless only the
/// encoder was asked for): what the grid tables and the ratio matrix need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// Label of A.
    pub label_a: String,
    /// Label of B.
    pub label_b: String,
    /// Which feature vectors the ratios are of.
    pub kind: VectorKind,
    /// Features of A.
    pub n_a: usize,
    /// Features of B.
    pub n_b: usize,
    /// Vector length d.
    pub dim: usize,
    /// τ.
    pub threshold: f32,
    /// Queries B against reference A: `ratio` = R(A←B) = "B in A".
    pub b_in_a: DirectionResult,
    /// Queries A against reference B: `ratio` = R(B←A) = "A in B".
    pub a_in_b: DirectionResult,
    /// Assignment ratio R_H, when the assignment was computed.
    pub r_h: Option<f64>,
    /// Paulo & Belrose shared fraction, when computed.
    pub shared: Option<f64>,
}

impl PairResult {
    /// The compact result of a full [`MatchReport`].
    pub fn from_report(r: &MatchReport) -> Result<PairResult> {
        let c = r
            .comparisons
            .iter()
            .find(|c| c.unit == Unit::Features)
            .ok_or_else(|| GridError::NoFeatures {
                a: r.label_a.clone(),
                b: r.label_b.clone(),
            })?;
        Ok(PairResult {
            label_a: r.label_a.clone(),
            label_b: r.label_b.clone(),
            kind: c.kind,
            n_a: c.n_a,
            n_b: c.n_b,
            dim: c.dim,
            threshold: r.threshold,
            b_in_a: (&c.b_in_a).into(),
            a_in_b: (&c.a_in_b).into(),
            r_h: c.assignment.as_ref().map(|a| a.fraction_above),
            shared: r.shared.as_ref().map(|s| s.shared),
        })
    }

    /// R(A←B): share of B's features with a match in A.
    pub fn ratio_a_from_b(&self) -> f64 {
        self.b_in_a.ratio
    }

    /// R(B←A): share of A's features with a match in B.
    pub fn ratio_b_from_a(&self) -> f64 {
        self.a_in_b.ratio
    }
}

/// Compares `a` (reference, `opts.labels.0`) with `b` as `opts` asks and
/// keeps the compact result. [`compare`] gives the full report (per-query
/// top-n lists, assignment pairs) when those files are wanted.
pub fn match_pair(a: &Sae, b: &Sae, opts: &MatchOptions) -> Result<PairResult> {
    PairResult::from_report(&compare_pair(a, b, opts)?)
}

/// [`compare`] with the labels in the error.
pub(crate) fn compare_pair(a: &Sae, b: &Sae, opts: &MatchOptions) -> Result<MatchReport> {
    compare(a, b, opts).map_err(|source| GridError::Compare {
        a: opts.labels.0.clone(),
        b: opts.labels.1.clone(),
        source: Box::new(source),
    })
}
