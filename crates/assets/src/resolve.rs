//! What a user typed for `--model` / `--dataset` → a file: offline asset
//! names (fetched into [`crate::root`] when missing), else paths or hub
//! names as given.

use std::path::PathBuf;

use crate::error::{AssetError, Result};
use crate::hub::{is_hub_corpus, resolve_hub_corpus};
use crate::{ensure_corpus, ensure_model, root, CORPORA, DEFAULT_MODEL};

/// Names that mean the offline default model.
const SMOLLM2_NAMES: &[&str] = &["smollm2-135m", "smollm2-135m-instruct", "smollm2"];

/// Whether `spec` names the offline default model.
pub fn is_offline_model(spec: &str) -> bool {
    SMOLLM2_NAMES.contains(&spec)
}

/// Whether `spec` names an offline corpus.
pub fn is_offline_corpus(spec: &str) -> bool {
    CORPORA.contains(&spec)
}

/// An offline model name → its GGUF (fetched if missing); anything else
/// (a file, a folder, a hub name) is returned unchanged for the loader.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    if is_offline_model(spec) {
        ensure_model(&root(), DEFAULT_MODEL)
    } else {
        Ok(PathBuf::from(spec))
    }
}

/// An offline corpus name → its `.jsonl` (fetched if missing); a hub name
/// `hf:OWNER/NAME[/SUBDIR]` → a folder of its parquet shards (downloaded if
/// missing, see [`resolve_hub_corpus`]); else an existing file or folder; else an
/// error naming `spec` and the offline corpora.
pub fn resolve_corpus(spec: &str) -> Result<PathBuf> {
    if is_offline_corpus(spec) {
        return ensure_corpus(&root(), spec);
    }
    if is_hub_corpus(spec) {
        return resolve_hub_corpus(&root(), spec);
    }
    let p = PathBuf::from(spec);
    if !p.exists() {
        return Err(AssetError::NoSuchCorpus {
            spec: spec.to_string(),
        });
    }
    Ok(p)
}
