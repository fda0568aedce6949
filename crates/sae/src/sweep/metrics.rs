//! `metrics.jsonl` of one SAE: one JSON [`StepMetrics`] line every
//! `log_every` steps (and at the last step). On resume the log is cut back
//! to the checkpoint's step, so it always matches the trainer state.

use super::error::SweepError;
use super::layout::METRICS_FILE;
use crate::trainer::StepMetrics;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An open metrics log, appending.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `<dir>/metrics.jsonl` keeping only the lines of steps
    /// `≤ upto` (lines a kill cut short are dropped too).
    pub fn open_truncated(dir: &Path, upto: u64) -> Result<MetricsLog, SweepError> {
        let path = dir.join(METRICS_FILE);
        let old = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SweepError::io(&path, e)),
        };
        let kept: String = old
            .lines()
            .filter(|l| step_of(l).is_some_and(|s| s <= upto))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != old || !path.exists() {
            saelab_fsio::write_atomic(&path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| SweepError::io(&path, e))?;
        Ok(MetricsLog { path, file })
    }

    /// Appends one line (one `write` call, so a kill leaves whole lines or
    /// a cut last line).
    pub fn write(&mut self, m: &StepMetrics) -> Result<(), SweepError> {
        let mut line = serde_json::to_string(m).map_err(|e| SweepError::Corrupt {
            path: self.path.clone(),
            msg: format!("cannot serialize metrics: {e}"),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| SweepError::io(&self.path, e))
    }

    /// Makes the appended lines durable.
    pub fn sync(&self) -> Result<(), SweepError> {
        self.file
            .sync_data()
            .map_err(|e| SweepError::io(&self.path, e))
    }
}

/// The `step` of a complete metrics line.
fn step_of(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}
