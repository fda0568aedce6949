//! File output shared by [`crate::stats`] and [`crate::eval`]: atomic writes
//! (temp file in the same directory, fsync, rename, so a reader never sees a
//! half-written table and a crash leaves the previous file intact) and the
//! number formatting of our CSV tables.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temp file `.{name}.tmp.{pid}`
/// beside it is written, synced and renamed over `path`. The temp file is
/// removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    // Same directory as the target, so the rename never crosses file
    // systems (which would make it a non-atomic copy).
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Creates `dir` and writes each `(file name, contents)` into it with
/// [`write_atomic`]; on failure, the path that failed and the error.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), (PathBuf, io::Error)> {
    fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for (name, text) in files {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|e| (path, e))?;
    }
    Ok(())
}

/// A CSV number: Rust's shortest round-trip form (`NaN`, `inf` as is).
pub fn num(v: f64) -> String {
    format!("{v}")
}

/// An optional CSV number; `None` is an empty cell.
pub fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_default()
}

/// The value at index `i` of an optional curve, as a CSV cell (empty when
/// the curve is absent or shorter).
pub fn cell(v: Option<&[f64]>, i: usize) -> String {
    opt(v.and_then(|c| c.get(i).copied()))
}

/// The value at index `i` of a curve of optional values.
pub fn cell_opt(v: Option<&[Option<f64>]>, i: usize) -> String {
    opt(v.and_then(|c| c.get(i).copied().flatten()))
}
