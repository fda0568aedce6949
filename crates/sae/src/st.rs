//! Small safetensors helpers: atomic writes (temp file + rename, so a crash
//! never leaves a half-written file under the final name) and reads that
//! convert F32/F16/BF16 tensors to `f32`.

use crate::error::{Result, SaeError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub(crate) struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: &str, shape: Vec<usize>, data: &[f32]) -> Self {
        OutTensor {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape,
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn u32(name: &str, data: &[u32]) -> Self {
        OutTensor {
            name: name.to_string(),
            dtype: Dtype::U32,
            shape: vec![data.len()],
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn u64(name: &str, data: &[u64]) -> Self {
        OutTensor {
            name: name.to_string(),
            dtype: Dtype::U64,
            shape: vec![data.len()],
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Writes bytes to `path` atomically (the tree's one atomic writer: its
/// temp names are what `saelab_fsio::clean_stale_temps` removes after a
/// kill, and it syncs the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    saelab_fsio::write_atomic(path, bytes).map_err(|e| match e {
        saelab_fsio::FsError::Io { path, source } => SaeError::Io { path, source },
        other => SaeError::Corrupt {
            path: path.into(),
            msg: other.to_string(),
        },
    })
}

/// Serializes tensors (+ string metadata) and writes them atomically.
pub(crate) fn write_tensors(
    path: &Path,
    tensors: &[OutTensor],
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| SaeError::Corrupt {
                    path: path.into(),
                    msg: e.to_string(),
                })
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(views, meta).map_err(|e| SaeError::Corrupt {
        path: path.into(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// A loaded safetensors file.
pub(crate) struct InFile {
    pub path: std::path::PathBuf,
    pub bytes: Vec<u8>,
}

impl InFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| SaeError::io(path, e))?;
        let f = InFile {
            path: path.to_path_buf(),
            bytes,
        };
        f.parse()?;
        Ok(f)
    }

    fn corrupt(&self, msg: impl ToString) -> SaeError {
        SaeError::Corrupt {
            path: self.path.clone(),
            msg: msg.to_string(),
        }
    }

    fn parse(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| self.corrupt(e))
    }

    pub fn metadata(&self) -> Result<HashMap<String, String>> {
        let (_, m) = SafeTensors::read_metadata(&self.bytes).map_err(|e| self.corrupt(e))?;
        Ok(m.metadata().clone().unwrap_or_default())
    }

    pub fn has(&self, name: &str) -> bool {
        self.parse()
            .map(|s| s.tensor(name).is_ok())
            .unwrap_or(false)
    }

    /// Tensor as f32 with its shape; error naming the tensor if missing.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let st = self.parse()?;
        let t = st.tensor(name).map_err(|_| SaeError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        let data = t.data();
        let v: Vec<f32> = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(self.corrupt(format!("tensor {name} has unsupported dtype {other:?}")))
            }
        };
        Ok((v, t.shape().to_vec()))
    }

    pub fn u32(&self, name: &str) -> Result<Vec<u32>> {
        let st = self.parse()?;
        let t = st.tensor(name).map_err(|_| SaeError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        if t.dtype() != Dtype::U32 {
            return Err(self.corrupt(format!("tensor {name} is not u32")));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn u64(&self, name: &str) -> Result<Vec<u64>> {
        let st = self.parse()?;
        let t = st.tensor(name).map_err(|_| SaeError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        if t.dtype() != Dtype::U64 {
            return Err(self.corrupt(format!("tensor {name} is not u64")));
        }
        Ok(t.data()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}
