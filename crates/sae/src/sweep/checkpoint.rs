//! Checkpoints of a whole grid as one atomic unit. Every SAE's
//! [`TrainerState`] and a small `state.json` go into a fresh
//! `checkpoints/step-NNNNNNNN/` folder, which is synced; only then is the
//! single pointer file `checkpoints/LATEST` switched (atomically) to it,
//! and older step folders are deleted after. A kill at any moment leaves
//! LATEST naming a complete checkpoint (or no LATEST: start from 0);
//! half-written step folders are never read and are deleted on resume.

use super::error::SweepError;
use super::identity::RunIdentity;
use super::layout::{checkpoints, step_dir_name, trainer_file, LATEST_FILE, STATE_FILE};
use crate::trainer::{Trainer, TrainerState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const STATE_FORMAT: &str = "saelab_sweep_checkpoint";

/// `state.json` of a checkpoint folder.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    format: String,
    step: u64,
    run: RunIdentity,
}

/// The checkpoint LATEST points to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checkpoint {
    pub step: u64,
    pub dir: PathBuf,
}

impl Checkpoint {
    /// The saved state of SAE `name`.
    pub fn load_trainer(&self, name: &str) -> Result<TrainerState, SweepError> {
        TrainerState::load(&trainer_file(&self.dir, name))
            .map_err(|e| SweepError::sae(name, "reading its checkpoint", e))
    }
}

/// Writes the checkpoint of `trainers` at `step` and makes it the latest.
/// `sync_logs` runs before the switch, so the logs are durable up to
/// `step` whenever LATEST says `step`.
pub(crate) fn write(
    out: &Path,
    step: u64,
    run: &RunIdentity,
    trainers: &[(&str, &Trainer)],
    sync_logs: impl FnOnce() -> Result<(), SweepError>,
) -> Result<(), SweepError> {
    let ck = checkpoints(out);
    let name = step_dir_name(step);
    let dir = ck.join(&name);
    if dir.exists() {
        // Left by a run killed while writing it: never trust a folder
        // LATEST did not name.
        std::fs::remove_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
    for (sae, t) in trainers {
        t.state()
            .save(&trainer_file(&dir, sae))
            .map_err(|e| SweepError::sae(sae, "writing its checkpoint", e))?;
    }
    let state = CheckpointState {
        format: STATE_FORMAT.into(),
        step,
        run: run.clone(),
    };
    saelab_fsio::write_json_atomic(&dir.join(STATE_FILE), &state)?;
    saelab_fsio::sync_dir(&dir)?;
    saelab_fsio::sync_dir(&ck)?;
    sync_logs()?;
    saelab_fsio::write_atomic(&ck.join(LATEST_FILE), format!("{name}\n").as_bytes())?;
    remove_stale(out, Some(&name))
}

/// The checkpoint LATEST names, checked against `run`; `None` without
/// LATEST.
pub(crate) fn latest(out: &Path, run: &RunIdentity) -> Result<Option<Checkpoint>, SweepError> {
    let ck = checkpoints(out);
    let latest = ck.join(LATEST_FILE);
    let text = match std::fs::read_to_string(&latest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SweepError::io(&latest, e)),
    };
    let name = text.trim();
    let corrupt = |path: &Path, msg: String| SweepError::Corrupt {
        path: path.to_path_buf(),
        msg,
    };
    if !name.starts_with("step-") || name.contains(['/', '\\']) {
        return Err(corrupt(
            &latest,
            format!("names {name:?}, not a step folder"),
        ));
    }
    let dir = ck.join(name);
    let spath = dir.join(STATE_FILE);
    let stext = std::fs::read_to_string(&spath).map_err(|e| SweepError::io(&spath, e))?;
    let state: CheckpointState =
        serde_json::from_str(&stext).map_err(|e| corrupt(&spath, format!("unreadable: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(corrupt(&spath, "not a sweep checkpoint state".into()));
    }
    if state.run != *run {
        return Err(corrupt(
            &spath,
            format!(
                "the checkpoint belongs to another run than progress.json (differs in: {})",
                state.run.diff(run).join(", ")
            ),
        ));
    }
    Ok(Some(Checkpoint {
        step: state.step,
        dir,
    }))
}

/// Deletes every step folder but `keep` and stale temp files of killed
/// runs in the checkpoints folder.
pub(crate) fn remove_stale(out: &Path, keep: Option<&str>) -> Result<(), SweepError> {
    let ck = checkpoints(out);
    let entries = match std::fs::read_dir(&ck) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SweepError::io(&ck, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SweepError::io(&ck, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") && Some(name.as_str()) != keep {
            let p = entry.path();
            std::fs::remove_dir_all(&p).map_err(|e| SweepError::io(&p, e))?;
        }
    }
    saelab_fsio::clean_stale_temps(&ck)?;
    Ok(())
}

/// Deletes the checkpoints folder (after the run is marked complete).
pub(crate) fn remove_all(out: &Path) -> Result<(), SweepError> {
    let ck = checkpoints(out);
    match std::fs::remove_dir_all(&ck) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SweepError::io(&ck, e)),
    }
}

/// The name of the step folder LATEST points to, if any (for cleanup).
pub(crate) fn latest_name(out: &Path) -> Option<String> {
    std::fs::read_to_string(checkpoints(out).join(LATEST_FILE))
        .ok()
        .map(|t| t.trim().to_string())
}
