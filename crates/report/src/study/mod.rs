//! The study report: `report.html`, one self-contained page with the
//! study's tables and figures in its order (§4.1.1 positions, §4.1.2
//! features, §4.2.1 cosine histograms, §4.2.2 Tables 1 and 2, §4.2.3 the
//! layer matrix, then the appendix), built from [`Results`] alone, and
//! each figure saved as its own SVG in `figures/` beside it; the study's
//! findings (a)–(g) measured on the grid open it, also as `findings.md`. A part of the
//! study without data is left out with a note; nothing here fails on a
//! partial study. The same results give the same bytes.

mod appendix;
mod features;
pub mod findings;
mod header;
mod matching;
mod positions;
mod tables;

use crate::html::Page;
use crate::ReportError;
use saelab_results::{Results, SaeResult};
use std::path::{Path, PathBuf};

/// The page's file name in the study folder.
pub const REPORT_FILE: &str = "report.html";
/// The folder of the figures' SVG files, beside the page.
pub const FIGURES_DIR: &str = "figures";

/// Most points one scatter panel draws (evenly spaced in feature order);
/// captions say when a panel was thinned.
pub(crate) const MAX_SCATTER: usize = 3000;

/// A built report: the page and its figures (file name, SVG).
pub struct StudyReport {
    pub html: String,
    pub figures: Vec<(String, String)>,
    /// The findings table as markdown ([`findings::FINDINGS_FILE`]).
    pub findings: String,
}

/// Builds the report of a study from its results.
pub fn build(r: &Results) -> StudyReport {
    let mut p = Page::new(&format!("saelab study: {}", r.study));
    header::write(&mut p, r);
    findings::write(&mut p, r);
    positions::write(&mut p, r);
    features::write(&mut p, r);
    matching::cosines(&mut p, r);
    tables::write(&mut p, r);
    matching::layers(&mut p, r);
    appendix::write(&mut p, r);
    let (html, figures) = p.finish();
    StudyReport {
        html,
        figures,
        findings: findings::markdown(r),
    }
}

/// Writes the figures, then `report.html` (atomically, last) into
/// `study_dir`; returns the page's path.
pub fn write(study_dir: &Path, rep: &StudyReport) -> Result<PathBuf, ReportError> {
    let figs = study_dir.join(FIGURES_DIR);
    std::fs::create_dir_all(&figs).map_err(|e| saelab_fsio::FsError::io(&figs, e))?;
    for (name, svg) in &rep.figures {
        saelab_fsio::write_atomic(&figs.join(name), svg.as_bytes())?;
    }
    saelab_fsio::write_atomic(
        &study_dir.join(findings::FINDINGS_FILE),
        rep.findings.as_bytes(),
    )?;
    let path = study_dir.join(REPORT_FILE);
    saelab_fsio::write_atomic(&path, rep.html.as_bytes())?;
    Ok(path)
}

/// Builds the report of the results file `results` (`results.json`, or a
/// gzip-compressed copy such as [`saelab_results::slim`] makes) into
/// `out_dir`; returns the page's path. Runs nothing.
pub fn render_file(results: &Path, out_dir: &Path) -> Result<PathBuf, ReportError> {
    let r = saelab_results::read(results)?;
    std::fs::create_dir_all(out_dir).map_err(|e| saelab_fsio::FsError::io(out_dir, e))?;
    write(out_dir, &build(&r))
}

/// The SAE of the study with this id.
pub(crate) fn sae<'a>(r: &'a Results, id: &str) -> Option<&'a SaeResult> {
    r.saes.iter().find(|s| s.id == id)
}

/// A readable name for an SAE id.
pub(crate) fn label(r: &Results, id: &str) -> String {
    sae(r, id).map_or_else(|| id.chars().take(16).collect(), |s| s.label.clone())
}

/// The deepest layer of the study's SAEs (for the layer colours).
pub(crate) fn max_layer(r: &Results) -> usize {
    r.saes.iter().map(|s| s.key.layer).max().unwrap_or(0)
}

/// `v` as a percentage with two decimals.
pub(crate) fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

/// Indices `0..n` thinned to at most `max`, evenly spaced.
pub(crate) fn thin(n: usize, max: usize) -> Vec<usize> {
    let step = n.div_ceil(max.max(1)).max(1);
    (0..n).step_by(step).collect()
}

/// The caption note for a thinned panel.
pub(crate) fn thinned_note(n: usize) -> String {
    if n > MAX_SCATTER {
        format!(
            " Panels with more than {MAX_SCATTER} points show every {}th (all values are in results.json).",
            n.div_ceil(MAX_SCATTER)
        )
    } else {
        String::new()
    }
}
