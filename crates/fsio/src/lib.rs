//! Crash-safe file output, in one place for every crate: atomic writes (a
//! reader never sees a half-written file, a kill leaves the previous one),
//! whole or piece by piece ([`PendingFile`]), streamed sha256 of files, and
//! an advisory lock on a run folder so two runs never write into one.
//!
//! Hand-written on `std` (and `libc` for Linux's `sync_file_range`):
//! `tempfile::NamedTempFile::persist`
//! would do the rename but not the directory fsync or our temp naming, which
//! [`clean_stale_temps`] relies on to remove what a killed run left.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// An I/O failure with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: another saelab run holds this folder (lock file {lock}); wait for it or use another output folder")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("{path}: cannot serialize JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl FsError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        FsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, FsError>;

/// Marker in the names of our temp files (`.NAME.saelab-tmp.PID`).
const TMP_MARK: &str = ".saelab-tmp.";

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it (same file
/// system, so the rename is atomic) is written, synced and renamed over
/// `path`, then the directory is synced so the rename is durable. The temp
/// file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes]).map(|_| ())
}

/// [`write_atomic`] of several byte slices in order; returns the sha256
/// (hex) of what was written.
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let tmp = temp_path(path)?;
    let mut hasher = Sha256::new();
    let res = (|| {
        let f = File::create(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        for p in parts {
            hasher.update(p);
            w.write_all(p)?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::io(path, e));
    }
    sync_dir(parent_dir(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The temp file beside `path` that stands for it until it is renamed
/// over it (`.NAME.saelab-tmp.PID`, which [`clean_stale_temps`] knows).
fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| FsError::io(path, io::Error::other("no file name")))?;
    Ok(parent_dir(path).join(format!(
        ".{}{TMP_MARK}{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// A file written piece by piece at chosen offsets, then published
/// atomically like [`write_atomic`]: the bytes go to the temp file as they
/// arrive, so a large file (an activation shard) is never whole in memory
/// and its writing overlaps the work that produces it.
/// [`PendingFile::publish`] hashes the file by reading it back, syncs it
/// and renames it over `path`. Dropped unpublished (an error, a stop), it
/// removes its temp file; a killed process leaves the temp file for
/// [`clean_stale_temps`].
#[derive(Debug)]
pub struct PendingFile {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once published.
    file: Option<File>,
}

impl PendingFile {
    /// Creates (or truncates) the temp file of `path`.
    pub fn create(path: &Path) -> Result<PendingFile> {
        let tmp = temp_path(path)?;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| FsError::io(path, e))?;
        Ok(PendingFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("file already published"))
    }

    /// Writes `bytes` at `offset` (a gap before it reads as zeros), then
    /// asks the kernel to start writing them to disk, so that
    /// [`Self::publish`]'s sync does not wait for the whole file.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let res = (|| {
            let f = self.file()?;
            f.seek(io::SeekFrom::Start(offset))?;
            f.write_all(bytes)?;
            start_writeback(f, offset, bytes.len() as u64);
            Ok(())
        })();
        res.map_err(|e| FsError::io(&self.path, e))
    }

    /// Fills `buf` from `offset`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let res = (|| {
            let f = self.file()?;
            f.seek(io::SeekFrom::Start(offset))?;
            f.read_exact(buf)
        })();
        res.map_err(|e| FsError::io(&self.path, e))
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        let res = self.file().and_then(|f| f.set_len(len));
        res.map_err(|e| FsError::io(&self.path, e))
    }

    /// Hashes the file (read back from the start), syncs it, renames it
    /// over the final path and syncs the directory; returns the sha256
    /// (hex). On failure the temp file is removed.
    pub fn publish(mut self) -> Result<String> {
        let res = (|| {
            let mut f = self
                .file
                .take()
                .ok_or_else(|| io::Error::other("published twice"))?;
            f.seek(io::SeekFrom::Start(0))?;
            let sha = sha256_reader(&mut f)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&self.tmp, &self.path)?;
            Ok(sha)
        })();
        match res {
            Ok(sha) => {
                sync_dir(parent_dir(&self.path))?;
                Ok(sha)
            }
            Err(e) => {
                let _ = fs::remove_file(&self.tmp);
                Err(FsError::io(&self.path, e))
            }
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Starts the asynchronous writeback of a just-written range (Linux's
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; elsewhere a no-op): without
/// it the kernel holds a run's shard in the page cache until the final
/// sync, which then waits for all of it. Best effort: durability comes
/// from [`PendingFile::publish`]'s sync, so a failure here is ignored.
fn start_writeback(f: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor we own; it reads no
        // memory of ours.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len);
}

/// Serializes `value` as pretty JSON (with a final newline) and writes it
/// atomically.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| FsError::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// fsync a directory so a rename in it is durable (no-op off Unix).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let f = File::open(dir).map_err(|e| FsError::io(dir, e))?;
        f.sync_all().map_err(|e| FsError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// sha256 of a whole file, hex encoded (streamed, constant memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| FsError::io(path, e))?;
    sha256_reader(&mut file).map_err(|e| FsError::io(path, e))
}

/// sha256 of what `r` yields to its end, hex encoded.
fn sha256_reader(r: &mut impl Read) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 of bytes, hex encoded.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Removes temp files that [`write_atomic`] left in `dir` when a process
/// was killed mid-write (any PID but ours). Returns how many were removed.
pub fn clean_stale_temps(dir: &Path) -> Result<usize> {
    let own = format!("{TMP_MARK}{}", std::process::id());
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(FsError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(TMP_MARK) && !name.ends_with(&own) {
            fs::remove_file(entry.path()).map_err(|e| FsError::io(&entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// An exclusive advisory lock (`flock`) on a run folder, held until drop.
/// The kernel releases it when the process dies, so a killed run never
/// leaves a stale lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and locks `dir/.saelab.lock`; a folder held
    /// by another process is [`FsError::Locked`], at once (no waiting).
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        fs::create_dir_all(dir).map_err(|e| FsError::io(dir, e))?;
        let path = dir.join(".saelab.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FsError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(fs::TryLockError::WouldBlock) => Err(FsError::Locked {
                path: dir.to_path_buf(),
                lock: path,
            }),
            Err(fs::TryLockError::Error(e)) => Err(FsError::io(&path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_hashes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        let h = write_atomic_parts(&p, &[b"tw", b"o"]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(h, sha256_file(&p).unwrap());
        assert_eq!(h, sha256_bytes(b"two"));
        // sha256("two") computed independently (coreutils sha256sum).
        assert_eq!(
            h,
            "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
        );
        // No temp file left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    /// Pieces written out of order, over a gap and over each other, a
    /// move through `read_at`, then a truncation: the published file is
    /// the bytes built the same way in memory, and its hash is theirs.
    #[test]
    fn a_pending_file_publishes_what_was_written_where() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("shard.bin");
        fs::write(&p, b"old contents").unwrap();
        let mut f = PendingFile::create(&p).unwrap();
        let mut want = vec![0u8; 40];
        let mut put = |f: &mut PendingFile, at: usize, bytes: &[u8]| {
            f.write_at(at as u64, bytes).unwrap();
            want[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut f, 20, b"tail of the file....");
        put(&mut f, 0, b"head");
        put(&mut f, 22, b"IL");
        let mut moved = [0u8; 6];
        f.read_at(20, &mut moved).unwrap();
        assert_eq!(&moved, b"taIL o");
        put(&mut f, 8, &moved);
        f.set_len(30).unwrap();
        want.truncate(30);
        // Nothing is visible at the final path before publishing.
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        let sha = f.publish().unwrap();
        assert_eq!(fs::read(&p).unwrap(), want);
        assert_eq!(sha, sha256_bytes(&want));
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "a temp file is left"
        );
    }

    #[test]
    fn a_pending_file_dropped_unpublished_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("shard.bin");
        let mut f = PendingFile::create(&p).unwrap();
        f.write_at(0, b"half a shard").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        // An I/O error names the final path.
        let missing = d.path().join("no-such-folder/shard.bin");
        let err = PendingFile::create(&missing).unwrap_err();
        assert!(
            err.to_string().contains("no-such-folder/shard.bin"),
            "{err}"
        );
    }

    #[test]
    fn stale_temps_of_other_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".x.json.saelab-tmp.999999999"), b"half").unwrap();
        fs::write(d.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(clean_stale_temps(d.path()).unwrap(), 1);
        assert!(d.path().join("keep.json").exists());
    }

    #[test]
    fn a_locked_folder_refuses_a_second_lock() {
        let d = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(d.path()).unwrap();
        let second = DirLock::acquire(d.path());
        assert!(matches!(second, Err(FsError::Locked { .. })), "{second:?}");
        drop(first);
        DirLock::acquire(d.path()).unwrap();
    }
}
