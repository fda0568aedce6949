//! [`HarvestError`]: everything a harvest can fail on; every message names
//! the model, hook, corpus file or store folder concerned.

use saelab_data::corpus::CorpusError;
use saelab_data::store::StoreError;
use saelab_fsio::FsError;
use saelab_lm::{LmError, Model};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// A config field is unusable (`field` is the [`super::HarvestConfig`]
    /// field name, so a CLI can name its flag).
    #[error("harvest config: {field} = {value}: {msg}")]
    Config {
        field: &'static str,
        value: String,
        msg: String,
    },
    #[error("model {model}: {err}")]
    Model { model: String, err: Box<LmError> },
    #[error("model {model}: forward pass on batch {batch}: {err}")]
    Forward {
        model: String,
        batch: u64,
        err: Box<LmError>,
    },
    #[error("model {model}: hook {hook} is missing from the forward pass output")]
    MissingHook { model: String, hook: String },
    #[error(
        "model {model}: hook {hook}: non-finite activation {value} at row {row} (position \
         {position}) of the harvest; the shard holding that row was not written to {store}"
    )]
    NonFinite {
        model: String,
        hook: String,
        /// Global row index in the harvest's row sequence.
        row: u64,
        position: usize,
        value: f32,
        store: PathBuf,
    },
    #[error("{corpus}: tokenizer failed: {msg}")]
    Tokenizer { corpus: PathBuf, msg: String },
    #[error("{corpus}: the corpus has fewer rows than the store already holds ({rows})")]
    CorpusShort { corpus: PathBuf, rows: u64 },
    #[error("{store}: harvest stopped on request with {rows} rows stored; run it again to resume")]
    Stopped { store: PathBuf, rows: u64 },
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl HarvestError {
    pub(crate) fn model(model: &Model, err: LmError) -> Self {
        HarvestError::Model {
            model: model.info.id.clone(),
            err: Box::new(err),
        }
    }
}
