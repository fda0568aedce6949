//! Names of the files and folders a sweep writes into its output folder:
//!
//! ```text
//! <out>/progress.json                   run identity + `complete` flag
//! <out>/<name>/metrics.jsonl            one JSON line every log_every steps
//! <out>/<name>/{cfg.json, sae_weights.safetensors, sparsity.safetensors,
//!               saelab_cfg.json}        the final SAE (SAELens layout)
//! <out>/<name>/snapshots/step-NNNNNNNN/ the SAE as it was after that step
//!                                       (same files; `snapshot_steps`;
//!                                       written as `.step-N.tmp`, renamed)
//! <out>/checkpoints/LATEST              name of the current checkpoint dir
//! <out>/checkpoints/step-NNNNNNNN/      one checkpoint of the whole grid:
//!     state.json                        step + run identity
//!     <name>.safetensors                each SAE's TrainerState
//! ```

use std::path::{Path, PathBuf};

/// Run identity and completion.
pub const PROGRESS_FILE: &str = "progress.json";
/// Folder of the checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Pointer to the current checkpoint folder (switched atomically, last).
pub const LATEST_FILE: &str = "LATEST";
/// Step and identity inside a checkpoint folder.
pub const STATE_FILE: &str = "state.json";
/// Per-SAE metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Per-SAE folder of intermediate SAEs.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Entries of the run folder an SAE may not be named after.
pub(crate) const RESERVED: &[&str] = &[PROGRESS_FILE, CHECKPOINTS_DIR];

/// `step-00000016`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

pub(crate) fn checkpoints(out: &Path) -> PathBuf {
    out.join(CHECKPOINTS_DIR)
}

pub(crate) fn trainer_file(step_dir: &Path, name: &str) -> PathBuf {
    step_dir.join(format!("{name}.safetensors"))
}

/// `<sae_dir>/snapshots/step-NNNNNNNN`.
pub fn snapshot_dir(sae_dir: &Path, step: u64) -> PathBuf {
    sae_dir.join(SNAPSHOTS_DIR).join(step_dir_name(step))
}
