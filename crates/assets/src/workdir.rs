//! Work folders under `<root>/.tmp/`, named `<label>.<pid>.<n>`: removed on
//! drop, and by [`clean_stale_tmp`] on a later run if the process died.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{AssetError, Result};
use crate::files::create_dir;

/// A fresh directory under `.tmp/`, removed on drop.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    pub(crate) fn new(tmp_root: &Path, label: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = tmp_root.join(format!("{label}.{}.{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| AssetError::io(format!("removing {}", path.display()), e))?;
        }
        create_dir(&path)?;
        Ok(WorkDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Remove `.tmp/<label>.<pid>.<n>` entries of processes that no longer run
/// (Linux `/proc`; elsewhere nothing is removed). Best effort: a leftover
/// costs only disk space, never correctness.
pub(crate) fn clean_stale_tmp(root: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root.join(".tmp")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The pid in a `<label>.<pid>.<n>` name; `None` for anything else.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '.');
    let (Some(_n), Some(pid), Some(_label)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    pid.parse().ok()
}
