//! Turns what the user typed for `--model` / `--dataset` into files: offline
//! asset names (fetched when missing), local paths, or hub names.

use crate::assets;
use anyhow::{Context, Result};
use saelab_lm::Model;
use std::path::PathBuf;

/// Names that mean the offline default model.
const SMOLLM2_NAMES: &[&str] = &["smollm2-135m", "smollm2-135m-instruct", "smollm2"];

pub fn model(spec: &str) -> Result<Model> {
    let path = if SMOLLM2_NAMES.contains(&spec) {
        assets::ensure_model(&assets::default_root(), assets::DEFAULT_MODEL)?
    } else {
        PathBuf::from(spec)
    };
    let p = path.to_string_lossy().to_string();
    eprintln!("loading model {p}");
    Model::load(&p).with_context(|| format!("loading model `{spec}`"))
}

pub fn corpus(spec: &str) -> Result<PathBuf> {
    if assets::CORPORA.contains(&spec) {
        return assets::ensure_corpus(&assets::default_root(), spec);
    }
    let p = PathBuf::from(spec);
    if !p.exists() {
        anyhow::bail!(
            "dataset `{spec}`: no such file or folder, and not an offline corpus ({})",
            assets::CORPORA.join(", ")
        );
    }
    Ok(p)
}
