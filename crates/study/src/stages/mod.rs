//! The stage runners: each turns one planned [`Stage`] into files in its
//! cache folder by calling the library function that the matching CLI
//! subcommand calls too, and writes its typed `result.json`
//! ([`crate::results`]) for `results.json` to gather.

mod analysis;
mod harvest;
mod matching;
mod train;
mod umap;

use crate::exec::Ctx;
use crate::plan::{Stage, Work};
use saelab_lm::{Model, Precision};

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    pub fn msg(e: impl std::fmt::Display) -> StageError {
        StageError::Failed(e.to_string())
    }
}

/// Runs `stage`; returns its output files (relative to its folder).
pub fn run(ctx: &Ctx, stage: &Stage) -> Result<Vec<String>, StageError> {
    let dir = ctx.cache.stage_dir(stage);
    std::fs::create_dir_all(&dir)
        .map_err(|e| StageError::msg(format!("{}: {e}", dir.display())))?;
    // Harvest and train lock their own folders; analyses are locked here.
    let lock = |dir: &std::path::Path| saelab_fsio::DirLock::acquire(dir).map_err(StageError::msg);
    match &stage.work {
        Work::Harvest(w) => harvest::run(ctx, w, &dir),
        Work::Train(w) => train::run(ctx, stage, w, &dir),
        Work::Eval(w) => {
            let _l = lock(&dir)?;
            analysis::eval(ctx, w, &dir)
        }
        Work::Stats(w) => {
            let _l = lock(&dir)?;
            analysis::stats(ctx, w, &dir)
        }
        Work::Match(w) => {
            let _l = lock(&dir)?;
            matching::run(ctx, w, &dir)
        }
        Work::Umap(w) => {
            let _l = lock(&dir)?;
            umap::run(ctx, w, &dir)
        }
    }
}

/// Loads the study's model (fetching the offline one when missing) in its
/// precision.
pub(crate) fn load_model(name: &str, precision: &str) -> Result<Model, StageError> {
    let path = saelab_assets::resolve_model(name).map_err(StageError::msg)?;
    let mut model = Model::load(&path.to_string_lossy())
        .map_err(|e| StageError::msg(format!("loading model `{name}`: {e}")))?;
    model.set_precision(if precision == "bf16" {
        Precision::Bf16
    } else {
        Precision::F32
    });
    Ok(model)
}

/// A corpus source as a local path (offline names fetched, `hf:` names
/// resolved through the hub).
pub(crate) fn corpus_path(source: &str) -> Result<std::path::PathBuf, StageError> {
    saelab_assets::resolve_corpus(source).map_err(StageError::msg)
}
