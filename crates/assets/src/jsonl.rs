//! The corpus file format: one `{"text": …}` object per line, written by
//! [`JsonlWriter`], which skips empty documents and hashes as it goes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{AssetError, Result};

#[derive(serde::Serialize)]
struct Line<'a> {
    text: &'a str,
}

/// What [`JsonlWriter::finish`] reports.
pub(crate) struct JsonlStats {
    pub(crate) documents: u64,
    pub(crate) skipped_empty: u64,
    pub(crate) text_bytes: u64,
    pub(crate) file_bytes: u64,
    /// sha256 (hex) of the whole file.
    pub(crate) sha256: String,
}

pub(crate) struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    line: Vec<u8>,
    documents: u64,
    skipped_empty: u64,
    text_bytes: u64,
    file_bytes: u64,
}

impl JsonlWriter {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let f = File::create(path)
            .map_err(|e| AssetError::io(format!("creating {}", path.display()), e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            hasher: Sha256::new(),
            line: Vec::new(),
            documents: 0,
            skipped_empty: 0,
            text_bytes: 0,
            file_bytes: 0,
        })
    }

    fn write_error(&self, e: std::io::Error) -> AssetError {
        AssetError::io(format!("writing {}", self.path.display()), e)
    }

    /// Append one document (skipped, and counted, if blank).
    pub(crate) fn push(&mut self, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            self.skipped_empty += 1;
            return Ok(());
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Line { text })
            .map_err(|e| AssetError::json(format!("writing {}", self.path.display()), e))?;
        self.line.push(b'\n');
        if let Err(e) = self.out.write_all(&self.line) {
            return Err(self.write_error(e));
        }
        self.hasher.update(&self.line);
        self.documents += 1;
        self.text_bytes += text.len() as u64;
        self.file_bytes += self.line.len() as u64;
        Ok(())
    }

    /// Flush and fsync the file; the caller renames it into place.
    pub(crate) fn finish(mut self) -> Result<JsonlStats> {
        if let Err(e) = self.out.flush() {
            return Err(self.write_error(e));
        }
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| AssetError::io(format!("syncing {}", self.path.display()), e))?;
        Ok(JsonlStats {
            documents: self.documents,
            skipped_empty: self.skipped_empty,
            text_bytes: self.text_bytes,
            file_bytes: self.file_bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}
