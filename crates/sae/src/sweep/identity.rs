//! The identity of a run (what resuming must match) and `progress.json`,
//! as typed serde structs written and read here only. Identities are
//! compared as typed values (f32 fields do not round-trip through JSON
//! values exactly); a mismatch is reported by field path.

use super::error::SweepError;
use super::layout::PROGRESS_FILE;
use crate::config::TrainConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Everything that determines a sweep's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// [`super::BatchSource::identity`].
    pub source: Value,
    /// Resolved number of steps.
    pub steps: u64,
    /// Vectors per step.
    pub batch: usize,
    /// The SAEs, in training order, with their full trainer configs.
    pub saes: Vec<SaeIdentity>,
}

/// One SAE of a [`RunIdentity`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeIdentity {
    pub name: String,
    pub train: TrainConfig,
    /// The source lane (hook) it trains on; absent for lane 0, so one-hook
    /// runs keep the identity they had before lanes existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lane: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl RunIdentity {
    /// Paths of the fields where `self` and `other` differ
    /// (`saes[1].train.lr`, `source.hook`, `steps`).
    pub fn diff(&self, other: &RunIdentity) -> Vec<String> {
        let mut out = Vec::new();
        if self == other {
            return out;
        }
        match (serde_json::to_value(self), serde_json::to_value(other)) {
            (Ok(a), Ok(b)) => json_diff("", &a, &b, &mut out),
            _ => out.push("(unserializable)".into()),
        }
        if out.is_empty() {
            // Typed values differ below JSON precision (should not happen).
            out.push("(a float below JSON precision)".into());
        }
        out
    }
}

/// Leaf paths where two JSON values differ.
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => json_diff(&join(k), va, vb, out),
                    _ => out.push(join(k)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            out.push(format!("{path} ({} vs {} entries)", x.len(), y.len()))
        }
        _ if a != b => out.push(if path.is_empty() {
            "(root)".into()
        } else {
            path.into()
        }),
        _ => {}
    }
}

const PROGRESS_FORMAT: &str = "saelab_sweep_progress";
const PROGRESS_VERSION: u32 = 1;

/// `<out>/progress.json`: written at the start (incomplete) and once more,
/// after the final SAE files, with `complete = true`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressFile {
    pub format: String,
    pub version: u32,
    pub run: RunIdentity,
    pub complete: bool,
}

impl ProgressFile {
    pub fn new(run: RunIdentity, complete: bool) -> Self {
        ProgressFile {
            format: PROGRESS_FORMAT.into(),
            version: PROGRESS_VERSION,
            run,
            complete,
        }
    }

    /// Reads `<out>/progress.json`; `None` if there is none.
    pub fn load(out: &Path) -> Result<Option<ProgressFile>, SweepError> {
        let path = out.join(PROGRESS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SweepError::io(&path, e)),
        };
        let corrupt = |msg: String| SweepError::Corrupt {
            path: path.clone(),
            msg,
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("bad JSON: {e}")))?;
        if v.get("format").and_then(Value::as_str) != Some(PROGRESS_FORMAT)
            || v.get("version").and_then(Value::as_u64) != Some(PROGRESS_VERSION.into())
        {
            return Err(corrupt(
                "not a progress file of this saelab version (older run?); use another output folder"
                    .into(),
            ));
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| corrupt(format!("unreadable: {e}")))
    }

    /// Writes `<out>/progress.json` atomically.
    pub fn save(&self, out: &Path) -> Result<(), SweepError> {
        Ok(saelab_fsio::write_json_atomic(
            &out.join(PROGRESS_FILE),
            self,
        )?)
    }
}
