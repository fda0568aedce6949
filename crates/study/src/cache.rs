//! The stage cache: each stage runs in `<cache>/<kind>-<hash16>/` and is
//! complete only when its `stage.json` ([`StageRecord`]: inputs, outputs,
//! timings, saelab version, machine) is written there, atomically and
//! last. A folder without it is a partial stage: harvest and train resume
//! from their own checkpoints, the analyses start over.

use crate::identity::short;
use crate::plan::Stage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Schema tag of `stage.json`.
pub const STAGE_SCHEMA: &str = "saelab.stage.v1";

pub use saelab_results::State;

/// `stage.json`: written last, atomically; its presence marks the stage
/// complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRecord {
    pub schema: String,
    pub kind: String,
    pub hash: String,
    pub deps: Vec<String>,
    /// The stage's inputs (as hashed).
    pub inputs: serde_json::Value,
    /// Output files, relative to the stage folder.
    pub outputs: Vec<String>,
    /// Wall time of the run that completed the stage (seconds).
    pub seconds: f64,
    /// Work units done (tokens harvested, vectors trained, tokens
    /// evaluated, pairs matched): with `seconds`, a measured rate.
    pub work_units: f64,
    pub saelab_version: String,
    pub machine: crate::machine::Machine,
}

/// A study's stage cache.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a stage.
    pub fn dir(&self, kind: &str, hash: &str) -> PathBuf {
        self.root.join(format!("{kind}-{}", short(hash)))
    }

    pub fn stage_dir(&self, s: &Stage) -> PathBuf {
        self.dir(&s.kind, &s.hash)
    }

    /// The record of a complete stage, if it is complete and its record
    /// is for this hash.
    pub fn record(&self, s: &Stage) -> Option<StageRecord> {
        let path = self.stage_dir(s).join("stage.json");
        let text = std::fs::read_to_string(path).ok()?;
        let r: StageRecord = serde_json::from_str(&text).ok()?;
        (r.hash == s.hash && r.schema == STAGE_SCHEMA).then_some(r)
    }

    pub fn state(&self, s: &Stage) -> State {
        if self.record(s).is_some() {
            State::Done
        } else if self.stage_dir(s).exists() {
            State::Partial
        } else {
            State::ToRun
        }
    }

    /// Writes `stage.json` (atomically, last).
    pub fn complete(&self, s: &Stage, rec: &StageRecord) -> Result<(), saelab_fsio::FsError> {
        saelab_fsio::write_json_atomic(&self.stage_dir(s).join("stage.json"), rec)
    }

    /// The folder of the train stage holding SAE `name`.
    pub fn sae_dir(&self, train_stage: &str, name: &str) -> PathBuf {
        self.dir("train", train_stage).join(name)
    }
}
