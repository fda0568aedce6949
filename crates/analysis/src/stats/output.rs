//! File output shared by [`crate::stats`] and [`crate::eval`]: CSV tables
//! built with the `csv` crate, the number formatting of their cells, and
//! writing a folder of files atomically (`saelab_fsio::write_atomic`, so a
//! reader never sees a half-written table and a crash leaves the previous
//! file intact).

use saelab_fsio::FsError;
use std::path::Path;

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

/// A CSV table: a header and records of cells, `\n`-terminated, quoted only
/// where a cell needs it (a label with a comma).
pub fn csv_table<I, R>(header: &[&str], records: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .flexible(true)
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail (no I/O); a failure would be a bug in
    // the csv crate, and an empty table is the least harmful answer.
    let mut ok = w.write_record(header).is_ok();
    for r in records {
        ok = ok && w.write_record(r).is_ok();
    }
    let bytes = w.into_inner().unwrap_or_default();
    debug_assert!(ok, "csv into a Vec failed");
    String::from_utf8(bytes).unwrap_or_default()
}

/// Creates `dir` and writes each `(file name, contents)` into it
/// atomically.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), FsError> {
    std::fs::create_dir_all(dir).map_err(|e| FsError::io(dir, e))?;
    for (name, text) in files {
        saelab_fsio::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
