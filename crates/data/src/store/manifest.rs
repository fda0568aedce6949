//! `manifest.json`: what a store holds ([`StoreSpec`], filled in by the
//! harvester) and how far the harvest got (shards, totals, `complete`).
//!
//! Example (format version 1):
//!
//! ```json
//! {
//!   "format": "saelab-activation-store",
//!   "format_version": 1,
//!   "saelab_version": "0.1.0",
//!   "spec": {
//!     "model": { "id": "gpt2", "hash": "sha256:248dfc39…" },
//!     "hooks": ["blocks.8.hook_resid_pre"],
//!     "d": 768,
//!     "dtype": "f16",
//!     "seq_len": 128,
//!     "packing": "concat",
//!     "dataset": { "name": "assets/corpora/tinystories.txt", "hash": "sha256:…" },
//!     "pos_intervention": "none",
//!     "seed": 49,
//!     "rows_per_shard": 1024,
//!     "target_rows": 4096,
//!     "extra": {}
//!   },
//!   "shards": [
//!     { "file": "shard-00000.safetensors", "rows": 1024, "sha256": "9f2c…" }
//!   ],
//!   "rows": 1024,
//!   "tokens": 131072,
//!   "complete": false
//! }
//! ```
//!
//! The format version is checked before anything else is parsed, so a store
//! from an older or newer saelab fails with a clear message rather than a
//! field error.

use std::collections::BTreeMap;
use std::path::Path;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::{Result, StoreError, TOKENS_TENSOR};

/// File name of the manifest inside a store directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Value of the manifest's `format` field.
pub const STORE_FORMAT: &str = "saelab-activation-store";
/// The manifest format version this code reads and writes.
pub const STORE_FORMAT_VERSION: u32 = 1;

/// Element type of the stored activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreDtype {
    F32,
    F16,
    Bf16,
}

impl StoreDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StoreDtype::F32 => 4,
            StoreDtype::F16 | StoreDtype::Bf16 => 2,
        }
    }

    /// The manifest spelling (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "f32",
            StoreDtype::F16 => "f16",
            StoreDtype::Bf16 => "bf16",
        }
    }

    /// The safetensors dtype of the hook tensors.
    pub fn safetensors_dtype(self) -> safetensors::Dtype {
        match self {
            StoreDtype::F32 => safetensors::Dtype::F32,
            StoreDtype::F16 => safetensors::Dtype::F16,
            StoreDtype::Bf16 => safetensors::Dtype::BF16,
        }
    }

    /// Parse `f32` / `f16` / `bf16` (also `float32`, `float16`, `bfloat16`).
    pub fn parse(s: &str) -> Option<StoreDtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Some(StoreDtype::F32),
            "f16" | "float16" | "fp16" | "half" => Some(StoreDtype::F16),
            "bf16" | "bfloat16" => Some(StoreDtype::Bf16),
            _ => None,
        }
    }

    /// Append `src` converted to this dtype (little endian, round to
    /// nearest even) to `out`.
    pub(crate) fn encode(self, src: &[f32], out: &mut Vec<u8>) {
        out.reserve(src.len() * self.size());
        match self {
            StoreDtype::F32 => {
                if cfg!(target_endian = "little") {
                    out.extend_from_slice(bytemuck::cast_slice(src));
                } else {
                    for x in src {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
            StoreDtype::F16 | StoreDtype::Bf16 => {
                // Convert in chunks so the vectorized slice conversions of
                // `half` are used without a full-size temporary.
                let mut tmp = [0u16; 1024];
                for chunk in src.chunks(tmp.len()) {
                    let t = &mut tmp[..chunk.len()];
                    if self == StoreDtype::F16 {
                        let t: &mut [f16] = bytemuck::cast_slice_mut(t);
                        t.convert_from_f32_slice(chunk);
                    } else {
                        let t: &mut [bf16] = bytemuck::cast_slice_mut(t);
                        t.convert_from_f32_slice(chunk);
                    }
                    for v in t.iter() {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }

    /// Decode little-endian elements of this dtype from `src` into `out`
    /// (`src.len() == out.len() * self.size()`).
    pub(crate) fn decode(self, src: &[u8], out: &mut [f32]) {
        debug_assert_eq!(src.len(), out.len() * self.size());
        let little = cfg!(target_endian = "little");
        match self {
            StoreDtype::F32 => {
                if little {
                    if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(src) {
                        out.copy_from_slice(v);
                        return;
                    }
                }
                for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            StoreDtype::F16 => {
                if little {
                    if let Ok(v) = bytemuck::try_cast_slice::<u8, f16>(src) {
                        v.convert_to_f32_slice(out);
                        return;
                    }
                }
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            StoreDtype::Bf16 => {
                if little {
                    if let Ok(v) = bytemuck::try_cast_slice::<u8, bf16>(src) {
                        v.convert_to_f32_slice(out);
                        return;
                    }
                }
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

impl std::fmt::Display for StoreDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The model the activations come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Hub id or local path as the user named it (`gpt2`,
    /// `assets/models/SmolLM2-135M-Instruct-Q4_1.gguf`).
    pub id: String,
    /// Hash of the weight file(s), e.g. `sha256:<hex>`.
    pub hash: String,
}

/// The corpus the token rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset name or path.
    pub name: String,
    /// Hash of the corpus (files, split, text field...), e.g. `sha256:<hex>`.
    pub hash: String,
}

/// Everything that defines *what* a store holds. The harvester fills it in;
/// resuming requires the stored spec to be equal field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreSpec {
    pub model: ModelInfo,
    /// Hook point names (TransformerLens convention), one tensor each; the
    /// order is the order of `acts` in [`super::StoreWriter::push_rows`].
    pub hooks: Vec<String>,
    /// Width of every hook's activation vectors.
    pub d: usize,
    /// Element type the activations are stored in.
    pub dtype: StoreDtype,
    /// Tokens per row.
    pub seq_len: usize,
    /// Row packing (`concat` or `bos_rows`, see SPEC §1.5).
    pub packing: String,
    pub dataset: DatasetInfo,
    /// Positional intervention during the harvest (`none`, `zero`,
    /// `shuffle`).
    pub pos_intervention: String,
    /// Seed of everything random in the harvest.
    pub seed: u64,
    /// Token rows per shard (every shard but the last one is full).
    pub rows_per_shard: usize,
    /// Rows the harvest aims for (`None`: until the corpus runs out).
    /// Target tokens = `target_rows * seq_len`.
    pub target_rows: Option<u64>,
    /// Anything else that defines the harvest (tokenizer, max document
    /// length, ...); compared on resume like the other fields.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl StoreSpec {
    /// Check the spec is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StoreError::BadSpec(m));
        if self.hooks.is_empty() {
            return bad("no hooks".into());
        }
        for (i, h) in self.hooks.iter().enumerate() {
            if h.is_empty() || h == TOKENS_TENSOR || h == "__metadata__" {
                return bad(format!("invalid hook name `{h}`"));
            }
            if self.hooks[..i].contains(h) {
                return bad(format!("hook `{h}` listed twice"));
            }
        }
        if self.d == 0 {
            return bad("d must be > 0".into());
        }
        if self.seq_len == 0 {
            return bad("seq_len must be > 0".into());
        }
        if self.rows_per_shard == 0 {
            return bad("rows_per_shard must be > 0".into());
        }
        if self.target_rows == Some(0) {
            return bad("target_rows must be > 0 (or absent)".into());
        }
        let elems = self
            .rows_per_shard
            .checked_mul(self.seq_len)
            .and_then(|x| x.checked_mul(self.d))
            .and_then(|x| x.checked_mul(self.dtype.size()))
            .and_then(|x| x.checked_mul(self.hooks.len()));
        if elems.is_none() {
            return bad("rows_per_shard * seq_len * d * hooks overflows".into());
        }
        Ok(())
    }

    /// Target tokens (`target_rows * seq_len`), if a target is set.
    pub fn target_tokens(&self) -> Option<u64> {
        self.target_rows
            .map(|r| r.saturating_mul(self.seq_len as u64))
    }

    /// Index of `hook` in [`Self::hooks`].
    pub fn hook_index(&self, hook: &str) -> Result<usize> {
        self.hooks
            .iter()
            .position(|h| h == hook)
            .ok_or_else(|| StoreError::UnknownHook {
                hook: hook.to_string(),
                available: self.hooks.clone(),
            })
    }

    /// Fields where `self` (stored) and `other` (requested) differ, as
    /// `path (store has X, requested Y)`; empty when equal.
    pub fn diff(&self, other: &StoreSpec) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let b = serde_json::to_value(other).unwrap_or(serde_json::Value::Null);
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out
    }
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = Value::Null;
                diff_values(
                    &p,
                    ma.get(k).unwrap_or(&null),
                    mb.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path} (store has {a}, requested {b})")),
        _ => {}
    }
}

/// One shard as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the store directory.
    pub file: String,
    /// Token rows in the shard.
    pub rows: usize,
    /// sha256 of the whole file, hex.
    pub sha256: String,
}

/// The whole `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreManifest {
    /// Always [`STORE_FORMAT`].
    pub format: String,
    /// [`STORE_FORMAT_VERSION`] when written by this code.
    pub format_version: u32,
    /// Version of saelab that created the store.
    pub saelab_version: String,
    pub spec: StoreSpec,
    pub shards: Vec<ShardInfo>,
    /// Token rows in all listed shards.
    pub rows: u64,
    /// `rows * seq_len`.
    pub tokens: u64,
    /// Set by [`super::StoreWriter::finish`]; a complete store is final.
    pub complete: bool,
}

impl StoreManifest {
    /// A fresh, empty, incomplete manifest for `spec`.
    pub fn new(spec: StoreSpec) -> StoreManifest {
        StoreManifest {
            format: STORE_FORMAT.to_string(),
            format_version: STORE_FORMAT_VERSION,
            saelab_version: env!("CARGO_PKG_VERSION").to_string(),
            spec,
            shards: Vec::new(),
            rows: 0,
            tokens: 0,
            complete: false,
        }
    }

    /// Read and check `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<StoreManifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingManifest(dir.to_path_buf()))
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        Self::parse(&text, &path)
    }

    /// Parse manifest text (`path` only names the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<StoreManifest> {
        let bad = |msg: String| StoreError::BadManifest {
            path: path.to_path_buf(),
            msg,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        match obj.get("format").and_then(|v| v.as_str()) {
            Some(STORE_FORMAT) => {}
            Some(other) => {
                return Err(bad(format!(
                    "format is `{other}`, expected `{STORE_FORMAT}`"
                )))
            }
            None => {
                return Err(bad(format!(
                    "no `format` field (expected `{STORE_FORMAT}`)"
                )))
            }
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("no integer `format_version` field".into()))?;
        if version != u64::from(STORE_FORMAT_VERSION) {
            return Err(StoreError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: STORE_FORMAT_VERSION,
                hint: if version > u64::from(STORE_FORMAT_VERSION) {
                    "it was written by a newer saelab: upgrade saelab"
                } else {
                    "it was written by an older saelab: harvest it again"
                },
            });
        }
        let manifest: StoreManifest =
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        manifest.check().map_err(bad)?;
        Ok(manifest)
    }

    /// Internal consistency: valid spec, plain shard file names, totals
    /// that add up.
    fn check(&self) -> std::result::Result<(), String> {
        self.spec.validate().map_err(|e| e.to_string())?;
        let mut sum = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            let plain = !s.file.is_empty()
                && !s.file.contains(['/', '\\'])
                && s.file != "."
                && s.file != ".."
                && s.file != MANIFEST_FILE;
            if !plain {
                return Err(format!("shard {i}: `{}` is not a plain file name", s.file));
            }
            if s.rows == 0 {
                return Err(format!("{}: 0 rows", s.file));
            }
            if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}: sha256 `{}` is not 64 hex digits",
                    s.file, s.sha256
                ));
            }
            sum += s.rows as u64;
        }
        if sum != self.rows {
            return Err(format!(
                "`rows` is {} but the shards hold {sum} rows",
                self.rows
            ));
        }
        if self.tokens != self.rows.saturating_mul(self.spec.seq_len as u64) {
            return Err(format!(
                "`tokens` is {} but rows * seq_len = {}",
                self.tokens,
                self.rows.saturating_mul(self.spec.seq_len as u64)
            ));
        }
        Ok(())
    }

    /// Pretty JSON text of the manifest (with a trailing newline).
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and numbers cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}
