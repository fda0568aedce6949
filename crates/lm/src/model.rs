//! One entry point for every supported model: resolve a name or path, load
//! weights and tokenizer, and run forward passes with hooks.
//!
//! Accepted specs: a `.gguf` file (Llama family); an HF model folder
//! (`config.json` with `model_type` gpt2 or llama, plus `*.safetensors`); a
//! folder holding exactly one `.gguf`; or a hub name such as `gpt2`, fetched
//! through `hf-hub` when a hub is reachable.

use crate::error::{LmError, Result};
use crate::forward::{ForwardOutput, ForwardSpec};
use crate::gguf::GgufFile;
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::llama::Llama;
use crate::ops::Precision;
use crate::tokenizer::Tokenizer;
use crate::weights::{load_safetensors, safetensors_files};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Facts about a loaded model that downstream stages record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// What the user asked for (name or path).
    pub id: String,
    /// `gpt2` or `llama`.
    pub arch: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub vocab_size: usize,
    pub n_ctx: usize,
    /// The weight files read.
    pub files: Vec<PathBuf>,
    /// sha256 over the weight files' bytes, in order.
    pub weights_sha256: String,
    /// Whether the positional interventions act on learned position
    /// embeddings (`wpe`, the study's experiment) or on RoPE (our analogue).
    pub positions: String,
    /// Arithmetic of the blocks' dense products.
    #[serde(default)]
    pub precision: Precision,
}

pub enum Arch {
    Gpt2(Gpt2),
    Llama(Llama),
}

pub struct Model {
    pub arch: Arch,
    pub info: ModelInfo,
    /// None for a weights-only file (e.g. a GGUF without tokenizer metadata):
    /// such a model runs on token ids only.
    tokenizer: Option<Tokenizer>,
    tokenizer_error: Option<String>,
}

impl Model {
    /// Switches the blocks' dense products to `precision` (bf16 packs a
    /// copy of every block weight once; the unembedding stays f32).
    pub fn set_precision(&mut self, precision: Precision) {
        match &mut self.arch {
            Arch::Gpt2(g) => g.set_precision(precision),
            Arch::Llama(l) => l.set_precision(precision),
        }
        self.info.precision = precision;
    }

    /// Loads a model from a path or hub name (see the module doc).
    pub fn load(spec: &str) -> Result<Model> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::load_path(spec, path);
        }
        if spec.ends_with(".gguf")
            || spec.contains(std::path::MAIN_SEPARATOR)
            || spec.starts_with('.')
        {
            return Err(LmError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
        let dir = crate::hub::fetch_model(spec)?;
        Self::load_path(spec, &dir)
    }

    fn load_path(id: &str, path: &Path) -> Result<Model> {
        if path.is_file() {
            return Self::load_gguf(id, path);
        }
        let config = path.join("config.json");
        if !config.exists() {
            let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| LmError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            return match ggufs.as_slice() {
                [one] => Self::load_gguf(id, one),
                [] => Err(LmError::Config {
                    path: path.to_path_buf(),
                    msg: "neither config.json (HF folder) nor a .gguf file here".into(),
                }),
                _ => Err(LmError::Config {
                    path: path.to_path_buf(),
                    msg: "several .gguf files here: name one".into(),
                }),
            };
        }
        let text = std::fs::read_to_string(&config).map_err(|e| LmError::io(&config, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LmError::Config {
            path: config.clone(),
            msg: e.to_string(),
        })?;
        let model_type = v
            .get("model_type")
            .and_then(|m| m.as_str())
            .unwrap_or("gpt2");
        let files = safetensors_files(path)?;
        let sha = hash_files(&files)?;
        let tok_json = path.join("tokenizer.json");
        match model_type {
            "gpt2" => {
                let cfg = Gpt2Config::from_file(&config)?;
                let g = Gpt2::from_tensors(cfg.clone(), load_safetensors(&files)?)?;
                let tokenizer = if tok_json.exists() {
                    Tokenizer::from_hf_file(&tok_json, Some(50256), Some(50256))?
                } else {
                    Tokenizer::gpt2()
                };
                Ok(Model {
                    info: ModelInfo {
                        id: id.to_string(),
                        arch: "gpt2".into(),
                        n_layers: cfg.n_layer,
                        d_model: cfg.n_embd,
                        vocab_size: cfg.vocab_size,
                        n_ctx: cfg.n_positions,
                        files,
                        weights_sha256: sha,
                        positions: "learned (wpe)".into(),
                        precision: Precision::F32,
                    },
                    arch: Arch::Gpt2(g),
                    tokenizer: Some(tokenizer),
                    tokenizer_error: None,
                })
            }
            "llama" => {
                let l = Llama::from_hf(&config, load_safetensors(&files)?)?;
                // A folder without tokenizer.json still runs token ids
                // (harvest of pre-tokenized rows, tests); text needs one.
                let (tokenizer, tokenizer_error) = if tok_json.exists() {
                    (Some(Tokenizer::from_hf_file(&tok_json, None, None)?), None)
                } else {
                    let msg = format!(
                        "{}: no such file (the model has no tokenizer)",
                        tok_json.display()
                    );
                    (None, Some(msg))
                };
                Ok(Model {
                    info: llama_info(id, &l, files, sha),
                    arch: Arch::Llama(l),
                    tokenizer,
                    tokenizer_error,
                })
            }
            other => Err(LmError::Config {
                path: config,
                msg: format!("model_type `{other}` is not supported (gpt2, llama)"),
            }),
        }
    }

    fn load_gguf(id: &str, path: &Path) -> Result<Model> {
        let g = GgufFile::open(path)?;
        let l = Llama::from_gguf(&g)?;
        let (tokenizer, tokenizer_error) = match Tokenizer::from_gguf(&g) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let sha = hex::encode(Sha256::digest(g.bytes()));
        Ok(Model {
            info: llama_info(id, &l, vec![path.to_path_buf()], sha),
            arch: Arch::Llama(l),
            tokenizer,
            tokenizer_error,
        })
    }

    /// The model's tokenizer, or why it has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            LmError::Tokenizer(
                self.tokenizer_error
                    .clone()
                    .unwrap_or_else(|| format!("model `{}` has no tokenizer", self.info.id)),
            )
        })
    }

    /// Runs `tokens` (`batch` rows of `seq`) through the model.
    ///
    /// The pass runs on one of rayon's worker threads (`rayon::scope`
    /// moves it there when called from outside the pool): each of its
    /// parallel ops (nine a layer) then forks and joins from inside the pool,
    /// about 1 µs each, instead of injecting its work from outside and
    /// sleeping until it is done, about 20 µs each on the 2-core VM
    /// (bench/RESULTS.md, session 17).
    pub fn forward(
        &self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
        spec: &mut ForwardSpec<'_>,
    ) -> Result<ForwardOutput> {
        rayon::scope(|_| match &self.arch {
            Arch::Gpt2(m) => m.forward(tokens, batch, seq, spec),
            Arch::Llama(m) => m.forward(tokens, batch, seq, spec),
        })
    }
}

fn llama_info(id: &str, l: &Llama, files: Vec<PathBuf>, sha: String) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        arch: "llama".into(),
        n_layers: l.cfg.n_layers,
        d_model: l.cfg.hidden,
        vocab_size: l.cfg.vocab_size,
        n_ctx: l.cfg.n_ctx,
        files,
        weights_sha256: sha,
        positions: "rope (interventions are the RoPE analogue of the study's)".into(),
        precision: Precision::F32,
    }
}

/// sha256 over the bytes of `files`, in order.
pub fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in files {
        let mut f = std::fs::File::open(p).map_err(|e| LmError::io(p, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| LmError::io(p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}
