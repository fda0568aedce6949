//! Errors of the language-model runtime. Every variant that concerns a file
//! names it, so a user sees which input is wrong and why.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("{path}: not a valid GGUF file: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` has unsupported type {dtype} (supported: {supported})")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
        supported: &'static str,
    },
    #[error("{path}: bad model config: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error(
        "bad hook point `{0}`: expected blocks.L.hook_resid_pre|hook_resid_mid|hook_resid_post"
    )]
    BadHook(String),
    #[error("hook point `{hook}` is out of range: the model has {n_layers} layers (0..{last})", last = n_layers - 1)]
    HookOutOfRange { hook: String, n_layers: usize },
    #[error("sequence length {got} exceeds the model's context of {max} positions")]
    TooLong { got: usize, max: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("tokens: expected batch*seq = {expected} ids, got {got}")]
    BadBatch { expected: usize, got: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model `{name}`: {msg}")]
    Resolve { name: String, msg: String },
    #[error("splice at {hook}: {msg}")]
    Splice { hook: String, msg: String },
}

pub type Result<T> = std::result::Result<T, LmError>;

impl LmError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io {
            path: path.into(),
            source,
        }
    }
}
