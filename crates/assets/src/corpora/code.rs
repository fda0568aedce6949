//! `code`: Rust's standard library and compiler sources from the Debian
//! package `rust-src`, one document per `.rs` file.

use std::path::{Path, PathBuf};

use super::text::lossy;
use crate::error::{AssetError, Result};
use crate::files::{file_len, list_dir, read};
use crate::jsonl::JsonlWriter;

/// Cap on the corpus (sum of the documents' bytes).
const CODE_MAX_BYTES: u64 = 20_000_000;
/// `.rs` files larger than this are machine-generated tables; skipped.
const CODE_MAX_FILE_BYTES: u64 = 256 * 1024;
/// Fewer files than this means the package layout changed.
const MIN_FILES: usize = 100;

/// Recursively list files under `dir` with extension `ext`, sorted.
fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in list_dir(dir)? {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| AssetError::io(format!("reading {}", p.display()), e))?;
        if meta.is_dir() {
            files_with_ext(&p, ext, out)?;
        } else if meta.is_file() && p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    Ok(())
}

/// The newest `usr/src/rustc-*` folder of the unpacked package.
fn rustc_base(tree: &Path) -> Result<PathBuf> {
    let src = tree.join("usr/src");
    if !src.is_dir() {
        return Err(AssetError::package(
            "rust-src",
            format!("no usr/src in the package ({})", src.display()),
        ));
    }
    let base = list_dir(&src)?.into_iter().rfind(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rustc-"))
    });
    let Some(base) = base else {
        return Err(AssetError::package(
            "rust-src",
            "no usr/src/rustc-* folder in the package",
        ));
    };
    if !base.join("library/core/src/lib.rs").is_file() {
        return Err(AssetError::package(
            "rust-src",
            format!(
                "{} has no library/core/src/lib.rs (package layout changed?)",
                base.display()
            ),
        ));
    }
    Ok(base)
}

/// `usr/src/rustc-*/library`, then `compiler`, skipping the generated
/// `library/stdarch` and files over 256 kB, up to [`CODE_MAX_BYTES`] in
/// total.
pub(crate) fn code_docs(tree: &Path, w: &mut JsonlWriter) -> Result<String> {
    let base = rustc_base(tree)?;
    let mut total = 0u64;
    let mut taken = 0usize;
    'outer: for sub in ["library", "compiler"] {
        let dir = base.join(sub);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        files_with_ext(&dir, "rs", &mut files)?;
        for f in files {
            if f.starts_with(base.join("library/stdarch")) || file_len(&f) > CODE_MAX_FILE_BYTES {
                continue;
            }
            let raw = read(&f)?;
            if total + raw.len() as u64 > CODE_MAX_BYTES {
                break 'outer;
            }
            total += raw.len() as u64;
            taken += 1;
            w.push(&lossy(&raw))?;
        }
    }
    if taken < MIN_FILES {
        return Err(AssetError::package(
            "rust-src",
            format!("only {taken} .rs files found under {}", base.display()),
        ));
    }
    let rel = base.strip_prefix(tree).unwrap_or(&base).display();
    Ok(format!(
        "/{rel}/{{library,compiler}}/**/*.rs (no library/stdarch, files <= 256 kB, first {} MB)",
        CODE_MAX_BYTES / 1_000_000
    ))
}
