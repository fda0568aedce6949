//! Sparse autoencoders: architectures, training, file formats.
//!
//! - [`arch`]: ReLU/L1, TopK, BatchTopK, JumpReLU, Matryoshka BatchTopK
//!   behind the [`Architecture`] trait;
//! - [`engine`]: the shared forward/backward pass (losses, AuxK, gradients);
//! - [`kernels`]: the CPU kernels of the hot loop (dense encoder GEMM,
//!   sparse selection / decode / gradients);
//! - [`trainer`]: Adam, schedules, decoder constraint, dead latents, resume;
//! - [`io`]: SAELens v6 / pre-6.0 / sparsify files;
//! - [`sweep`]: many SAEs from one pass, checkpoints, crash-safe resume;
//! - [`defaults`]: the training defaults and architecture names, once.

pub mod arch;
pub mod blocked;
pub mod config;
pub mod defaults;
pub mod engine;
pub mod error;
pub mod init;
pub mod io;
pub mod kernels;
mod optim;
pub mod params;
pub mod sae;
mod st;
pub mod sweep;
pub mod trainer;

pub use arch::{ArchSpec, Architecture};
pub use config::{
    expected_average_scale, AuxConfig, AuxVariant, BDecInit, Decay, EncoderPrecision, LrSchedule,
    SaeConfig, TrainConfig,
};
pub use defaults::ArchName;
pub use engine::{loss_and_grads, loss_and_grads_with, Engine, LossParts, StepBuffers};
pub use error::{Result, SaeError};
pub use io::{load_sae, sae_info, save_sae, ExportMeta, SaeInfo};
pub use kernels::SparseCodes;
pub use params::SaeParams;
pub use sae::{RowNorm, Sae};
pub use trainer::{StepMetrics, Trainer, TrainerState};
