//! SAEs as the analysis commands see them: loaded from any supported layout,
//! tied to a hook point of the model, checked against the model's shape.

use anyhow::{bail, Context, Result};
use saelab_analysis::eval::input::saelens_center_writing_weights;
use saelab_lm::{HookPoint, Model};
use saelab_sae::Sae;
use std::path::{Path, PathBuf};

/// One SAE ready for a model pass.
pub struct LoadedSae {
    /// Short unique name (the directory's name), used for output folders.
    pub label: String,
    pub dir: PathBuf,
    pub sae: Sae,
    pub hook: HookPoint,
    /// Feed row-centred residuals (SAELens `center_writing_weights`).
    pub center: bool,
}

/// Loads `dirs`, reads each one's hook (or takes `hook_override`) and checks
/// it exists in `model` and that d_in is the model's width.
pub fn load(
    dirs: &[PathBuf],
    hook_override: Option<&str>,
    center_flag: Option<bool>,
    model: &Model,
) -> Result<Vec<LoadedSae>> {
    if dirs.is_empty() {
        bail!("give at least one --sae DIR");
    }
    let mut out: Vec<LoadedSae> = Vec::new();
    for dir in dirs {
        let sae =
            saelab_sae::load_sae(dir).with_context(|| format!("loading SAE {}", dir.display()))?;
        let info = saelab_sae::sae_info(dir)
            .with_context(|| format!("reading the config of {}", dir.display()))?;
        let hook_name = match (hook_override, &info.hook_name) {
            (Some(h), _) => h.to_string(),
            (None, Some(h)) => h.clone(),
            (None, None) => bail!(
                "{}: the SAE's config names no hook point; pass --hook",
                dir.display()
            ),
        };
        let hook: HookPoint = hook_name
            .parse()
            .with_context(|| format!("{}: hook {hook_name:?}", dir.display()))?;
        hook.check(model.info.n_layers).with_context(|| {
            format!(
                "{}: hook {hook_name} is not in model {} ({} layers)",
                dir.display(),
                model.info.id,
                model.info.n_layers
            )
        })?;
        let d_in = sae.config().d_in;
        if d_in != model.info.d_model {
            bail!(
                "{}: SAE d_in {d_in} differs from the width {} of model {}",
                dir.display(),
                model.info.d_model,
                model.info.id
            );
        }
        let center = match center_flag {
            Some(c) => c,
            None if info.format.starts_with("saelens") => {
                saelens_center_writing_weights(dir)?.unwrap_or(false)
            }
            None => false,
        };
        if center && model.info.arch != "gpt2" {
            bail!(
                "{}: center_writing_weights is only meaningful for LayerNorm models (GPT-2), not {}",
                dir.display(),
                model.info.arch
            );
        }
        let mut label = dir_label(dir);
        if out.iter().any(|s| s.label == label) {
            label = format!("{label}-{}", out.len());
        }
        out.push(LoadedSae {
            label,
            dir: dir.clone(),
            sae,
            hook,
            center,
        });
    }
    Ok(out)
}

fn dir_label(dir: &Path) -> String {
    dir.file_name()
        .map(|s| s.to_string_lossy().to_string())
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "sae".to_string())
}
