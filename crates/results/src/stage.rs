//! Where a study's stage stands, as `results.json` lists it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a stage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Done,
    Partial,
    #[serde(rename = "to run")]
    ToRun,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Done => "done",
            State::Partial => "partial",
            State::ToRun => "to run",
        })
    }
}

/// One stage of the plan with its state and run time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageEntry {
    pub kind: String,
    pub hash: String,
    pub state: State,
    pub dir: PathBuf,
    pub seconds: Option<f64>,
}
