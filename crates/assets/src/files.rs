//! Small file-system helpers whose errors name the path.

use std::path::{Path, PathBuf};

use crate::error::{AssetError, Result};

pub(crate) fn create_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| AssetError::io(format!("creating {}", p.display()), e))
}

/// Rename `from` to `to`, creating `to`'s folder first.
pub(crate) fn move_into_place(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        create_dir(dir)?;
    }
    std::fs::rename(from, to)
        .map_err(|e| AssetError::io(format!("moving {} to {}", from.display(), to.display()), e))
}

pub(crate) fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| AssetError::io(format!("reading {}", p.display()), e))
}

/// The entries of a folder, sorted.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = |e| AssetError::io(format!("listing {}", dir.display()), e);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(listing)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(listing)?;
    entries.sort();
    Ok(entries)
}

pub(crate) fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub(crate) fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
