//! Loading named weight tensors into `f32`: HF safetensors files (F32, F16,
//! BF16), with shape checks that name the file and tensor on mismatch.

use crate::error::{LmError, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A dense tensor held as `f32`, row-major.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All tensors of a model, by name, plus where they came from (for errors).
pub struct TensorMap {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    /// A prefix every lookup tries first (`transformer.` in some GPT-2 exports).
    pub prefix: String,
}

impl TensorMap {
    /// Takes the tensor `name` (with or without the map's prefix), checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let key = if self.tensors.contains_key(name) {
            name.to_string()
        } else {
            format!("{}{}", self.prefix, name)
        };
        let t = self
            .tensors
            .remove(&key)
            .ok_or_else(|| LmError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if t.shape != shape {
            return Err(LmError::Shape {
                path: self.path.clone(),
                name: key,
                got: t.shape,
                expected: shape.to_vec(),
            });
        }
        Ok(t.data)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
            || self
                .tensors
                .contains_key(&format!("{}{}", self.prefix, name))
    }

    /// Shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors
            .get(name)
            .or_else(|| self.tensors.get(&format!("{}{}", self.prefix, name)))
            .map(|t| t.shape.as_slice())
    }
}

/// Reads every tensor of one or more safetensors files into one map.
pub fn load_safetensors(files: &[PathBuf]) -> Result<TensorMap> {
    let mut tensors = HashMap::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| LmError::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| LmError::Safetensors {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            let data = to_f32(path, &name, view.dtype(), view.data())?;
            tensors.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
    }
    let path = files.first().cloned().unwrap_or_default();
    Ok(TensorMap {
        path,
        tensors,
        prefix: String::new(),
    })
}

fn to_f32(path: &Path, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(LmError::UnsupportedDtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
                supported: "F32, F16, BF16",
            })
        }
    };
    Ok(out)
}

/// The `*.safetensors` files of an HF model folder, sorted.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| LmError::io(dir, e))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LmError::Config {
            path: dir.to_path_buf(),
            msg: "no *.safetensors weight file in this folder".into(),
        });
    }
    Ok(files)
}
