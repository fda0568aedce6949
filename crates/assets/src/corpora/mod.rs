//! Building a corpus from a verified artifact: one builder per corpus pulls
//! documents out of the package into a `.jsonl`, then [`CorpusMeta`] is
//! written beside it (meta first, jsonl last: the jsonl marks completion).

mod code;
mod docs;
mod stdlib;
mod text;
mod wiki;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AssetError, Result};
use crate::fetch::Downloaded;
use crate::files::{human_bytes, move_into_place};
use crate::jsonl::{JsonlStats, JsonlWriter};
use crate::registry::dpkg_extract;
use crate::spec::{CorpusKind, CorpusSpec};
use crate::workdir::WorkDir;

#[cfg(test)]
pub(crate) use code::code_docs;
#[cfg(test)]
pub(crate) use docs::{docs_docs, strip_info_markup};
#[cfg(test)]
pub(crate) use wiki::WIKI_ENTRY;

/// `corpora/<name>.meta.json`: where a corpus came from and what it holds.
/// Fields are in alphabetical order, the order the file has always had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusMeta {
    /// Size of the `.jsonl` file.
    pub bytes: u64,
    pub created_by: String,
    pub documents: u64,
    /// Always `jsonl`.
    pub format: String,
    pub name: String,
    /// sha256 (hex) of the `.jsonl` file.
    pub sha256: String,
    /// Blank documents left out.
    pub skipped_empty: u64,
    pub source: CorpusSource,
    /// Sum of the documents' UTF-8 bytes.
    pub text_bytes: u64,
    /// Always `text`.
    pub text_field: String,
}

/// The registry package a corpus was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusSource {
    pub artifact_sha256: String,
    /// Which files of the package, and how they were cut into documents.
    pub files: String,
    pub package: String,
    pub registry: String,
    pub version: String,
}

impl CorpusMeta {
    /// Read the `.meta.json` beside corpus file `jsonl` (`x.jsonl` →
    /// `x.meta.json`).
    pub fn read_for(jsonl: &Path) -> Result<CorpusMeta> {
        let path = jsonl.with_extension("meta.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AssetError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| AssetError::json(format!("parsing {}", path.display()), e))
    }
}

/// Build corpus `spec` from the downloaded artifact, working in `work`.
pub(crate) fn build(
    root: &Path,
    spec: &CorpusSpec,
    art: &Downloaded,
    work: &WorkDir,
) -> Result<()> {
    let tmp_jsonl = work.path().join("corpus.jsonl");
    let mut w = JsonlWriter::create(&tmp_jsonl)?;
    let files = write_documents(spec.kind, art, work, &mut w)?;
    let stats = w.finish()?;
    if stats.documents == 0 {
        return Err(AssetError::EmptyCorpus { files });
    }
    let meta = meta(spec, art, files, &stats);
    let meta_path = spec.meta_path(root);
    if let Some(dir) = meta_path.parent() {
        crate::files::create_dir(dir)?;
    }
    saelab_fsio::write_json_atomic(&meta_path, &meta)?;
    move_into_place(&tmp_jsonl, &spec.final_path(root))?;
    eprintln!(
        "  {}: {} documents, {} of text ({} empty skipped)",
        spec.name,
        stats.documents,
        human_bytes(stats.text_bytes),
        stats.skipped_empty
    );
    Ok(())
}

/// Run the corpus's builder; returns its description of the files used.
fn write_documents(
    kind: CorpusKind,
    art: &Downloaded,
    work: &WorkDir,
    w: &mut JsonlWriter,
) -> Result<String> {
    match kind {
        CorpusKind::Email => stdlib::email_docs(&art.path, w),
        CorpusKind::Speeches => stdlib::speeches_docs(&art.path, w),
        CorpusKind::Fiction => stdlib::fiction_docs(&art.path, w),
        CorpusKind::Wiki => wiki::wiki_docs(&art.path, w),
        CorpusKind::Code | CorpusKind::Docs => {
            let tree = work.path().join("deb");
            dpkg_extract(&art.path, &tree)?;
            if kind == CorpusKind::Code {
                code::code_docs(&tree, w)
            } else {
                docs::docs_docs(&tree, w)
            }
        }
    }
}

fn meta(spec: &CorpusSpec, art: &Downloaded, files: String, stats: &JsonlStats) -> CorpusMeta {
    CorpusMeta {
        bytes: stats.file_bytes,
        created_by: concat!("saelab ", env!("CARGO_PKG_VERSION"), " fetch-assets").to_string(),
        documents: stats.documents,
        format: "jsonl".to_string(),
        name: spec.name.clone(),
        sha256: stats.sha256.clone(),
        skipped_empty: stats.skipped_empty,
        source: CorpusSource {
            artifact_sha256: art.sha256.clone(),
            files,
            package: art.package.clone(),
            registry: spec.artifact.registry.label().to_string(),
            version: art.version.clone(),
        },
        text_bytes: stats.text_bytes,
        text_field: "text".to_string(),
    }
}
