//! Multi-panel figures of line, scatter and bar series (the study's 12-panel
//! per-layer plots are a 4×3 [`Figure`]).

use crate::svg::{esc, fmt_tick, nice_ticks};
use std::fmt::Write;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const PW: f64 = 380.0;
const PH: f64 = 270.0;
const ML: f64 = 62.0;
const MR: f64 = 14.0;
const MT: f64 = 28.0;
const MB: f64 = 44.0;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesKind {
    Line,
    /// Dots of radius 1.6 px, semi-transparent (dense clouds stay readable).
    Scatter,
    /// Bars centred on x with this width in data units (histograms).
    Bars {
        width: f64,
    },
}

/// One named series of (x, y) points; non-finite points are skipped, and so
/// are non-positive ones on a log axis.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub kind: SeriesKind,
    pub points: Vec<(f64, f64)>,
    /// Fixed colour (e.g. one per layer across figures); `None` takes the
    /// palette colour of the series' index.
    pub color: Option<String>,
    pub dashed: bool,
}

impl Series {
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series::of(label, SeriesKind::Line, points)
    }
    pub fn scatter(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series::of(label, SeriesKind::Scatter, points)
    }
    pub fn bars(label: impl Into<String>, width: f64, points: Vec<(f64, f64)>) -> Self {
        Series::of(label, SeriesKind::Bars { width }, points)
    }
    fn of(label: impl Into<String>, kind: SeriesKind, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            kind,
            points,
            color: None,
            dashed: false,
        }
    }
    /// This series in a fixed colour.
    pub fn color(mut self, c: impl Into<String>) -> Self {
        self.color = Some(c.into());
        self
    }
    /// This series dashed (a line).
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// One plot area with axes.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub x_log: bool,
    pub y_log: bool,
    /// Whole-number x ticks only (layers, steps).
    pub x_integer: bool,
}

impl Panel {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Panel::default()
        }
    }
    pub fn with(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }
}

/// Panels on a grid of `cols` columns under a title.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub cols: usize,
    /// One x (y) range for every panel, so panels compare at a glance.
    pub share_x: bool,
    pub share_y: bool,
    /// One legend for the figure, above the panels (the series labels of
    /// all panels, first colour seen), instead of one inside each panel:
    /// it never covers data.
    pub legend_above: bool,
}

#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, log: bool, include_zero: bool) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let v = if log { v.log10() } else { v };
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if include_zero && !log {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        if hi - lo < 1e-12 {
            let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 0.5 };
            lo -= pad;
            hi += pad;
        } else {
            let pad = (hi - lo) * 0.04;
            if !(include_zero && lo == 0.0) {
                lo -= pad;
            }
            hi += pad;
        }
        Axis { lo, hi, log }
    }
    fn frac(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        (v - self.lo) / (self.hi - self.lo)
    }
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log && self.hi - self.lo < 1.0 {
            // Less than a decade: round linear values, placed on the log axis.
            let (lo, hi) = (10f64.powf(self.lo), 10f64.powf(self.hi));
            nice_ticks(lo, hi, 4)
                .into_iter()
                .filter(|&t| t > 0.0 && t >= lo && t <= hi)
                .map(|t| (t, fmt_tick(t)))
                .collect()
        } else if self.log {
            // Short ranges get 1-2-5 ticks so at least two show.
            let mults: &[f64] = if self.hi - self.lo < 2.0 {
                &[1.0, 2.0, 5.0]
            } else {
                &[1.0]
            };
            (self.lo.floor() as i64..=self.hi.ceil() as i64)
                .flat_map(|e| mults.iter().map(move |&m| (m, e)))
                .filter(|&(m, e)| {
                    let l = m.log10() + e as f64;
                    l >= self.lo - 1e-9 && l <= self.hi + 1e-9
                })
                .map(|(m, e)| {
                    let v = m * 10f64.powi(e as i32);
                    let label = if (-2..=3).contains(&e) {
                        fmt_tick(v)
                    } else {
                        format!("{m}e{e}")
                    };
                    (v, label)
                })
                .collect()
        } else {
            nice_ticks(self.lo, self.hi, 5)
                .into_iter()
                .map(|t| (t, fmt_tick(t)))
                .collect()
        }
    }
}

fn usable(p: &(f64, f64), xl: bool, yl: bool) -> bool {
    p.0.is_finite() && p.1.is_finite() && (!xl || p.0 > 0.0) && (!yl || p.1 > 0.0)
}

impl Figure {
    pub fn new(title: impl Into<String>, cols: usize) -> Self {
        Figure {
            title: title.into(),
            panels: vec![],
            cols,
            ..Figure::default()
        }
    }
    /// Shared x and y ranges across panels.
    pub fn shared(mut self) -> Self {
        self.share_x = true;
        self.share_y = true;
        self
    }
    /// One legend above the panels.
    pub fn legend_above(mut self) -> Self {
        self.legend_above = true;
        self
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> String {
        let cols = self.cols.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(cols).max(1);
        // Wide enough for the title at ≈ 8 px per character.
        let w = (cols as f64 * PW).max(self.title.chars().count() as f64 * 8.0 + 40.0);
        let legend = if self.legend_above {
            self.legend_entries()
        } else {
            vec![]
        };
        let (legend_svg, legend_h) = legend_svg(&legend, w);
        let top = 30.0 + legend_h;
        let h = rows as f64 * PH + top;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
            w / 2.0,
            esc(&self.title)
        );
        s.push_str(&legend_svg);
        let shared = self.shared_axes();
        for (i, p) in self.panels.iter().enumerate() {
            let ox = (i % cols) as f64 * PW;
            let oy = top + (i / cols) as f64 * PH;
            let (xa, ya) = panel_axes(p);
            let xa = shared.0.clone().filter(|_| self.share_x).unwrap_or(xa);
            let ya = shared.1.clone().filter(|_| self.share_y).unwrap_or(ya);
            panel_svg(&mut s, p, (ox, oy), (&xa, &ya), !self.legend_above);
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes the SVG atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<(), crate::ReportError> {
        Ok(saelab_fsio::write_atomic(path, self.to_svg().as_bytes())?)
    }

    /// Axes fitted to the points of every panel (log flags of the first).
    fn shared_axes(&self) -> (Option<Axis>, Option<Axis>) {
        let Some(first) = self.panels.first() else {
            return (None, None);
        };
        let (xl, yl) = (first.x_log, first.y_log);
        let all = || {
            self.panels
                .iter()
                .flat_map(|p| p.series.iter())
                .flat_map(|se| se.points.iter())
                .filter(move |q| usable(q, xl, yl))
        };
        let bars = self.panels.iter().any(has_bars);
        let pad = self.panels.iter().map(bar_pad).fold(0.0, f64::max);
        let xa = Axis::fit(all().flat_map(|q| [q.0 - pad, q.0 + pad]), xl, false);
        let ya = Axis::fit(all().map(|q| q.1), yl, bars);
        (Some(xa), Some(ya))
    }

    /// Distinct series labels with the colour and dash they are drawn in.
    fn legend_entries(&self) -> Vec<(String, String, bool)> {
        let mut out: Vec<(String, String, bool)> = Vec::new();
        for p in &self.panels {
            for (k, se) in p.series.iter().enumerate() {
                if !se.label.is_empty() && !out.iter().any(|e| e.0 == se.label) {
                    out.push((se.label.clone(), series_colour(se, k), se.dashed));
                }
            }
        }
        out
    }
}

/// The colour a series is drawn in: its own, or the palette's `k`-th.
fn series_colour(se: &Series, k: usize) -> String {
    se.color
        .clone()
        .unwrap_or_else(|| PALETTE[k % PALETTE.len()].to_string())
}

/// A legend laid out in rows across width `w`; returns it and its height.
fn legend_svg(entries: &[(String, String, bool)], w: f64) -> (String, f64) {
    if entries.is_empty() {
        return (String::new(), 0.0);
    }
    let mut s = String::new();
    let (mut x, mut y) = (ML, 40.0);
    for (label, c, dashed) in entries {
        let ew = 30.0 + 6.5 * label.chars().count() as f64;
        if x + ew > w - MR && x > ML {
            x = ML;
            y += 15.0;
        }
        let dash = if *dashed {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 4.0,
            x + 18.0,
            y - 4.0,
            x + 22.0,
            esc(label)
        );
        x += ew;
    }
    (s, y - 40.0 + 20.0)
}

fn has_bars(p: &Panel) -> bool {
    p.series
        .iter()
        .any(|se| matches!(se.kind, SeriesKind::Bars { .. }))
}

fn bar_pad(p: &Panel) -> f64 {
    p.series
        .iter()
        .filter_map(|se| match se.kind {
            SeriesKind::Bars { width } => Some(width / 2.0),
            _ => None,
        })
        .fold(0.0, f64::max)
}

/// Axes fitted to one panel's points.
fn panel_axes(p: &Panel) -> (Axis, Axis) {
    let pts = || {
        p.series
            .iter()
            .flat_map(|se| se.points.iter())
            .filter(|q| usable(q, p.x_log, p.y_log))
    };
    let pad = bar_pad(p);
    let xa = Axis::fit(pts().flat_map(|q| [q.0 - pad, q.0 + pad]), p.x_log, false);
    let ya = Axis::fit(pts().map(|q| q.1), p.y_log, has_bars(p));
    (xa, ya)
}

fn panel_svg(s: &mut String, p: &Panel, o: (f64, f64), axes: (&Axis, &Axis), legend: bool) {
    let ((ox, oy), (xa, ya)) = (o, axes);
    let (x0, y0) = (ox + ML, oy + MT);
    let (pw, ph) = (PW - ML - MR, PH - MT - MB);
    let px = |v: f64| x0 + xa.frac(v) * pw;
    let py = |v: f64| y0 + (1.0 - ya.frac(v)) * ph;
    let _ = write!(
        s,
        r##"<g><text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text><rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        x0 + pw / 2.0,
        oy + 16.0,
        esc(&p.title)
    );
    axes_svg(s, p, (x0, y0, pw, ph), (ox, oy), (xa, ya));
    // Clip to the plot area: a shared range may cut a series.
    let clip = format!("c{}_{}", ox as i64, oy as i64);
    let _ = write!(
        s,
        r#"<clipPath id="{clip}"><rect x="{x0}" y="{y0}" width="{pw}" height="{ph}"/></clipPath><g clip-path="url(#{clip})">"#
    );
    for (k, se) in p.series.iter().enumerate() {
        let c = series_colour(se, k);
        let good: Vec<&(f64, f64)> = se
            .points
            .iter()
            .filter(|q| usable(q, p.x_log, p.y_log))
            .collect();
        match se.kind {
            SeriesKind::Line => {
                let mut d = String::new();
                for (j, q) in good.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1}",
                        if j == 0 { "M" } else { "L" },
                        px(q.0),
                        py(q.1)
                    );
                }
                let dash = if se.dashed {
                    r#" stroke-dasharray="4 3""#
                } else {
                    ""
                };
                let _ = write!(
                    s,
                    r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.3"{dash}/>"#
                );
            }
            SeriesKind::Scatter => {
                for q in &good {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{c}" fill-opacity="0.55"/>"#,
                        px(q.0),
                        py(q.1)
                    );
                }
            }
            SeriesKind::Bars { width } => {
                let base = py(if p.y_log { 10f64.powf(ya.lo) } else { 0.0 });
                for q in &good {
                    let (xa_, xb_) = (px(q.0 - width / 2.0), px(q.0 + width / 2.0));
                    let top = py(q.1);
                    let _ = write!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{c}" fill-opacity="0.6"/>"#,
                        xa_,
                        top.min(base),
                        (xb_ - xa_).max(0.5),
                        (base - top).abs()
                    );
                }
            }
        }
    }
    s.push_str("</g>");
    if legend {
        panel_legend(s, p, x0 + pw, y0);
    }
    s.push_str("</g>");
}

/// Ticks, grid lines and axis labels of one panel.
fn axes_svg(
    s: &mut String,
    p: &Panel,
    area: (f64, f64, f64, f64),
    o: (f64, f64),
    axes: (&Axis, &Axis),
) {
    let ((x0, y0, pw, ph), (ox, oy), (xa, ya)) = (area, o, axes);
    let px = |v: f64| x0 + xa.frac(v) * pw;
    let py = |v: f64| y0 + (1.0 - ya.frac(v)) * ph;
    let whole = |t: &(f64, String)| !p.x_integer || t.0.fract() == 0.0;
    for (t, label) in xa.ticks().into_iter().filter(whole) {
        let x = px(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#444"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + ph,
            y0 + ph + 4.0,
            y0 + ph + 15.0,
            esc(&label)
        );
    }
    for (t, label) in ya.ticks() {
        let y = py(t);
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{x0}" y2="{y:.1}" stroke="#444"/><line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            x0 + pw,
            x0 - 6.0,
            y + 4.0,
            esc(&label)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        x0 + pw / 2.0,
        oy + PH - 10.0,
        esc(&p.x_label),
        ox + 14.0,
        y0 + ph / 2.0,
        esc(&p.y_label)
    );
}

/// The legend inside a panel's top-right corner (single-panel use).
fn panel_legend(s: &mut String, p: &Panel, right: f64, y0: f64) {
    for (k, se) in p.series.iter().enumerate() {
        if se.label.is_empty() {
            continue;
        }
        let c = series_colour(se, k);
        let ly = y0 + 12.0 + 13.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="3" fill="{c}"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            right - 12.0,
            ly - 4.0,
            right - 16.0,
            ly,
            esc(&se.label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points land where the axis mapping says, and bad points are dropped.
    #[test]
    fn renders_panels_and_skips_bad_points() {
        let mut f = Figure::new("t <1>", 2);
        f.panels.push(
            Panel::new("a", "x", "y")
                .with(Series::line(
                    "l",
                    vec![(0.0, 0.0), (1.0, 1.0), (2.0, f64::NAN)],
                ))
                .with(Series::scatter("", vec![(0.5, 0.5)])),
        );
        let mut logp = Panel::new("b", "x", "y");
        logp.y_log = true;
        logp.series.push(Series::bars(
            "h",
            1.0,
            vec![(1.0, 10.0), (2.0, 0.0), (3.0, 1000.0)],
        ));
        f.panels.push(logp);
        let svg = f.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        // Bars: the zero-height bar is dropped on the log axis.
        assert_eq!(svg.matches("fill-opacity=\"0.6\"").count(), 2);
        assert!(svg.contains(">10<") && svg.contains(">1000<"), "{svg}");
        // Two line points, none NaN.
        let path = svg
            .split("<path d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path.matches(['M', 'L']).count(), 2);
        assert!(!path.contains("NaN"));
    }

    /// Shared axes give every panel the same ticks; the legend above lists
    /// each label once; a log axis spanning less than a decade still has
    /// at least two ticks.
    #[test]
    fn shared_axes_legend_above_and_short_log_ticks() {
        let mut f = Figure::new("s", 2).shared().legend_above();
        f.panels.push(
            Panel::new("a", "x", "y").with(Series::line("one", vec![(0.0, 1.0), (1.0, 2.0)])),
        );
        f.panels.push(
            Panel::new("b", "x", "y").with(Series::line("one", vec![(0.0, 10.0), (5.0, 20.0)])),
        );
        let svg = f.to_svg();
        // Both panels tick up to 20 on y and 5 on x.
        assert_eq!(svg.matches(">20<").count(), 2, "{svg}");
        // x ticks 0..5 and y ticks 5..20 in both panels.
        assert_eq!(svg.matches(">5<").count(), 4, "{svg}");
        assert_eq!(svg.matches(">one<").count(), 1);
        let ax = Axis::fit([0.12, 0.35].into_iter(), true, false);
        assert!(ax.ticks().len() >= 2, "{:?}", ax.ticks());
    }

    /// An integer axis (layers) gets no fractional ticks.
    #[test]
    fn integer_x_ticks() {
        let mut panel =
            Panel::new("p", "layer", "y").with(Series::line("", vec![(1.0, 0.0), (3.0, 1.0)]));
        panel.x_integer = true;
        let f = Figure {
            title: "t".into(),
            panels: vec![panel],
            cols: 1,
            ..Figure::default()
        };
        let svg = f.to_svg();
        assert!(
            svg.contains(">2<") && !svg.contains(">1.5<") && !svg.contains(">2.5<"),
            "{svg}"
        );
    }
}
