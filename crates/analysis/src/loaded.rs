//! SAEs as the analysis runs see them: loaded from any supported layout
//! (ours, SAELens, sparsify; weights checked finite by
//! `saelab_sae::load_sae`), tied to a hook point of the model, checked
//! against the model's shape, with the input centring they were trained on.

use crate::eval::input::saelens_center_writing_weights;
use saelab_lm::{HookPoint, LmError, Model};
use saelab_sae::{Sae, SaeError};
use std::path::{Path, PathBuf};

/// Errors loading SAEs for analysis; each names the SAE directory.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("give at least one SAE directory")]
    NoSaes,
    #[error("loading SAE {dir}: {source}")]
    Sae { dir: PathBuf, source: SaeError },
    #[error("{dir}: the SAE's config names no hook point; give one (--hook)")]
    NoHook { dir: PathBuf },
    #[error("{dir}: hook {hook:?}: {source}")]
    BadHook {
        dir: PathBuf,
        hook: String,
        source: Box<LmError>,
    },
    #[error("{dir}: hook {hook} is not in model {model} ({n_layers} layers): {source}")]
    HookNotInModel {
        dir: PathBuf,
        hook: String,
        model: String,
        n_layers: usize,
        source: Box<LmError>,
    },
    #[error("{dir}: SAE d_in {d_in} differs from the width {d_model} of model {model}")]
    Width {
        dir: PathBuf,
        d_in: usize,
        d_model: usize,
        model: String,
    },
    #[error(
        "{dir}: center_writing_weights is only meaningful for LayerNorm models (GPT-2), not {arch}"
    )]
    Center { dir: PathBuf, arch: String },
    #[error("{dir}: reading center_writing_weights: {msg}")]
    CenterCfg { dir: PathBuf, msg: String },
}

/// One SAE ready for a model pass.
pub struct LoadedSae {
    /// Short unique name (the directory's name), used for output folders.
    pub label: String,
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// The SAE.
    pub sae: Sae,
    /// The hook whose residual it reads (and where its reconstruction is
    /// spliced).
    pub hook: HookPoint,
    /// Feed row-centred residuals (SAELens `center_writing_weights`).
    pub center: bool,
}

/// Loads `dirs` for `model`. Each SAE reads the hook its config names, or
/// `hook_override`; `center` overrides what a SAELens cfg says about
/// `center_writing_weights` (default off). Labels are the directory names,
/// made unique by a `-i` suffix.
pub fn load_saes(
    dirs: &[PathBuf],
    hook_override: Option<&str>,
    center: Option<bool>,
    model: &Model,
) -> Result<Vec<LoadedSae>, LoadError> {
    if dirs.is_empty() {
        return Err(LoadError::NoSaes);
    }
    let mut out: Vec<LoadedSae> = Vec::new();
    for dir in dirs {
        let mut sae = load_one(dir, hook_override, center, model)?;
        if out.iter().any(|s| s.label == sae.label) {
            sae.label = format!("{}-{}", sae.label, out.len());
        }
        out.push(sae);
    }
    Ok(out)
}

fn load_one(
    dir: &Path,
    hook_override: Option<&str>,
    center_flag: Option<bool>,
    model: &Model,
) -> Result<LoadedSae, LoadError> {
    let sae_err = |source| LoadError::Sae {
        dir: dir.to_path_buf(),
        source,
    };
    let sae = saelab_sae::load_sae(dir).map_err(sae_err)?;
    let info = saelab_sae::sae_info(dir).map_err(sae_err)?;
    let hook = model_hook(dir, hook_override.or(info.hook_name.as_deref()), model)?;
    let d_in = sae.config().d_in;
    if d_in != model.info.d_model {
        return Err(LoadError::Width {
            dir: dir.to_path_buf(),
            d_in,
            d_model: model.info.d_model,
            model: model.info.id.clone(),
        });
    }
    let center = match center_flag {
        Some(c) => c,
        None if info.format.starts_with("saelens") => saelens_center_writing_weights(dir)
            .map_err(|e| LoadError::CenterCfg {
                dir: dir.to_path_buf(),
                msg: e.to_string(),
            })?
            .unwrap_or(false),
        None => false,
    };
    if center && model.info.arch != "gpt2" {
        return Err(LoadError::Center {
            dir: dir.to_path_buf(),
            arch: model.info.arch.clone(),
        });
    }
    Ok(LoadedSae {
        label: dir_label(dir),
        dir: dir.to_path_buf(),
        sae,
        hook,
        center,
    })
}

/// Parses `name` and checks the model has that hook.
fn model_hook(dir: &Path, name: Option<&str>, model: &Model) -> Result<HookPoint, LoadError> {
    let name = name.ok_or_else(|| LoadError::NoHook {
        dir: dir.to_path_buf(),
    })?;
    let hook: HookPoint = name.parse().map_err(|source| LoadError::BadHook {
        dir: dir.to_path_buf(),
        hook: name.to_string(),
        source: Box::new(source),
    })?;
    hook.check(model.info.n_layers)
        .map_err(|source| LoadError::HookNotInModel {
            dir: dir.to_path_buf(),
            hook: name.to_string(),
            model: model.info.id.clone(),
            n_layers: model.info.n_layers,
            source: Box::new(source),
        })?;
    Ok(hook)
}

fn dir_label(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().to_string())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "sae".to_string())
}
