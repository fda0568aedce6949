//! Streaming activation statistics of SAE codes over analysis rows (SPEC §4,
//! the study's §4.1 / Figures 7–10).
//!
//! Input: codes of N rows × T positions (analysis rows, BOS at position 0),
//! pushed as [`SparseCodes`] batches of whole rows in row-major order
//! (code row r = sequence row r / T, position r % T). One
//! [`ActivationStats`] per SAE; several layers = several accumulators fed
//! from the same model pass.
//!
//! Everything except the deciles is O(T + n) memory: per position and per
//! feature we keep a count, Σx and Σx² in f64. We use sums rather than
//! Welford because they merge trivially across batches and threads and cost
//! no division per value; the cancellation in E(x²) − E(x)² loses about
//! ε_f64 · mean²/var relative precision, i.e. ≤ 1e-8 even for a std 10⁴
//! times smaller than the mean, below the f32 precision of the codes. The
//! deciles keep values (exact) or bounded reservoirs, see [`deciles`].
//!
//! "Nonzero" means `v != 0` (SAE codes are ≥ 0; explicit zeros in the CSR
//! codes are skipped).
//!
//! Output ([`StatsReport::write_all`]): `stats.json` ([`StatsSummary`]),
//! `positions.csv`, `features.csv`, `deciles.csv`, `sweep.csv`; schemas on
//! the types and writer methods ([`files`]).
//!
//! [`run()`] is the whole `saelab stats` analysis over a model and corpus
//! ([`StatsRunConfig`] → [`StatsOutput`]); [`write`] writes its files.

pub mod deciles;
pub mod feature;
pub mod files;
pub mod output;
pub mod position;
pub mod run;
pub mod sweep;

pub use deciles::{
    deciles_of, dkw_epsilon, quantile_linear_sorted, DecileAccumulator, DecileConfig, DecileInfo,
    DecileMode, DecileTable, DECILE_LEVELS,
};
pub use feature::{FeatureStats, FeatureTable};
pub use files::write;
pub use position::{Aggregate, PositionReport, PositionStats};
pub use run::{run, SaeStats, StatsOutput, StatsRunConfig};
pub use sweep::{moving_average, threshold_sweep, ThresholdSweep};

use saelab_sae::SparseCodes;
use serde::Serialize;
use std::path::PathBuf;

/// Errors of the statistics accumulators.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Codes or arguments of the wrong shape.
    #[error("shape error: {0}")]
    Shape(String),
    /// Invalid configuration.
    #[error("invalid stats config: {0}")]
    Config(String),
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing an output file failed (the error names it).
    #[error(transparent)]
    Fs(#[from] saelab_fsio::FsError),
    /// Making the token rows failed.
    #[error(transparent)]
    Rows(#[from] crate::rows::RowsError),
    /// A model pass failed; `what` says which.
    #[error("{what}: {source}")]
    Model {
        /// Which pass.
        what: String,
        /// The cause.
        source: saelab_lm::LmError,
    },
    /// An SAE failed to encode or its codes were rejected.
    #[error("statistics of {label}: {msg}")]
    Sae {
        /// The SAE's label.
        label: String,
        /// The cause.
        msg: String,
    },
    /// JSON serialization failed.
    #[error("serializing {path}: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        msg: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StatsError>;

/// Checks that `codes` is well-formed CSR over `n` features with finite
/// values and that its rows are whole sequences of `seq_len` tokens;
/// returns the number of sequences. Shared with [`crate::eval`].
pub fn check_codes(codes: &SparseCodes, n: usize, seq_len: usize) -> Result<usize> {
    if codes.n != n {
        return Err(StatsError::Shape(format!(
            "codes have n = {}, accumulator has {n} features",
            codes.n
        )));
    }
    if seq_len == 0 || !codes.rows.is_multiple_of(seq_len) {
        return Err(StatsError::Shape(format!(
            "{} code rows are not whole sequences of T = {seq_len} positions",
            codes.rows
        )));
    }
    let well_formed = codes.indptr.len() == codes.rows + 1
        && codes.indptr.first() == Some(&0)
        && codes.indptr.last() == Some(&codes.idx.len())
        && codes.indptr.windows(2).all(|w| w[0] <= w[1])
        && codes.val.len() == codes.idx.len();
    if !well_formed {
        return Err(StatsError::Shape("malformed CSR codes (indptr)".into()));
    }
    if let Some(&i) = codes.idx.iter().find(|&&i| i as usize >= n) {
        return Err(StatsError::Shape(format!(
            "feature index {i} out of range for n = {n}"
        )));
    }
    if codes.val.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::Shape("codes contain NaN or infinity".into()));
    }
    Ok(codes.rows / seq_len)
}

/// Settings of [`ActivationStats`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsConfig {
    /// Window of the moving-average overlay (default 16 positions; ≥ 1,
    /// 1 = no smoothing).
    pub ma_window: usize,
    /// Decile storage and sampling.
    pub deciles: DecileConfig,
    /// Number of thresholds in the sweep (default 101).
    pub sweep_steps: usize,
    /// Largest threshold (default: the largest median or mean).
    pub sweep_max: Option<f64>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            ma_window: 16,
            deciles: DecileConfig::default(),
            sweep_steps: 101,
            sweep_max: None,
        }
    }
}

/// Streaming statistics of one SAE's codes.
#[derive(Clone, Debug)]
pub struct ActivationStats {
    n: usize,
    seq_len: usize,
    rows: u64,
    nonzeros: u64,
    cfg: StatsConfig,
    pos: PositionStats,
    feat: FeatureStats,
    dec: DecileAccumulator,
}

/// Summary written as `stats.json`.
///
/// Schema: `{"schema": "saelab.stats.v1", "n_features": usize,
/// "seq_len": usize, "rows": u64, "tokens": u64, "nonzeros": u64,
/// "config": StatsConfig, "positions": PositionReport,
/// "features": {"fired_excl0": u64, "never_fired_excl0": u64,
/// "never_fired": u64, "mean_density_excl0": f64},
/// "deciles": DecileInfo, "sweep": ThresholdSweep}`. The sweep counts the
/// features that fire at positions ≥ 1, using their positions ≥ 1 median
/// (`deciles.csv` `q50_excl0`) and mean (`features.csv` `mean`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsSummary {
    /// Format tag.
    pub schema: &'static str,
    /// n.
    pub n_features: usize,
    /// T.
    pub seq_len: usize,
    /// N.
    pub rows: u64,
    /// N·T.
    pub tokens: u64,
    /// Nonzero code entries seen.
    pub nonzeros: u64,
    /// The settings used.
    pub config: StatsConfig,
    /// Per-position curves and aggregates.
    pub positions: PositionReport,
    /// Feature counts.
    pub features: FeatureSummary,
    /// Decile mode, memory and error bound.
    pub deciles: DecileInfo,
    /// Threshold sweep.
    pub sweep: ThresholdSweep,
}

/// Feature counts of the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureSummary {
    /// Features with at least one nonzero at positions ≥ 1.
    pub fired_excl0: u64,
    /// Features never nonzero at positions ≥ 1.
    pub never_fired_excl0: u64,
    /// Features never nonzero anywhere.
    pub never_fired: u64,
    /// Mean over features of the positions ≥ 1 density.
    pub mean_density_excl0: f64,
}

/// Everything [`ActivationStats::finish`] produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsReport {
    /// Scalars and curves (`stats.json`).
    pub summary: StatsSummary,
    /// Per-feature statistics (`features.csv`).
    pub features: FeatureTable,
    /// Per-feature deciles (`deciles.csv`).
    pub deciles: DecileTable,
}

impl ActivationStats {
    /// An accumulator for `n_features` features and rows of `seq_len`.
    pub fn new(n_features: usize, seq_len: usize, cfg: StatsConfig) -> Result<Self> {
        if n_features == 0 || seq_len == 0 {
            return Err(StatsError::Config(format!(
                "n_features ({n_features}) and seq_len ({seq_len}) must be ≥ 1"
            )));
        }
        if !(cfg.deciles.delta > 0.0 && cfg.deciles.delta < 1.0) {
            return Err(StatsError::Config("decile delta must be in (0, 1)".into()));
        }
        if cfg.ma_window == 0 {
            return Err(StatsError::Config(
                "ma_window (--ma-window) must be ≥ 1 (1 = no smoothing)".into(),
            ));
        }
        if cfg.deciles.reservoir_size == Some(0) {
            return Err(StatsError::Config("reservoir size must be ≥ 1".into()));
        }
        Ok(ActivationStats {
            n: n_features,
            seq_len,
            rows: 0,
            nonzeros: 0,
            pos: PositionStats::new(n_features, seq_len),
            feat: FeatureStats::new(n_features, seq_len),
            dec: DecileAccumulator::new(n_features, cfg.deciles.clone()),
            cfg,
        })
    }

    /// Adds a batch of whole rows: `codes.rows` = rows·T, row-major.
    pub fn push(&mut self, codes: &SparseCodes) -> Result<()> {
        let rows = check_codes(codes, self.n, self.seq_len)?;
        let t_len = self.seq_len;
        let (pos, feat, dec) = (&mut self.pos, &mut self.feat, &mut self.dec);
        // The decile scatter is the most expensive part; it runs beside the
        // position / feature sums (disjoint state, same read-only codes).
        rayon::join(
            || {
                for_each_token(codes, t_len, |t, idx, val| {
                    pos.push_token(t, val);
                    feat.push_token(t, idx, val);
                })
            },
            || for_each_token(codes, t_len, |t, idx, val| dec.push_token(t, idx, val)),
        );
        self.dec.end_batch();
        self.pos.add_rows(rows as u64);
        self.feat.add_rows(rows as u64);
        self.rows += rows as u64;
        self.nonzeros += codes.val.iter().filter(|&&v| v != 0.0).count() as u64;
        Ok(())
    }

    /// Rows (sequences) pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Approximate bytes held: decile storage plus the O(T + n) sums.
    pub fn memory_bytes(&self) -> u64 {
        self.dec.held_bytes() + 24 * (self.seq_len + 2 * self.n) as u64
    }

    /// The current decile mode.
    pub fn decile_mode(&self) -> DecileMode {
        self.dec.mode()
    }

    /// Final statistics.
    pub fn finish(self) -> StatsReport {
        let positions = self.pos.report(self.cfg.ma_window);
        let features = self.feat.report();
        let deciles = self.dec.finish();
        let fired: Vec<usize> = (0..self.n).filter(|&i| features.count[i] > 0).collect();
        let medians: Vec<f64> = fired.iter().map(|&i| deciles.excl_pos0[i][4]).collect();
        let means: Vec<f64> = fired.iter().map(|&i| features.mean[i]).collect();
        let sweep = threshold_sweep(&medians, &means, self.cfg.sweep_max, self.cfg.sweep_steps);
        let never_fired = (0..self.n)
            .filter(|&i| features.count[i] == 0 && features.count_pos0[i] == 0)
            .count() as u64;
        let summary = StatsSummary {
            schema: "saelab.stats.v1",
            n_features: self.n,
            seq_len: self.seq_len,
            rows: self.rows,
            tokens: self.rows * self.seq_len as u64,
            nonzeros: self.nonzeros,
            config: self.cfg,
            positions,
            features: FeatureSummary {
                fired_excl0: fired.len() as u64,
                never_fired_excl0: (self.n - fired.len()) as u64,
                never_fired,
                mean_density_excl0: features.density.iter().sum::<f64>() / self.n as f64,
            },
            deciles: deciles.info.clone(),
            sweep,
        };
        StatsReport {
            summary,
            features,
            deciles,
        }
    }
}

/// Calls `f(position, indices, values)` for every code row (token).
fn for_each_token(codes: &SparseCodes, seq_len: usize, mut f: impl FnMut(usize, &[u32], &[f32])) {
    for r in 0..codes.rows {
        let (a, b) = (codes.indptr[r], codes.indptr[r + 1]);
        f(r % seq_len, &codes.idx[a..b], &codes.val[a..b]);
    }
}
