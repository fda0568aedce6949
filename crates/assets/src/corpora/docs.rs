//! `docs`: the Python documentation in GNU info format from the Debian
//! package `python3.X-doc`, one document per info node.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::text::lossy;
use crate::error::{AssetError, Result};
use crate::files::list_dir;
use crate::jsonl::JsonlWriter;

/// Texinfo's marker of an index node (`^@^H[index^@^H]`).
const INFO_INDEX_MARK: &str = "\u{0}\u{8}[index\u{0}\u{8}]";
/// Fewer nodes than this means the package layout changed.
const MIN_NODES: usize = 100;

/// Remove texinfo's in-band markup spans `^@^H[…^@^H]` (images, index).
pub(crate) fn strip_info_markup(text: &str) -> String {
    const OPEN: &str = "\u{0}\u{8}[";
    const CLOSE: &str = "\u{0}\u{8}]";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        match rest[i..].find(CLOSE) {
            Some(j) => rest = &rest[i + j + CLOSE.len()..],
            None => {
                rest = &rest[i + OPEN.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `python*.info*.gz` files of one manual, in order: `(base, part,
/// path)` with part 0 for an unsplit `python3.11.info.gz` and 1, 2, … for
/// `python3.11.info-1.gz`, …; the first manual by name wins.
fn info_parts(info: &Path) -> Result<(String, Vec<PathBuf>)> {
    if !info.is_dir() {
        return Err(AssetError::package(
            "python doc",
            format!("no usr/share/info in the package ({})", info.display()),
        ));
    }
    let mut parts: Vec<(String, u32, PathBuf)> = Vec::new();
    for p in list_dir(info)? {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        if !name.starts_with("python") {
            continue;
        }
        if let Some(base) = stem.strip_suffix(".info") {
            parts.push((base.to_string(), 0, p));
        } else if let Some((base, n)) = stem.rsplit_once(".info-") {
            if let Ok(n) = n.parse::<u32>() {
                parts.push((base.to_string(), n, p));
            }
        }
    }
    parts.sort();
    let Some(first) = parts.first() else {
        return Err(AssetError::package(
            "python doc",
            format!("no python*.info.gz in {}", info.display()),
        ));
    };
    let base = first.0.clone();
    let files = parts
        .into_iter()
        .filter(|(b, _, _)| *b == base)
        .map(|(_, _, p)| p)
        .collect();
    Ok((base, files))
}

fn gunzip(p: &Path) -> Result<String> {
    let f = File::open(p).map_err(|e| AssetError::io(format!("opening {}", p.display()), e))?;
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(BufReader::new(f))
        .read_to_end(&mut raw)
        .map_err(|e| AssetError::io(format!("gunzipping {}", p.display()), e))?;
    Ok(lossy(&raw))
}

/// The prose of one info node: `None` for the tag table, indirect table,
/// local variables and the index node (a huge list of links); else the
/// body without the `File: …` header line.
fn node_body(node: &str) -> Option<&str> {
    let node = node.trim_start_matches(['\n', '\r', '\u{c}']);
    if node.starts_with("Tag Table:")
        || node.starts_with("End Tag Table")
        || node.starts_with("Indirect:")
        || node.starts_with("Local Variables")
    {
        return None;
    }
    let body = match node.split_once('\n') {
        Some((header, body)) if header.starts_with("File:") => body,
        _ => node,
    };
    (!body.contains(INFO_INDEX_MARK)).then_some(body)
}

/// `usr/share/info/python3*.info*.gz`, one document per info node, without
/// texinfo's image markers.
pub(crate) fn docs_docs(tree: &Path, w: &mut JsonlWriter) -> Result<String> {
    let (base, files) = info_parts(&tree.join("usr/share/info"))?;
    let mut nodes = 0usize;
    for p in &files {
        let text = gunzip(p)?;
        // The part before the first node separator is the file preamble.
        for body in text.split('\u{1f}').skip(1).filter_map(node_body) {
            nodes += 1;
            w.push(strip_info_markup(body).trim_matches('\n'))?;
        }
    }
    if nodes < MIN_NODES {
        return Err(AssetError::package(
            "python doc",
            format!("only {nodes} info nodes found in {base}.info"),
        ));
    }
    Ok(format!(
        "/usr/share/info/{base}.info*.gz (one document per info node)"
    ))
}
