//! [`AssetError`]: every way fetching or resolving an asset can fail.
//!
//! Each message is one self-contained line naming the asset, artifact, file
//! or archive entry and the problem. Inner errors are part of the message
//! and deliberately not exposed as `source()`: the CLI prints with `{:#}`,
//! which would otherwise repeat them.

use std::path::PathBuf;

use saelab_fsio::FsError;

use crate::{CORPORA, MODELS};

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("unknown model `{name}` (known: {})", MODELS.join(", "))]
    UnknownModel { name: String },
    #[error("unknown corpus `{name}` (known: {})", CORPORA.join(", "))]
    UnknownCorpus { name: String },
    #[error(
        "unknown asset `{name}` (models: {}; corpora: {})",
        MODELS.join(", "),
        CORPORA.join(", ")
    )]
    UnknownAsset { name: String },
    #[error(
        "dataset `{spec}`: no such file or folder, and not an offline corpus ({})",
        CORPORA.join(", ")
    )]
    NoSuchCorpus { spec: String },
    #[error("`{spec}` is not a hub dataset name ({problem}); expected hf:OWNER/NAME or hf:OWNER/NAME/SUBDIR")]
    BadHubName { spec: String, problem: String },
    /// The hub could not be reached or refused a request for `dataset`.
    #[error(
        "dataset `{dataset}`: hub: {action}: {err}; without a reachable hub, \
         download the dataset's parquet files and give their folder as `source`"
    )]
    Hub {
        dataset: String,
        action: String,
        err: Box<hf_hub::api::sync::ApiError>,
    },
    #[error(
        "dataset `{dataset}`: no .parquet files{place} in revision(s) {revisions}; \
         download the dataset's parquet files and give their folder as `source`"
    )]
    HubNoParquet {
        dataset: String,
        place: String,
        revisions: String,
    },

    /// Fetching asset `asset` failed (download or verification).
    #[error("{asset}: {cause}")]
    Asset {
        asset: String,
        cause: Box<AssetError>,
    },
    /// Building asset `asset` from a verified artifact failed.
    #[error("{asset}: building from {package} {version}: {cause}")]
    Build {
        asset: String,
        package: String,
        version: String,
        cause: Box<AssetError>,
    },
    #[error("could not fetch: {}", names.join(", "))]
    FetchFailed { names: Vec<String> },

    /// The downloaded file does not have the pinned hash.
    #[error("{artifact}: sha256 mismatch for {file}: expected {expected}, got {actual}")]
    Checksum {
        artifact: String,
        file: PathBuf,
        expected: String,
        actual: String,
    },
    /// A Debian download turned out to be another package.
    #[error("{artifact}: {file} is package `{package}`")]
    WrongPackage {
        artifact: String,
        file: PathBuf,
        package: String,
    },
    /// The registry client did not leave exactly one artifact file.
    #[error("{artifact}: download: {problem}")]
    Download { artifact: String, problem: String },
    #[error("{artifact}: cannot download: pip is not installed (tried pip3, pip, python3 -m pip)")]
    NoPip { artifact: String },
    #[error(
        "{cause}; this corpus needs apt-get and dpkg-deb (Debian/Ubuntu), leave it out with --only"
    )]
    NoApt { cause: Box<AssetError> },
    #[error("{}; if the package lists are empty, run `apt-get update` first", tried.join("; "))]
    DebianNotFound { tried: Vec<String> },

    /// An external program (registry client, `dpkg-deb`) is not on PATH.
    #[error("{what}: `{program}` is not installed (not found on PATH)")]
    NotInstalled { what: String, program: String },
    #[error("{what}: cannot run `{command}`: {err}")]
    Spawn {
        what: String,
        command: String,
        err: std::io::Error,
    },
    /// An external program failed; `last` is the last line it printed.
    #[error("{what}: `{command}` failed ({status}): {last}")]
    CommandFailed {
        what: String,
        command: String,
        status: std::process::ExitStatus,
        last: String,
    },

    #[error("{archive} is not a readable {kind}: {problem}")]
    BadArchive {
        archive: PathBuf,
        kind: &'static str,
        problem: String,
    },
    #[error("{archive} has no `{entry}`")]
    MissingEntry { archive: PathBuf, entry: String },
    #[error("{entry} in {archive} is not a GGUF file")]
    NotGguf { entry: String, archive: PathBuf },
    /// The package's content is not what the corpus builder expects (the
    /// package changed): `what` names the package or entry.
    #[error("{what}: {problem}")]
    Package { what: String, problem: String },
    #[error("no documents found ({files})")]
    EmptyCorpus { files: String },

    /// An I/O failure; `what` says what was being done to which file.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("{what}: {err}")]
    Json {
        what: String,
        err: serde_json::Error,
    },
    #[error("{0}")]
    Fs(FsError),
}

impl From<FsError> for AssetError {
    fn from(e: FsError) -> Self {
        AssetError::Fs(e)
    }
}

impl AssetError {
    /// An I/O error with what was being done (`"opening /x"`).
    pub(crate) fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        AssetError::Io {
            what: what.into(),
            err,
        }
    }

    pub(crate) fn json(what: impl Into<String>, err: serde_json::Error) -> Self {
        AssetError::Json {
            what: what.into(),
            err,
        }
    }

    pub(crate) fn package(what: impl Into<String>, problem: impl Into<String>) -> Self {
        AssetError::Package {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, AssetError>;
