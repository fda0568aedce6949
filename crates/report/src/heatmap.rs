//! Heatmaps of a labelled matrix (the study's Figure 13: matching ratios
//! between the SAEs of every pair of layers).

use crate::svg::{esc, fmt_tick};
use std::fmt::Write;

/// A rows×cols matrix with labels; `None` cells (e.g. the diagonal) are
/// drawn grey. Colour runs white → dark blue over [vmin, vmax].
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub title: String,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
    pub vmin: f64,
    pub vmax: f64,
    /// Print each value in its cell.
    pub annotate: bool,
}

fn colour(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!(
        "rgb({},{},{})",
        lerp(247.0, 8.0),
        lerp(251.0, 48.0),
        lerp(255.0, 107.0)
    )
}

impl Heatmap {
    pub fn to_svg(&self) -> String {
        let (nr, nc) = (self.row_labels.len(), self.col_labels.len());
        let cell = if nr.max(nc) > 30 { 14.0 } else { 36.0 };
        let label_w = 8.0
            + 6.5
                * self
                    .row_labels
                    .iter()
                    .chain(&self.col_labels)
                    .map(|l| l.chars().count())
                    .max()
                    .unwrap_or(1) as f64;
        let (x0, y0) = (label_w, 40.0 + label_w);
        // Wide enough for the title at ≈ 8 px per character.
        let w = (x0 + nc as f64 * cell + 90.0).max(self.title.chars().count() as f64 * 8.0 + 40.0);
        let h = y0 + nr as f64 * cell + 20.0;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="10"><rect width="100%" height="100%" fill="white"/><text x="{:.0}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
            w / 2.0,
            esc(&self.title)
        );
        let span = (self.vmax - self.vmin).max(1e-12);
        for (i, row) in self.values.iter().enumerate().take(nr) {
            for (j, v) in row.iter().enumerate().take(nc) {
                let (x, y) = (x0 + j as f64 * cell, y0 + i as f64 * cell);
                let fill = match v {
                    Some(v) if v.is_finite() => colour((v - self.vmin) / span),
                    _ => "#ccc".to_string(),
                };
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{cell}" height="{cell}" fill="{fill}"/>"#
                );
                if let (true, Some(v)) = (self.annotate && cell > 20.0, v) {
                    let dark = (v - self.vmin) / span > 0.55;
                    let _ = write!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">{}</text>"#,
                        x + cell / 2.0,
                        y + cell / 2.0 + 3.5,
                        if dark { "white" } else { "black" },
                        fmt_tick((v * 100.0).round() / 100.0)
                    );
                }
            }
        }
        for (i, l) in self.row_labels.iter().enumerate() {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 4.0,
                y0 + (i as f64 + 0.5) * cell + 3.5,
                esc(l)
            );
        }
        for (j, l) in self.col_labels.iter().enumerate() {
            let (x, y) = (x0 + (j as f64 + 0.5) * cell + 3.5, y0 - 4.0);
            let _ = write!(
                s,
                r#"<text transform="translate({x:.1},{y:.1}) rotate(-90)">{}</text>"#,
                esc(l)
            );
        }
        // Colour bar.
        let bx = x0 + nc as f64 * cell + 20.0;
        for k in 0..50 {
            let t = 1.0 - k as f64 / 49.0;
            let _ = write!(
                s,
                r#"<rect x="{bx:.1}" y="{:.1}" width="14" height="3.2" fill="{}"/>"#,
                y0 + k as f64 * 3.0,
                colour(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}">{}</text></svg>"#,
            bx + 18.0,
            y0 + 8.0,
            fmt_tick(self.vmax),
            bx + 18.0,
            y0 + 150.0,
            fmt_tick(self.vmin)
        );
        s
    }

    /// Writes the SVG atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<(), crate::ReportError> {
        Ok(saelab_fsio::write_atomic(path, self.to_svg().as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_colours() {
        let h = Heatmap {
            title: "r".into(),
            row_labels: vec!["L0".into(), "L1".into()],
            col_labels: vec!["L0".into(), "L1".into()],
            values: vec![vec![None, Some(1.0)], vec![Some(0.0), None]],
            vmin: 0.0,
            vmax: 1.0,
            annotate: true,
        };
        let svg = h.to_svg();
        assert_eq!(svg.matches("fill=\"#ccc\"").count(), 2);
        assert!(svg.contains(&colour(1.0)) && svg.contains("rgb(8,48,107)"));
        assert!(svg.contains("rgb(247,251,255)"));
    }
}
