//! Batch sources for training: [`StoreSource`] serves one hook of an
//! activation store to `saelab_sae::sweep` (which knows nothing of stores),
//! and [`train_from_store`] is the one call behind `saelab train` and the
//! study's training stage.

use saelab_data::store::{ActivationStore, BatchStream, StoreError, MANIFEST_FILE};
use saelab_fsio::FsError;
use saelab_sae::sweep::{
    self, BatchSource, PlanRequest, SourceError, SweepError, SweepProgress, SweepSettings,
    SweepSummary,
};
use saelab_sae::ExportMeta;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Why [`train_from_store`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Opening or reading the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing the manifest.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The sweep itself (plan, settings, resume, training, saving).
    #[error(transparent)]
    Sweep(#[from] SweepError),
    /// Packing the corpus or running the model (a streamed run).
    #[error(transparent)]
    Harvest(#[from] crate::harvest::HarvestError),
}

/// Shuffled batches of one hook of an activation store
/// ([`BatchStream`], endless: more steps than one pass start another epoch).
///
/// Its identity is the sha256 of `manifest.json` (which lists every
/// shard's sha256), the hook, the data seed and the buffer, not the path:
/// the same store reached by another path resumes the same run.
#[derive(Debug)]
pub struct StoreSource {
    store: ActivationStore,
    stream: BatchStream,
    path: PathBuf,
    hook: String,
    manifest_sha256: String,
    data_seed: u64,
    buffer_vectors: usize,
}

impl StoreSource {
    /// Opens `store` for `hook` (default: its first hook) in batches of
    /// `batch` vectors shuffled with `data_seed` through a buffer of
    /// `buffer_vectors` (raised to one batch).
    pub fn open(
        store: &Path,
        hook: Option<&str>,
        batch: usize,
        data_seed: u64,
        buffer_vectors: usize,
    ) -> Result<StoreSource, TrainError> {
        let opened = ActivationStore::open(store)?;
        let hook = match hook {
            Some(h) => h.to_string(),
            None => opened.spec().hooks.first().cloned().unwrap_or_default(),
        };
        let buffer_vectors = buffer_vectors.max(batch);
        let stream = BatchStream::new(&opened, &hook, batch, data_seed, None, buffer_vectors)?;
        let manifest_sha256 = saelab_fsio::sha256_file(&store.join(MANIFEST_FILE))?;
        Ok(StoreSource {
            store: opened,
            stream,
            path: store.to_path_buf(),
            hook,
            manifest_sha256,
            data_seed,
            buffer_vectors,
        })
    }

    /// The hook served.
    pub fn hook(&self) -> &str {
        &self.hook
    }

    /// The opened store.
    pub fn store(&self) -> &ActivationStore {
        &self.store
    }
}

impl BatchSource for StoreSource {
    fn d(&self) -> usize {
        self.store.spec().d
    }

    fn vectors_per_epoch(&self) -> Option<u64> {
        Some(self.stream.vectors_per_epoch())
    }

    fn skip(&mut self, batches: u64) -> Result<(), SourceError> {
        // The shuffle's state depends on counts only: the skip moves ids
        // and reads just the vectors still buffered afterwards.
        let done = self.stream.skip_batches(batches)?;
        if done < batches {
            return Err(format!(
                "{}: the batch stream ended after {done} of {batches} batches",
                self.path.display()
            )
            .into());
        }
        Ok(())
    }

    fn next_into(&mut self, batch: &mut Vec<f32>) -> Result<bool, SourceError> {
        Ok(self.stream.next_into(batch)?)
    }

    fn identity(&self) -> Value {
        json!({
            "kind": "activation_store",
            "manifest_sha256": self.manifest_sha256,
            "hook": self.hook,
            "data_seed": self.data_seed,
            "buffer_vectors": self.buffer_vectors,
        })
    }

    fn meta(&self) -> ExportMeta {
        let spec = self.store.spec();
        let mut extra = serde_json::Map::new();
        extra.insert("store".into(), json!(self.path.to_string_lossy()));
        ExportMeta {
            model_name: spec.model.id.clone(),
            hook_name: self.hook.clone(),
            context_size: spec.seq_len,
            prepend_bos: true,
            dataset_path: spec.dataset.name.clone(),
            extra,
        }
    }
}

/// Trains the SAEs of `plan` on `hook` of the store at `store` into `out`
/// with [`saelab_sae::sweep::run`]: resumes a run cut off in `out`, returns
/// at once if it is complete; raising `stop` checkpoints and returns
/// [`SweepError::Interrupted`].
pub fn train_from_store(
    store: &Path,
    hook: Option<&str>,
    plan: PlanRequest<'_>,
    settings: &SweepSettings,
    out: &Path,
    progress: &dyn SweepProgress,
    stop: &AtomicBool,
) -> Result<SweepSummary, TrainError> {
    settings.validate()?;
    let d = ActivationStore::open(store)?.spec().d;
    let plan = plan.resolve(d)?;
    let mut source = StoreSource::open(
        store,
        hook,
        settings.batch,
        settings.data_seed_for(&plan),
        settings.effective_buffer(),
    )?;
    Ok(sweep::run(
        out,
        &plan,
        settings,
        &mut source,
        progress,
        stop,
    )?)
}

#[cfg(test)]
mod tests;
