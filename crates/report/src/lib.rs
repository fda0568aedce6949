//! Plots of saelab results as standalone SVG files: multi-panel line /
//! scatter / bar figures ([`Figure`]) and heatmaps ([`Heatmap`]).
//!
//! Hand-written rather than `plotters`: plotters needs a font backend
//! (`ttf` with system fontconfig, or a bundled `ab_glyph` font) to measure
//! text before it lays out axes; here the browser lays out plain `<text>`,
//! so the output is small, dependency-free and diffable.

mod figure;
mod heatmap;
pub mod recipes;
mod svg;

pub use figure::{Figure, Panel, Series, SeriesKind};
pub use heatmap::Heatmap;

/// Errors writing a plot.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader never sees a half-written plot.
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), ReportError> {
    let tmp = path.with_extension("svg.tmp");
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
