//! The on-disk activation store: what an LM harvest writes and SAE training
//! reads.
//!
//! # Layout
//!
//! A store is a directory:
//!
//! ```text
//! <dir>/manifest.json             StoreManifest (JSON, see `manifest`)
//! <dir>/shard-00000.safetensors   rows_per_shard token rows
//! <dir>/shard-00001.safetensors
//! ...                             the last shard may hold fewer rows
//! ```
//!
//! Every shard is a plain safetensors file, so `safetensors.numpy.load_file`
//! or `safetensors.torch.load_file` read it without saelab. It holds
//!
//! * `tokens`: `I32 [rows, seq_len]`, the exact token ids fed to the model;
//! * one tensor per hook point, named by the hook
//!   (`blocks.8.hook_resid_pre`): `[rows, seq_len, d]` in the store dtype
//!   (`F32`, `F16` or `BF16`, fixed when the store is created; activations
//!   arrive as `f32` and are rounded to nearest-even).
//!
//! The tensors are laid out `tokens` first, then the hooks in the order of
//! [`StoreSpec::hooks`]; the header is a fixed-order JSON object padded with
//! spaces to a multiple of 8 bytes and carries
//! `__metadata__ = {"format": "pt"}`. Shard bytes are therefore a pure
//! function of the rows pushed into them: a harvest that is killed and
//! resumed writes shards bitwise identical to an uninterrupted one.
//!
//! # Life cycle
//!
//! * [`StoreWriter::create_or_resume`] starts a store (writing an empty,
//!   incomplete manifest at once) or resumes an incomplete one whose
//!   [`StoreSpec`] matches; [`StoreWriter::rows_done`] tells the harvester
//!   how many rows to skip. A complete store is never rewritten: asking
//!   for what it holds is [`StoreError::AlreadyComplete`], asking for
//!   anything else is [`StoreError::CompleteSpecMismatch`].
//! * A shard is written to a temp file as its rows arrive
//!   ([`saelab_fsio::PendingFile`]), then hashed, fsynced and renamed; then
//!   the manifest is rewritten atomically. A crash leaves at worst a stray temp file or an
//!   unlisted shard, both deleted on resume.
//! * [`ActivationStore::open`] reads a complete store;
//!   [`ActivationStore::verify`] checks every shard's sha256;
//!   [`BatchStream`] streams shuffled training batches with bounded memory.
//!
//! # Example
//!
//! ```
//! use saelab_data::store::*;
//! # fn main() -> Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("store");
//! let spec = StoreSpec {
//!     model: ModelInfo { id: "gpt2".into(), hash: "sha256:…".into() },
//!     hooks: vec!["blocks.8.hook_resid_pre".into()],
//!     d: 4,
//!     dtype: StoreDtype::F16,
//!     seq_len: 2,
//!     packing: "concat".into(),
//!     dataset: DatasetInfo { name: "corpus.txt".into(), hash: "sha256:…".into() },
//!     pos_intervention: "none".into(),
//!     seed: 49,
//!     rows_per_shard: 2,
//!     target_rows: Some(3),
//!     extra: Default::default(),
//! };
//! let mut writer = StoreWriter::create_or_resume(&dir, spec)?;
//! for row in writer.rows_done()..3 {
//!     // harvest row `row`: seq_len token ids, seq_len * d activations per hook
//!     let tokens = [50256, row as u32];
//!     let acts = [0.5f32; 8];
//!     writer.push_rows(&tokens, &[&acts])?;
//! }
//! writer.finish()?;
//!
//! let store = ActivationStore::open(&dir)?;
//! store.verify()?;
//! let stream = BatchStream::new(&store, "blocks.8.hook_resid_pre", 2, 49, Some(1), 4)?;
//! for batch in stream {
//!     let batch: Vec<f32> = batch?; // [2, d]
//!     assert_eq!(batch.len(), 2 * 4);
//! }
//! # Ok(())
//! # }
//! ```

mod batches;
mod manifest;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use batches::{BatchStream, ShardProvider, ShardVectors};
pub use manifest::{
    DatasetInfo, ModelInfo, ShardInfo, StoreDtype, StoreManifest, StoreSpec, MANIFEST_FILE,
    STORE_FORMAT, STORE_FORMAT_VERSION,
};
pub use reader::{ActivationStore, ShardData, ShardReader};
pub use writer::StoreWriter;

/// Name of the tensor holding the token ids in every shard.
pub const TOKENS_TENSOR: &str = "tokens";

/// Everything that can go wrong with an activation store. Variants that
/// concern a file name it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no manifest.json: not an activation store (or not harvested yet)")]
    MissingManifest(PathBuf),
    #[error("{path}: invalid manifest: {msg}")]
    BadManifest { path: PathBuf, msg: String },
    #[error(
        "{path}: store format version {found} is not supported by this saelab \
         (it reads version {supported}); {hint}"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u32,
        hint: &'static str,
    },
    #[error(
        "{0}: the store is already complete and is never rewritten; use it as it \
         is, or delete the directory to harvest again"
    )]
    AlreadyComplete(PathBuf),
    #[error("{0}: a write failed earlier; reopen the store with create_or_resume to resume")]
    Poisoned(PathBuf),
    #[error("{0}: the store is incomplete (harvest interrupted?); resume the harvest first")]
    Incomplete(PathBuf),
    #[error(
        "{dir}: the existing store was harvested with a different spec, so it cannot \
         be resumed: {}; delete the directory or choose another one",
        .fields.join("; ")
    )]
    SpecMismatch { dir: PathBuf, fields: Vec<String> },
    #[error(
        "{dir}: the store is complete but holds something else than requested: {}; \
         a complete store is never rewritten: choose another directory or delete this one",
        .fields.join("; ")
    )]
    CompleteSpecMismatch { dir: PathBuf, fields: Vec<String> },
    #[error("{0}: holds shard files but no manifest.json; refusing to overwrite them")]
    NotAStore(PathBuf),
    #[error("{file}: shard listed in the manifest is missing")]
    MissingShard { file: PathBuf },
    #[error("{file}: checksum mismatch (expected {expected}, got {got})")]
    ChecksumMismatch {
        file: String,
        expected: String,
        got: String,
    },
    #[error("{file}: not a valid safetensors file: {msg}")]
    Safetensors { file: PathBuf, msg: String },
    #[error("{file}: tensor `{tensor}`: {msg}")]
    Tensor {
        file: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("invalid store spec: {0}")]
    BadSpec(String),
    #[error("push_rows: {0}")]
    BadInput(String),
    #[error("hook `{hook}` is not in the store (it holds: {})", .available.join(", "))]
    UnknownHook {
        hook: String,
        available: Vec<String>,
    },
    #[error("shard index {index} out of range: the store has {count} shards")]
    ShardIndex { index: usize, count: usize },
    #[error("batch stream: {0}")]
    BadStream(String),
    /// A failure of the shared file layer other than plain I/O (which maps
    /// to [`StoreError::Io`]).
    #[error(transparent)]
    Fs(saelab_fsio::FsError),
}

impl From<saelab_fsio::FsError> for StoreError {
    fn from(e: saelab_fsio::FsError) -> Self {
        match e {
            saelab_fsio::FsError::Io { path, source } => StoreError::Io { path, source },
            other => StoreError::Fs(other),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// File name of shard `index` (`shard-00003.safetensors`).
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.safetensors")
}

/// Whether `name` looks like a shard file this module writes (any index).
pub(crate) fn is_shard_file_name(name: &str) -> bool {
    name.strip_prefix("shard-")
        .and_then(|s| s.strip_suffix(".safetensors"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// sha256 of a whole file, hex encoded (streamed, constant memory).
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    Ok(saelab_fsio::sha256_file(path)?)
}
