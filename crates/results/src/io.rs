//! Reading and writing result files: the one place `results.json` and a
//! stage's `result.json` are written and read.

use crate::schema::Results;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A stage's own typed result file.
pub const STAGE_RESULT: &str = "result.json";
/// The study's results file, in the study folder.
pub const RESULTS_FILE: &str = "results.json";

/// Errors reading or writing result files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Fs(#[from] saelab_fsio::FsError),
    #[error("{path}: not a valid result file: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Writes a stage's `result.json` atomically.
pub fn write_stage_result<T: Serialize>(dir: &Path, r: &T) -> Result<(), ResultsError> {
    Ok(saelab_fsio::write_json_atomic(&dir.join(STAGE_RESULT), r)?)
}

/// Reads a stage's `result.json`.
pub fn read_stage_result<T: DeserializeOwned>(dir: &Path) -> Result<T, ResultsError> {
    read_json(&dir.join(STAGE_RESULT))
}

/// Writes `results.json` into the study folder; returns its path.
pub fn write(study_dir: &Path, r: &Results) -> Result<PathBuf, ResultsError> {
    let path = study_dir.join(RESULTS_FILE);
    saelab_fsio::write_json_atomic(&path, r)?;
    Ok(path)
}

/// Reads a `results.json` (gzip-compressed when its name ends in `.gz`).
pub fn read(path: &Path) -> Result<Results, ResultsError> {
    read_json(path)
}

/// Writes `r` gzip-compressed to `path` atomically (for slim copies).
pub fn write_gz(path: &Path, r: &Results) -> Result<(), ResultsError> {
    use std::io::Write;
    let json = serde_json::to_vec(r).map_err(|e| ResultsError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let bytes = gz
        .write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| saelab_fsio::FsError::io(path, e))?;
    Ok(saelab_fsio::write_atomic(path, &bytes)?)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ResultsError> {
    use std::io::Read;
    let bytes = std::fs::read(path).map_err(|e| saelab_fsio::FsError::io(path, e))?;
    let text = if path.extension().is_some_and(|x| x == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|e| ResultsError::Parse {
                path: path.to_path_buf(),
                message: format!("not gzip-compressed JSON: {e}"),
            })?;
        s
    } else {
        String::from_utf8(bytes).map_err(|e| ResultsError::Parse {
            path: path.to_path_buf(),
            message: format!("not UTF-8: {e}"),
        })?
    };
    serde_json::from_str(&text).map_err(|e| ResultsError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
