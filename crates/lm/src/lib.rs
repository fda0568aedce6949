//! saelab's transformer runtime: GPT-2 and Llama-family forward passes on the
//! CPU with TransformerLens hook points (read several at once, stop early,
//! splice a replacement), the study's positional interventions, weight
//! loading (HF safetensors, GGUF, hub) and tokenizers.
//!
//! The forward pass is written directly on `f32` slices with the `gemm`
//! crate for dense products (see `ops`), instead of a tensor framework: it
//! keeps activations in preallocated buffers, fuses bias and residual adds
//! into the products, and makes hook reads and splices plain slice access.

pub use saelab_kernels::bf16;
#[cfg(target_arch = "x86_64")]
mod attention;
pub mod error;
pub mod forward;
pub mod gguf;
pub mod gpt2;
pub mod hooks;
pub mod hub;
pub mod llama;
pub mod model;
pub mod ops;
pub mod simd;
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use error::{LmError, Result};
pub use forward::{ForwardOutput, ForwardSpec, PosIntervention, Positions, Splice};
pub use hooks::{HookPoint, Site};
pub use model::{Model, ModelInfo};
pub use ops::Precision;
pub use tokenizer::{LenientTokenizer, Tokenizer};
