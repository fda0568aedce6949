//! [`StoreWriter`]: cuts pushed rows into shards of exactly
//! `rows_per_shard` rows and writes every shard and manifest atomically
//! (temp file, fsync, rename, fsync of the directory).
//!
//! A shard's activations go to its temp file ([`saelab_fsio::PendingFile`])
//! as they are pushed, at the offsets of the shard's planned size
//! (`rows_per_shard` rows, or fewer for the last shard of a target): a
//! harvest holds no shard in memory (a 1024-row SmolLM2 shard is 302 MB of
//! f32), and the disk writes happen during the forward passes instead of
//! all at once after the last one. The tokens (4 bytes a position) are held
//! until the shard is complete, then written with the header. A shard that
//! ends short of its plan (the corpus ran out) is compacted in place: its
//! header is no longer and every tensor's offset no later than the plan's,
//! so each tensor moves towards the start of the file.
//!
//! Resume contract: the manifest of an incomplete store lists only full
//! shards, so after [`StoreWriter::create_or_resume`] the harvester skips
//! [`StoreWriter::rows_done`] rows of its (deterministic) row sequence and
//! pushes the rest. Rows of a shard that was not complete when the process
//! died (in a temp file, deleted on resume) are simply pushed again. Shard
//! bytes depend only on the rows they hold, so the result is bitwise
//! identical to an uninterrupted run.

use std::path::{Path, PathBuf};

use saelab_fsio::PendingFile;

use super::manifest::{ShardInfo, StoreManifest, StoreSpec, MANIFEST_FILE};
use super::{is_shard_file_name, sha256_file, shard_file_name, Result, StoreError, TOKENS_TENSOR};

/// Writes (or resumes writing) an activation store.
#[derive(Debug)]
pub struct StoreWriter {
    dir: PathBuf,
    manifest: StoreManifest,
    resumed: bool,
    /// The shard being filled (`None` between shards).
    open: Option<OpenShard>,
    /// Encoding scratch for one push's activations of one hook.
    scratch: Vec<u8>,
    /// A shard or manifest write failed: the in-memory state may not match
    /// the disk any more, so the writer refuses further work.
    poisoned: bool,
}

impl StoreWriter {
    /// Start a store in `dir` (created if needed), or resume the incomplete
    /// store there.
    ///
    /// * complete manifest with an equal spec → [`StoreError::AlreadyComplete`];
    /// * complete manifest with another spec →
    ///   [`StoreError::CompleteSpecMismatch`] naming the differing fields (a
    ///   complete store is final, but a request it does not satisfy is an
    ///   error, not "nothing to do");
    /// * incomplete manifest with an equal spec → resume: the listed shards'
    ///   checksums are verified, stray `*.tmp` files and unlisted shards are
    ///   deleted, and [`Self::rows_done`] reports the rows already stored;
    /// * incomplete manifest with another spec → [`StoreError::SpecMismatch`]
    ///   naming the differing fields;
    /// * no manifest → a new store (refused if shard files are lying there).
    pub fn create_or_resume(dir: impl AsRef<Path>, spec: StoreSpec) -> Result<StoreWriter> {
        let dir = dir.as_ref().to_path_buf();
        spec.validate()?;
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let (manifest, resumed) = match StoreManifest::load(&dir) {
            Ok(m) => {
                let fields = m.spec.diff(&spec);
                match (m.complete, fields.is_empty()) {
                    (true, true) => return Err(StoreError::AlreadyComplete(dir)),
                    (true, false) => return Err(StoreError::CompleteSpecMismatch { dir, fields }),
                    (false, false) => return Err(StoreError::SpecMismatch { dir, fields }),
                    (false, true) => {}
                }
                check_resumable(&dir, &m)?;
                remove_strays(&dir, m.shards.len())?;
                (m, true)
            }
            Err(StoreError::MissingManifest(_)) => {
                if let Some(name) = list_dir(&dir)?.into_iter().find(|n| is_shard_file_name(n)) {
                    return Err(StoreError::NotAStore(dir.join(name)));
                }
                remove_strays(&dir, 0)?;
                let m = StoreManifest::new(spec);
                write_manifest(&dir, &m)?;
                (m, false)
            }
            Err(e) => return Err(e),
        };
        Ok(StoreWriter {
            dir,
            manifest,
            resumed,
            open: None,
            scratch: Vec::new(),
            poisoned: false,
        })
    }

    /// Rows accepted so far (stored in shards + in the open shard). Right
    /// after [`Self::create_or_resume`] this is the number of rows the
    /// harvester must skip.
    pub fn rows_done(&self) -> u64 {
        self.manifest.rows + self.open_rows() as u64
    }

    /// Rows in the shard being filled.
    fn open_rows(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.rows)
    }

    /// Rows safely on disk (listed in the manifest).
    pub fn rows_persisted(&self) -> u64 {
        self.manifest.rows
    }

    /// Rows still wanted to reach `target_rows` (`None` without a target).
    pub fn remaining_rows(&self) -> Option<u64> {
        self.manifest
            .spec
            .target_rows
            .map(|t| t.saturating_sub(self.rows_done()))
    }

    /// Whether an existing incomplete store was resumed.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spec the store is written with.
    pub fn spec(&self) -> &StoreSpec {
        &self.manifest.spec
    }

    /// The manifest as last written to disk.
    pub fn manifest(&self) -> &StoreManifest {
        &self.manifest
    }

    /// Append `rows = tokens.len() / seq_len` token rows: `tokens` is
    /// `[rows, seq_len]`, `acts[h]` is `[rows, seq_len, d]` for hook `h` of
    /// the spec (same order). A shard is written each time
    /// `rows_per_shard` rows have accumulated. Pushing past `target_rows`
    /// is an error.
    pub fn push_rows(&mut self, tokens: &[u32], acts: &[&[f32]]) -> Result<()> {
        self.check_poisoned()?;
        let spec = &self.manifest.spec;
        let (seq_len, d) = (spec.seq_len, spec.d);
        if !tokens.len().is_multiple_of(seq_len) {
            return Err(StoreError::BadInput(format!(
                "{} token ids is not a whole number of rows of seq_len {seq_len}",
                tokens.len()
            )));
        }
        let rows = tokens.len() / seq_len;
        if acts.len() != spec.hooks.len() {
            return Err(StoreError::BadInput(format!(
                "got {} activation slices, the store has {} hooks ({})",
                acts.len(),
                spec.hooks.len(),
                spec.hooks.join(", ")
            )));
        }
        for (a, hook) in acts.iter().zip(&spec.hooks) {
            if a.len() != tokens.len() * d {
                return Err(StoreError::BadInput(format!(
                    "hook `{hook}`: got {} values, expected rows*seq_len*d = {rows}*{seq_len}*{d} = {}",
                    a.len(),
                    tokens.len() * d
                )));
            }
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t > i32::MAX as u32) {
            return Err(StoreError::BadInput(format!(
                "token id {bad} does not fit the store's I32 tokens tensor"
            )));
        }
        if let Some(target) = spec.target_rows {
            if self.rows_done() + rows as u64 > target {
                return Err(StoreError::BadInput(format!(
                    "{rows} rows would exceed target_rows {target} ({} already done)",
                    self.rows_done()
                )));
            }
        }

        // An I/O failure mid-push leaves a shard file part written: the
        // writer refuses further work.
        self.poisoned = true;
        let mut row = 0;
        while row < rows {
            let take = (rows - row).min(self.manifest.spec.rows_per_shard - self.open_rows());
            self.append(tokens, acts, row, take)?;
            row += take;
            if self.open_rows() == self.manifest.spec.rows_per_shard {
                self.close_shard(false)?;
            }
        }
        self.poisoned = false;
        Ok(())
    }

    /// Adds rows `row..row + take` of a push to the open shard (opening
    /// one if needed): the tokens to memory, the activations to the file.
    fn append(&mut self, tokens: &[u32], acts: &[&[f32]], row: usize, take: usize) -> Result<()> {
        let spec = &self.manifest.spec;
        let mut open = match self.open.take() {
            Some(open) => open,
            None => OpenShard::create(&self.dir, spec, self.manifest.rows)?,
        };
        // Pushes past the target are refused before this point.
        debug_assert!(open.rows + take <= open.planned_rows);
        let (seq_len, d) = (spec.seq_len, spec.d);
        for &t in &tokens[row * seq_len..(row + take) * seq_len] {
            // Checked by the caller: t <= i32::MAX.
            open.tokens.extend_from_slice(&(t as i32).to_le_bytes());
        }
        let span = row * seq_len * d..(row + take) * seq_len * d;
        let row_bytes = (seq_len * d * spec.dtype.size()) as u64;
        for (h, a) in acts.iter().enumerate() {
            self.scratch.clear();
            spec.dtype.encode(&a[span.clone()], &mut self.scratch);
            let at = open.planned.tensor_start(1 + h) + open.rows as u64 * row_bytes;
            open.file.write_at(at, &self.scratch)?;
        }
        open.rows += take;
        self.open = Some(open);
        Ok(())
    }

    /// Write the last partial shard (if any) and mark the store complete.
    /// Returns the final manifest.
    pub fn finish(mut self) -> Result<StoreManifest> {
        self.check_poisoned()?;
        if self.open.is_some() {
            self.close_shard(true)?;
        } else {
            self.manifest.complete = true;
            write_manifest(&self.dir, &self.manifest)?;
        }
        Ok(self.manifest)
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned(self.dir.clone()));
        }
        Ok(())
    }

    /// Publish the open shard, then the manifest listing it (with
    /// `complete` set when `last`).
    fn close_shard(&mut self, last: bool) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let (file, rows) = open.complete(&self.manifest.spec)?;
        let sha256 = file.publish()?;
        self.manifest.shards.push(ShardInfo {
            file: shard_file_name(self.manifest.shards.len()),
            rows,
            sha256,
        });
        self.manifest.rows += rows as u64;
        self.manifest.tokens = self.manifest.rows * self.manifest.spec.seq_len as u64;
        if last {
            self.manifest.complete = true;
        }
        write_manifest(&self.dir, &self.manifest)
    }
}

/// Bytes a partial shard's tensors move by per read and write. Small in
/// the unit tests, so that their moves take many overlapping chunks.
const MOVE_CHUNK: usize = if cfg!(test) { 40 } else { 1 << 20 };

/// A shard being filled: its temp file holds the activations of `rows`
/// rows at the offsets of its planned size.
#[derive(Debug)]
struct OpenShard {
    file: PendingFile,
    /// Rows the shard is planned to hold: `rows_per_shard`, or what is
    /// left of the target.
    planned_rows: usize,
    /// The layout of the planned shard (where the activations go).
    planned: ShardLayout,
    rows: usize,
    /// Token ids so far, `I32` little endian.
    tokens: Vec<u8>,
}

impl OpenShard {
    /// Opens the temp file of the shard whose first row is `first_row`
    /// (a multiple of `rows_per_shard`) in the store folder `dir`.
    fn create(dir: &Path, spec: &StoreSpec, first_row: u64) -> Result<OpenShard> {
        let index = (first_row / spec.rows_per_shard as u64) as usize;
        let left = spec
            .target_rows
            .map_or(u64::MAX, |t| t.saturating_sub(first_row));
        let planned_rows = (spec.rows_per_shard as u64).min(left.max(1)) as usize;
        Ok(OpenShard {
            file: PendingFile::create(&dir.join(shard_file_name(index)))?,
            planned_rows,
            planned: ShardLayout::new(spec, planned_rows),
            rows: 0,
            tokens: Vec::new(),
        })
    }

    /// Writes the header and tokens of a shard of `self.rows` rows,
    /// compacting it first if it is short of its plan; returns the file,
    /// ready to publish, and its row count.
    fn complete(mut self, spec: &StoreSpec) -> Result<(PendingFile, usize)> {
        let layout = if self.rows < self.planned_rows {
            let layout = ShardLayout::new(spec, self.rows);
            for t in 1..layout.sizes.len() {
                let from = self.planned.tensor_start(t);
                self.move_tensor(layout.tensor_start(t), from, layout.sizes[t])?;
            }
            self.file.set_len(layout.tensor_start(layout.sizes.len()))?;
            layout
        } else {
            self.planned
        };
        let header = layout.header.as_bytes();
        self.file
            .write_at(0, &(header.len() as u64).to_le_bytes())?;
        self.file.write_at(8, header)?;
        self.file.write_at(layout.tensor_start(0), &self.tokens)?;
        Ok((self.file, self.rows))
    }

    /// Copies `len` bytes from `from` to `to <= from`, front to back in
    /// chunks: a chunk's destination ends at or before the next chunk's
    /// source, so nothing is overwritten before it is read.
    fn move_tensor(&mut self, to: u64, from: u64, len: u64) -> Result<()> {
        debug_assert!(to <= from);
        let mut buf = vec![0u8; MOVE_CHUNK.min(len as usize)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.file.read_at(from + done, &mut buf[..n])?;
            self.file.write_at(to + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Where a shard's tensors lie: `[8-byte header length][header][tokens]
/// [hook 0]…[hook H-1]`.
#[derive(Debug)]
struct ShardLayout {
    header: String,
    /// Bytes of each tensor, tokens first.
    sizes: Vec<u64>,
}

impl ShardLayout {
    fn new(spec: &StoreSpec, rows: usize) -> ShardLayout {
        let tok = (rows * spec.seq_len) as u64;
        let mut sizes = vec![tok * 4];
        sizes.extend(
            spec.hooks
                .iter()
                .map(|_| tok * (spec.d * spec.dtype.size()) as u64),
        );
        ShardLayout {
            header: shard_header(spec, rows),
            sizes,
        }
    }

    /// File offset of tensor `t` (0 = tokens, 1 + h = hook h); `t` = the
    /// tensor count gives the file length.
    fn tensor_start(&self, t: usize) -> u64 {
        8 + self.header.len() as u64 + self.sizes[..t].iter().sum::<u64>()
    }
}

/// The safetensors header of a shard with `rows` rows: fixed key order,
/// padded with spaces to a multiple of 8 bytes.
fn shard_header(spec: &StoreSpec, rows: usize) -> String {
    let mut h = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    let mut offset = 0usize;
    let mut entry = |name: &str, dtype: &str, shape: &[usize], bytes: usize| {
        let shape: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        // A JSON string literal of a Rust string cannot fail to serialize.
        let name = serde_json::to_string(name).unwrap_or_default();
        h.push_str(&format!(
            r#",{name}:{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{offset},{}]}}"#,
            shape.join(","),
            offset + bytes
        ));
        offset += bytes;
    };
    let tok = rows * spec.seq_len;
    entry(TOKENS_TENSOR, "I32", &[rows, spec.seq_len], tok * 4);
    let st_dtype = match spec.dtype {
        super::StoreDtype::F32 => "F32",
        super::StoreDtype::F16 => "F16",
        super::StoreDtype::Bf16 => "BF16",
    };
    for hook in &spec.hooks {
        entry(
            hook,
            st_dtype,
            &[rows, spec.seq_len, spec.d],
            tok * spec.d * spec.dtype.size(),
        );
    }
    h.push('}');
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    h
}

/// Write `dir/manifest.json` atomically (the manifest's own pretty JSON,
/// so the bytes do not depend on the writer).
fn write_manifest(dir: &Path, m: &StoreManifest) -> Result<()> {
    saelab_fsio::write_atomic(&dir.join(MANIFEST_FILE), m.to_json().as_bytes())?;
    Ok(())
}

/// Names of the regular files in `dir` (non-UTF-8 names are skipped: we
/// never write them).
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Delete what an interrupted writer may have left: temp files of
/// [`saelab_fsio`] (and the `shard-*.tmp` / `manifest.json.tmp` of stores
/// cut off by older saelab versions), and shard files beyond the `listed`
/// ones.
fn remove_strays(dir: &Path, listed: usize) -> Result<()> {
    saelab_fsio::clean_stale_temps(dir)?;
    for name in list_dir(dir)? {
        let stray = match name.strip_suffix(".tmp") {
            Some(base) => base == MANIFEST_FILE || is_shard_file_name(base),
            None => is_shard_file_name(&name) && (0..listed).all(|i| shard_file_name(i) != name),
        };
        if stray {
            let p = dir.join(&name);
            std::fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
        }
    }
    Ok(())
}

/// An incomplete manifest must list full shards named in sequence, all
/// present with their recorded checksums.
fn check_resumable(dir: &Path, m: &StoreManifest) -> Result<()> {
    let manifest_path = dir.join(MANIFEST_FILE);
    for (i, s) in m.shards.iter().enumerate() {
        if s.file != shard_file_name(i) || s.rows != m.spec.rows_per_shard {
            return Err(StoreError::BadManifest {
                path: manifest_path,
                msg: format!(
                    "incomplete store lists shard {i} as `{}` with {} rows; expected `{}` with \
                     rows_per_shard = {} rows",
                    s.file,
                    s.rows,
                    shard_file_name(i),
                    m.spec.rows_per_shard
                ),
            });
        }
        let path = dir.join(&s.file);
        if !path.is_file() {
            return Err(StoreError::MissingShard { file: path });
        }
        let got = sha256_file(&path)?;
        if !got.eq_ignore_ascii_case(&s.sha256) {
            return Err(StoreError::ChecksumMismatch {
                file: s.file.clone(),
                expected: s.sha256.clone(),
                got,
            });
        }
    }
    Ok(())
}
