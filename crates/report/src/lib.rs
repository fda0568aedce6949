//! Plots of saelab results as standalone SVG files: multi-panel line /
//! scatter / bar figures ([`Figure`]) and heatmaps ([`Heatmap`]).
//!
//! Hand-written rather than `plotters`: plotters needs a font backend
//! (`ttf` with system fontconfig, or a bundled `ab_glyph` font) to measure
//! text before it lays out axes; here the browser lays out plain `<text>`,
//! so the output is small, dependency-free and diffable.
//!
//! [`recipes`] turn typed analysis results into the commands' figures; this
//! crate reads result types only (it depends on `saelab-analysis` for them,
//! never the other way round).

mod figure;
mod heatmap;
pub mod html;
pub mod palette;
pub mod published;
pub mod recipes;
pub mod study;
mod svg;

pub use figure::{Figure, Panel, Series, SeriesKind};
pub use heatmap::Heatmap;

/// Errors writing a plot.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing the file failed (the error names it).
    #[error(transparent)]
    Fs(#[from] saelab_fsio::FsError),
    /// Reading a results file failed (the error names it).
    #[error(transparent)]
    Results(#[from] saelab_results::ResultsError),
}
