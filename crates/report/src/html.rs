//! The HTML page a study report is: a self-contained document (inline
//! CSS and SVG, no script needed, no external request) built section by
//! section. Tables are real HTML tables, so numbers can be copied.

use crate::svg::esc;
use std::fmt::Write;

/// Page style: readable printed or on screen, no web fonts.
const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.group td{background:#fafafa}\
figure{margin:1.2em 0;overflow-x:auto}figure svg{max-width:100%;height:auto}figcaption{font-size:.9em;color:#444;max-width:900px}\
.missing{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em}\
.pub{color:#7a4a00}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}\
details{margin:.5em 0}code{font-size:.9em}";

/// A table: header cells, then rows of cells; cells are HTML-escaped
/// text, the first `left_cols` columns left-aligned.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub left_cols: usize,
    /// Header cells (by index) drawn as published values.
    pub published_cols: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str], left_cols: usize) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            left_cols,
            ..Table::default()
        }
    }

    fn to_html(&self) -> String {
        let class = |j: usize| {
            let mut c = Vec::new();
            if j < self.left_cols {
                c.push("l");
            }
            if self.published_cols.contains(&j) {
                c.push("pub");
            }
            if c.is_empty() {
                String::new()
            } else {
                format!(" class=\"{}\"", c.join(" "))
            }
        };
        let mut s = String::from("<table><thead><tr>");
        for (j, h) in self.header.iter().enumerate() {
            let _ = write!(s, "<th{}>{}</th>", class(j), esc(h));
        }
        s.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            s.push_str("<tr>");
            for (j, c) in row.iter().enumerate() {
                let _ = write!(s, "<td{}>{}</td>", class(j), esc(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>\n");
        s
    }
}

/// The page being built, and the figures to save beside it.
pub struct Page {
    html: String,
    /// (file name, SVG text) of every figure, in page order.
    pub figures: Vec<(String, String)>,
}

impl Page {
    pub fn new(title: &str) -> Page {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
            esc(title),
            esc(title)
        );
        Page {
            html,
            figures: Vec::new(),
        }
    }

    /// A section heading with an anchor.
    pub fn section(&mut self, id: &str, title: &str) {
        let _ = writeln!(self.html, "<h2 id=\"{}\">{}</h2>", esc(id), esc(title));
    }

    pub fn subsection(&mut self, title: &str) {
        let _ = writeln!(self.html, "<h3>{}</h3>", esc(title));
    }

    /// A paragraph of plain text.
    pub fn para(&mut self, text: &str) {
        let _ = writeln!(self.html, "<p>{}</p>", esc(text));
    }

    /// A note that a part of the study has no data, and why.
    pub fn missing(&mut self, text: &str) {
        let _ = writeln!(self.html, "<p class=\"missing\">{}</p>", esc(text));
    }

    pub fn table(&mut self, t: &Table) {
        self.html.push_str(&t.to_html());
    }

    /// Preformatted text, folded under a summary line.
    pub fn details(&mut self, summary: &str, text: &str) {
        let _ = writeln!(
            self.html,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(summary),
            esc(text)
        );
    }

    /// An inline figure with its caption; also saved as `file` beside the
    /// page. Element ids inside the SVG are prefixed with the figure's
    /// index, so figures inlined in one page never share an id.
    pub fn figure(&mut self, file: &str, svg: String, caption: &str) {
        let n = self.figures.len();
        let inline = svg
            .replace("id=\"", &format!("id=\"f{n}"))
            .replace("url(#", &format!("url(#f{n}"));
        let _ = writeln!(
            self.html,
            "<figure id=\"fig-{n}\">{}<figcaption>{} <a href=\"figures/{}\">SVG</a></figcaption></figure>",
            inline.trim_end(),
            esc(caption),
            esc(file)
        );
        self.figures.push((file.to_string(), svg));
    }

    /// The finished document.
    pub fn finish(mut self) -> (String, Vec<(String, String)>) {
        self.html.push_str("</body></html>\n");
        (self.html, self.figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_prefixes_ids() {
        let mut p = Page::new("a <b>");
        let mut t = Table::new(&["x", "y"], 1);
        t.rows.push(vec!["<i>".into(), "1".into()]);
        p.table(&t);
        let svg = r#"<svg><clipPath id="c1"/><g clip-path="url(#c1)"/></svg>"#.to_string();
        p.figure("a.svg", svg.clone(), "cap");
        p.figure("b.svg", svg, "cap");
        let (html, figs) = p.finish();
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
        assert!(html.contains("<td class=\"l\">&lt;i&gt;</td>"));
        assert!(html.contains("id=\"f0c1\"") && html.contains("url(#f1c1)"));
        assert_eq!(figs.len(), 2);
        // The saved SVGs keep their own ids.
        assert!(figs[1].1.contains("id=\"c1\""));
    }
}
