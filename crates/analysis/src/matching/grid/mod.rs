//! Pairs and grids of SAEs (the study's Figures 11 and 13, Tables 1 and 2),
//! shared by `saelab match` and the study runner:
//! - [`settings`]: the comparable settings of an SAE ([`SaeSettings`],
//!   [`read_settings`]), which differ ([`differing`]) and the Table 1
//!   category ([`category_of`]);
//! - [`pair`]: loading an SAE with its settings ([`GridSae`]) and the
//!   compact, storable result of one pair ([`PairResult`], [`match_pair`]);
//! - [`tables`]: ratio matrix, Table 1 and Table 2 over any list of pair
//!   results;
//! - [`files`]: the output files of a pair ([`write_pair`]) and of a grid
//!   ([`write_grid`]); the figures come from `saelab_report::recipes`.
//!
//! [`grid`] compares every unordered pair once (both directions come from
//! one [`compare`](crate::matching::compare)), pairs one after the other.

pub mod error;
pub mod files;
pub mod pair;
pub mod settings;
pub mod tables;
#[cfg(test)]
mod tests;

pub use error::{GridError, Result};
pub use files::{write_grid, write_pair, GRID_SCHEMA};
pub use pair::{load_sae, match_pair, DirectionResult, GridSae, PairResult};
pub use settings::{
    category_of, differing, read_settings, setting_values, Category, SaeSettings, Setting,
};
pub use tables::{ratio_matrix, table1, table2, Table1Row, Table2Row};

use crate::matching::{MatchOptions, MatchReport, TopN, VectorKind, VectorSelection};
use saelab_sae::Sae;

/// One pair of a grid: the compact result, the settings that differ and
/// the full report (without the per-query lists and assignment pairs,
/// which are dropped to bound memory over many pairs).
#[derive(Clone, Debug)]
pub struct GridPair {
    pub result: PairResult,
    pub differs: Vec<Setting>,
    pub report: MatchReport,
}

/// Everything [`grid`] computed.
#[derive(Clone, Debug)]
pub struct GridReport {
    /// τ.
    pub threshold: f32,
    /// Requested top-n.
    pub top_n: usize,
    /// Which feature vectors the ratio matrix is of.
    pub kind: VectorKind,
    /// The SAEs, in the order given (matrix rows and columns).
    pub saes: Vec<GridSae>,
    /// Every unordered pair (i < j), in row-major order.
    pub pairs: Vec<GridPair>,
    /// What was skipped and why (e.g. neurons of pairs of different n).
    pub notes: Vec<String>,
}

impl GridReport {
    /// The pair results, in pair order.
    pub fn results(&self) -> Vec<PairResult> {
        self.pairs.iter().map(|p| p.result.clone()).collect()
    }
}

/// Progress of [`grid_with_progress`], after each pair.
pub struct GridProgress<'a> {
    /// Pairs done, this one included.
    pub done: usize,
    /// Pairs in the grid.
    pub total: usize,
    /// The pair just computed.
    pub pair: &'a GridPair,
}

/// Compares every pair of `saes` with `opts` (labels are set per pair;
/// `opts.neurons` applies to pairs of equal n only, the others get a note).
pub fn grid(saes: &[GridSae], opts: &MatchOptions) -> Result<GridReport> {
    grid_with_progress(saes, opts, |_| {})
}

/// [`grid`], calling `progress` after each pair.
pub fn grid_with_progress(
    saes: &[GridSae],
    opts: &MatchOptions,
    mut progress: impl FnMut(&GridProgress),
) -> Result<GridReport> {
    if saes.len() < 2 {
        return Err(GridError::TooFew(saes.len()));
    }
    check_widths(saes)?;
    let loaded = load_missing(saes)?;
    let weights = borrow_weights(saes, &loaded);
    let m = saes.len();
    let total = m * (m - 1) / 2;
    let mut pairs = Vec::with_capacity(total);
    let mut notes = Vec::new();
    for i in 0..m {
        for j in i + 1..m {
            let (sa, sb) = (&saes[i], &saes[j]);
            let (na, nb) = (sa.settings.n, sb.settings.n);
            let neurons = opts.neurons && na == nb;
            if opts.neurons && !neurons {
                notes.push(format!(
                    "{} vs {}: neurons skipped (n {na} vs {nb})",
                    sa.label, sb.label
                ));
            }
            let o = MatchOptions {
                labels: (sa.label.clone(), sb.label.clone()),
                neurons,
                ..opts.clone()
            };
            let report = pair::compare_pair(weights[i], weights[j], &o)?;
            let pair = GridPair {
                result: PairResult::from_report(&report)?,
                differs: differing(&sa.settings, &sb.settings),
                report: without_bulk(report),
            };
            progress(&GridProgress {
                done: pairs.len() + 1,
                total,
                pair: &pair,
            });
            pairs.push(pair);
        }
    }
    Ok(GridReport {
        threshold: opts.threshold,
        top_n: opts.top_n,
        kind: match opts.vectors {
            VectorSelection::Encoder => VectorKind::Encoder,
            _ => VectorKind::Decoder,
        },
        saes: saes.to_vec(),
        pairs,
        notes,
    })
}

/// SAEs of different model widths cannot be compared: fail before any pair.
fn check_widths(saes: &[GridSae]) -> Result<()> {
    let first = &saes[0];
    match saes.iter().find(|s| s.settings.d_in != first.settings.d_in) {
        Some(s) => Err(GridError::Width {
            dir_a: first.dir.clone(),
            d_a: first.settings.d_in,
            dir_b: s.dir.clone(),
            d_b: s.settings.d_in,
        }),
        None => Ok(()),
    }
}

/// The SAEs not kept in memory, loaded once from their directories.
fn load_missing(saes: &[GridSae]) -> Result<Vec<Sae>> {
    saes.iter()
        .filter(|s| s.sae.is_none())
        .map(|s| load_sae(&s.dir))
        .collect()
}

/// The weights of every SAE, in order: kept ones, else the next of `loaded`.
fn borrow_weights<'a>(saes: &'a [GridSae], loaded: &'a [Sae]) -> Vec<&'a Sae> {
    let mut rest = loaded.iter();
    saes.iter()
        .filter_map(|s| s.sae.as_ref().or_else(|| rest.next()))
        .collect()
}

/// The report without the per-query top-n lists and assignment pairs.
fn without_bulk(mut r: MatchReport) -> MatchReport {
    for c in &mut r.comparisons {
        for d in [&mut c.b_in_a, &mut c.a_in_b] {
            d.top = TopN {
                k: 0,
                n_queries: 0,
                n_refs: 0,
                values: Vec::new(),
                indices: Vec::new(),
            };
        }
        c.assignment_pairs = None;
    }
    r
}
