//! The presets of `experiments/`, embedded in the binary so that `saelab
//! study` runs the quick study from any folder, and a spec argument may be
//! a preset name instead of a path.

use crate::spec::{Spec, SpecError};
use std::path::{Path, PathBuf};

/// (name, TOML text) of every preset.
pub const PRESETS: &[(&str, &str)] = &[
    ("smoke", include_str!("../../../experiments/smoke.toml")),
    ("quick", include_str!("../../../experiments/quick.toml")),
    (
        "study-smollm2",
        include_str!("../../../experiments/study-smollm2.toml"),
    ),
    (
        "study-gpt2",
        include_str!("../../../experiments/study-gpt2.toml"),
    ),
];

/// The preset the README's main command runs.
pub const DEFAULT_PRESET: &str = "quick";

/// Loads `arg`: an existing file, else a preset name.
pub fn load(arg: &str) -> Result<Spec, SpecError> {
    let path = Path::new(arg);
    if path.exists() {
        return Spec::load(path);
    }
    match PRESETS.iter().find(|(n, _)| *n == arg) {
        Some((name, text)) => Spec::parse(text, &PathBuf::from(format!("experiments/{name}.toml"))),
        None => Err(SpecError {
            file: path.to_path_buf(),
            entry: "file".into(),
            problem: format!(
                "no such file, and not a preset ({})",
                PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
