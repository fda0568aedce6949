//! Turns what the user typed for `--model` / `--dataset` into a loaded model
//! or a corpus path; the name resolution itself is `saelab_assets`'.

use anyhow::{Context, Result};
use saelab_lm::Model;
use std::path::PathBuf;

/// Load the model `spec` names: an offline name (fetched when missing), a
/// local file or folder, or a hub name.
pub fn model(spec: &str) -> Result<Model> {
    let path = saelab_assets::resolve_model(spec)?;
    let p = path.to_string_lossy().to_string();
    eprintln!("loading model {p}");
    Model::load(&p).with_context(|| format!("loading model `{spec}`"))
}

/// The corpus `spec` names: an offline corpus (fetched when missing) or an
/// existing file or folder.
pub fn corpus(spec: &str) -> Result<PathBuf> {
    Ok(saelab_assets::resolve_corpus(spec)?)
}
