//! Online model fetches through `hf-hub` (a user's machine with a hub). On a
//! machine without one, fails with a message naming the offline alternatives.

use crate::error::{LmError, Result};
use std::path::PathBuf;

/// Downloads `config.json`, the safetensors weights and (if present)
/// `tokenizer.json` of hub model `name`; returns the local folder.
pub fn fetch_model(name: &str) -> Result<PathBuf> {
    let err = |msg: String| LmError::Resolve {
        name: name.to_string(),
        msg: format!(
            "{msg}. It is neither a local path nor reachable on the hub: pass a local HF folder \
             (config.json + *.safetensors) or a .gguf file, or run `saelab fetch-assets` and use \
             the offline default `smollm2-135m`"
        ),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| err(format!("hub client: {e}")))?;
    let repo = api.model(name.to_string());
    let config = repo
        .get("config.json")
        .map_err(|e| err(format!("config.json: {e}")))?;
    repo.get("model.safetensors")
        .map_err(|e| err(format!("model.safetensors: {e}")))?;
    let _ = repo.get("tokenizer.json");
    config
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| err("hub cache path has no parent".into()))
}
