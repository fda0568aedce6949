//! Reading a store: [`ActivationStore`] (manifest + checks) and
//! [`ShardReader`] (one memory-mapped shard, decoded to `f32` on demand).
//!
//! Opening a shard checks its safetensors header against the manifest:
//! `tokens` must be `I32 [rows, seq_len]` and every hook
//! `<dtype> [rows, seq_len, d]`; a mismatch names the file and the tensor.
//! Checksums are computed by [`ActivationStore::verify`] /
//! [`ActivationStore::verify_shard`] (they read every byte);
//! [`super::BatchStream`] verifies each shard the first time it reads it.
//! Opening a store also refuses a shard list that names a file (or a shard
//! index) twice.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::manifest::{StoreDtype, StoreManifest, StoreSpec};
use super::{sha256_file, Result, StoreError, TOKENS_TENSOR};

/// A store opened for reading.
#[derive(Debug, Clone)]
pub struct ActivationStore {
    dir: PathBuf,
    manifest: StoreManifest,
}

impl ActivationStore {
    /// Open a complete store: parse and check the manifest and check that
    /// every listed shard file exists. An incomplete store is refused
    /// ([`StoreError::Incomplete`]); see [`Self::open_partial`].
    pub fn open(dir: impl AsRef<Path>) -> Result<ActivationStore> {
        let store = Self::open_partial(dir)?;
        if !store.manifest.complete {
            return Err(StoreError::Incomplete(store.dir));
        }
        Ok(store)
    }

    /// Like [`Self::open`] but also accepts an incomplete store (its listed
    /// shards are final and readable while a harvest is still running).
    pub fn open_partial(dir: impl AsRef<Path>) -> Result<ActivationStore> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(StoreError::MissingManifest(dir));
        }
        let manifest = StoreManifest::load(&dir)?;
        check_shard_list(&dir, &manifest)?;
        for s in &manifest.shards {
            let path = dir.join(&s.file);
            if !path.is_file() {
                return Err(StoreError::MissingShard { file: path });
            }
        }
        Ok(ActivationStore { dir, manifest })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &StoreManifest {
        &self.manifest
    }

    /// What the store holds.
    pub fn spec(&self) -> &StoreSpec {
        &self.manifest.spec
    }

    /// Number of shards.
    pub fn num_shards(&self) -> usize {
        self.manifest.shards.len()
    }

    /// Token rows in the store.
    pub fn rows(&self) -> u64 {
        self.manifest.rows
    }

    /// Tokens in the store (`rows * seq_len`) = activation vectors per hook.
    pub fn tokens(&self) -> u64 {
        self.manifest.tokens
    }

    /// Whether the harvest finished.
    pub fn is_complete(&self) -> bool {
        self.manifest.complete
    }

    /// Recompute every shard's sha256 and compare with the manifest. The
    /// first bad shard is reported by file name
    /// (`shard-00003.safetensors: checksum mismatch (expected …, got …)`).
    pub fn verify(&self) -> Result<()> {
        (0..self.num_shards()).try_for_each(|i| self.verify_shard(i))
    }

    /// Recompute shard `index`'s sha256 and compare with the manifest.
    pub fn verify_shard(&self, index: usize) -> Result<()> {
        let s = self
            .manifest
            .shards
            .get(index)
            .ok_or(StoreError::ShardIndex {
                index,
                count: self.manifest.shards.len(),
            })?;
        let path = self.dir.join(&s.file);
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
        Ok(())
    }

    /// Memory-map shard `index` and check its tensors against the manifest.
    pub fn open_shard(&self, index: usize) -> Result<ShardReader> {
        let info = self
            .manifest
            .shards
            .get(index)
            .ok_or(StoreError::ShardIndex {
                index,
                count: self.manifest.shards.len(),
            })?;
        ShardReader::open(&self.dir.join(&info.file), info.rows, &self.manifest.spec)
    }

    /// Shard `index` fully decoded: its tokens and `hook`'s activations as
    /// `f32`.
    pub fn shard(&self, index: usize, hook: &str) -> Result<ShardData> {
        let hook_index = self.manifest.spec.hook_index(hook)?;
        let reader = self.open_shard(index)?;
        Ok(ShardData {
            file: reader.file.clone(),
            rows: reader.rows,
            seq_len: reader.seq_len,
            d: reader.d,
            tokens: reader.tokens()?,
            acts: reader.hook_f32_at(hook_index)?,
        })
    }
}

/// A shard list a reader can trust: no file listed twice, and no two
/// shard files with the same index (`shard-3` and `shard-00003`), so no
/// vector is read twice per epoch. (Row totals are checked when the
/// manifest is parsed.)
fn check_shard_list(dir: &Path, m: &StoreManifest) -> Result<()> {
    let bad = |msg: String| StoreError::BadManifest {
        path: dir.join(super::MANIFEST_FILE),
        msg,
    };
    let mut names = std::collections::HashSet::new();
    let mut indices = std::collections::HashMap::new();
    for s in &m.shards {
        if !names.insert(s.file.as_str()) {
            return Err(bad(format!("shard `{}` is listed twice", s.file)));
        }
        let index = s
            .file
            .strip_prefix("shard-")
            .and_then(|r| r.strip_suffix(".safetensors"))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(i) = index {
            if let Some(other) = indices.insert(i, s.file.as_str()) {
                return Err(bad(format!(
                    "shards `{other}` and `{}` have the same index {i}",
                    s.file
                )));
            }
        }
    }
    Ok(())
}

/// One shard decoded into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardData {
    /// Shard file name.
    pub file: String,
    pub rows: usize,
    pub seq_len: usize,
    pub d: usize,
    /// `[rows, seq_len]` token ids.
    pub tokens: Vec<u32>,
    /// `[rows, seq_len, d]` activations.
    pub acts: Vec<f32>,
}

/// A memory-mapped, header-checked shard.
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    file: String,
    mmap: Mmap,
    rows: usize,
    seq_len: usize,
    d: usize,
    dtype: StoreDtype,
    hooks: Vec<String>,
    /// Byte range of `tokens` in the map.
    tokens: Range<usize>,
    /// Byte range of each hook tensor (spec order) in the map.
    hook_bytes: Vec<Range<usize>>,
}

impl ShardReader {
    /// Map `path` and check it holds `rows` rows of `spec`.
    pub fn open(path: &Path, rows: usize, spec: &StoreSpec) -> Result<ShardReader> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingShard {
                    file: path.to_path_buf(),
                })
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        // SAFETY: the map is read-only and shards are never modified in
        // place (writers create new files and rename them into place);
        // truncating a shard while it is being read is outside the contract.
        let mmap = unsafe { Mmap::map(&f) }.map_err(|e| StoreError::io(path, e))?;
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
            StoreError::Safetensors {
                file: path.to_path_buf(),
                msg: e.to_string(),
            }
        })?;
        let base = 8 + header_len;
        let tensor =
            |name: &str, dtype: safetensors::Dtype, shape: &[usize]| -> Result<Range<usize>> {
                let err = |msg: String| StoreError::Tensor {
                    file: path.to_path_buf(),
                    tensor: name.to_string(),
                    msg,
                };
                let info = meta
                    .info(name)
                    .ok_or_else(|| err("missing from the shard".into()))?;
                if info.dtype != dtype {
                    return Err(err(format!(
                        "dtype {:?}, the manifest says {:?}",
                        info.dtype, dtype
                    )));
                }
                if info.shape != shape {
                    return Err(err(format!(
                        "shape {:?}, the manifest says {:?}",
                        info.shape, shape
                    )));
                }
                let (s, e) = info.data_offsets;
                Ok(base + s..base + e)
            };
        let tokens = tensor(
            TOKENS_TENSOR,
            safetensors::Dtype::I32,
            &[rows, spec.seq_len],
        )?;
        let hook_bytes = spec
            .hooks
            .iter()
            .map(|h| {
                tensor(
                    h,
                    spec.dtype.safetensors_dtype(),
                    &[rows, spec.seq_len, spec.d],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardReader {
            path: path.to_path_buf(),
            file: file_name,
            mmap,
            rows,
            seq_len: spec.seq_len,
            d: spec.d,
            dtype: spec.dtype,
            hooks: spec.hooks.clone(),
            tokens,
            hook_bytes,
        })
    }

    /// Shard file name.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Token rows in the shard.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn d(&self) -> usize {
        self.d
    }

    /// `[rows, seq_len]` token ids.
    pub fn tokens(&self) -> Result<Vec<u32>> {
        let bytes = &self.mmap[self.tokens.clone()];
        bytes
            .chunks_exact(4)
            .map(|b| {
                let t = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                u32::try_from(t).map_err(|_| StoreError::Tensor {
                    file: self.path.clone(),
                    tensor: TOKENS_TENSOR.into(),
                    msg: format!("negative token id {t}"),
                })
            })
            .collect()
    }

    /// `hook`'s `[rows, seq_len, d]` activations as `f32`.
    pub fn hook_f32(&self, hook: &str) -> Result<Vec<f32>> {
        let i =
            self.hooks
                .iter()
                .position(|h| h == hook)
                .ok_or_else(|| StoreError::UnknownHook {
                    hook: hook.to_string(),
                    available: self.hooks.clone(),
                })?;
        self.hook_f32_at(i)
    }

    fn hook_f32_at(&self, hook_index: usize) -> Result<Vec<f32>> {
        let n = self.rows * self.seq_len * self.d;
        let mut out = vec![0f32; n];
        self.read_f32(hook_index, 0..n, &mut out)?;
        Ok(out)
    }

    /// Decode elements `elems` (flat indices into `[rows, seq_len, d]`) of
    /// hook number `hook_index` into `out` (`out.len() == elems.len()`).
    pub(crate) fn read_f32(
        &self,
        hook_index: usize,
        elems: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        if out.len() != elems.len() {
            return Err(StoreError::BadStream(format!(
                "{}: {} elements requested into {} slots",
                self.file,
                elems.len(),
                out.len()
            )));
        }
        let bytes = self.raw(hook_index, elems)?;
        self.dtype.decode(bytes, out);
        Ok(())
    }

    /// Raw little-endian store-dtype bytes of elements `elems` (flat
    /// indices into `[rows, seq_len, d]`) of hook number `hook_index`.
    pub(crate) fn raw(&self, hook_index: usize, elems: Range<usize>) -> Result<&[u8]> {
        let range = self.hook_bytes.get(hook_index).ok_or_else(|| {
            StoreError::BadStream(format!("hook index {hook_index} out of range"))
        })?;
        let size = self.dtype.size();
        let start = range.start + elems.start * size;
        let end = range.start + elems.end * size;
        if elems.start > elems.end || end > range.end {
            return Err(StoreError::BadStream(format!(
                "{}: element range {elems:?} out of bounds",
                self.file
            )));
        }
        Ok(&self.mmap[start..end])
    }
}

#[cfg(test)]
mod integrity_tests {
    use super::super::*;

    fn small_store(dir: &Path) {
        let spec = StoreSpec {
            model: ModelInfo {
                id: "m".into(),
                hash: "sha256:0".into(),
            },
            hooks: vec!["h".into()],
            d: 2,
            dtype: StoreDtype::F32,
            seq_len: 2,
            packing: "concat".into(),
            dataset: DatasetInfo {
                name: "c".into(),
                hash: "sha256:0".into(),
            },
            pos_intervention: "none".into(),
            seed: 1,
            rows_per_shard: 2,
            target_rows: Some(4),
            extra: Default::default(),
        };
        let mut w = StoreWriter::create_or_resume(dir, spec).unwrap();
        w.push_rows(&[1, 2, 3, 4, 5, 6, 7, 8], &[&[0.5f32; 16]])
            .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn a_shard_listed_twice_or_with_a_repeated_index_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        small_store(tmp.path());
        let mpath = tmp.path().join(MANIFEST_FILE);
        let good = std::fs::read_to_string(&mpath).unwrap();
        let twice = good.replace("shard-00001.safetensors", "shard-00000.safetensors");
        std::fs::write(&mpath, twice).unwrap();
        let err = ActivationStore::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        std::fs::copy(
            tmp.path().join("shard-00000.safetensors"),
            tmp.path().join("shard-0.safetensors"),
        )
        .unwrap();
        let same_index = good.replace("shard-00001.safetensors", "shard-0.safetensors");
        std::fs::write(&mpath, same_index).unwrap();
        let err = ActivationStore::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("same index 0"), "{err}");
    }

    #[test]
    fn the_batch_stream_checks_a_shard_before_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        small_store(tmp.path());
        let p = tmp.path().join("shard-00001.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1; // still a valid shard, other numbers
        std::fs::write(&p, bytes).unwrap();
        let store = ActivationStore::open(tmp.path()).unwrap();
        let stream = BatchStream::new(&store, "h", 2, 0, Some(1), 8).unwrap();
        let err = stream.collect::<Result<Vec<_>>>().unwrap_err();
        assert!(matches!(err, StoreError::ChecksumMismatch { .. }), "{err}");
        let unchecked = BatchStream::new(&store, "h", 2, 0, Some(1), 8)
            .unwrap()
            .with_verify_shards(false);
        assert_eq!(unchecked.count(), 4);
    }
}
