//! Feeding an SAE what it was trained on, beyond what `saelab_sae::Sae`
//! applies itself (its own `normalize_activations` / input scaling).
//!
//! SAELens SAEs trained on TransformerLens models loaded with
//! `center_writing_weights=True` (the default of `from_pretrained`, and
//! `gpt2-small-res-jb`'s registry entry) saw a model in which every weight
//! and bias writing to the residual stream (W_E, W_pos, W_O, b_O, W_out,
//! b_out) has its mean over d_model removed. Every residual-stream vector of
//! that model is then the original's minus its mean over d_model, so the
//! SAE input is exactly the row-centred residual ([`center_rows`]). The rest
//! of the forward pass reads the residual only through LayerNorm, which is
//! invariant to adding a multiple of the all-ones vector, so splicing the
//! reconstruction (made in centred coordinates) into the uncentred model
//! gives the same logits. This holds for LayerNorm models (GPT-2) only: an
//! RMSNorm model (Llama) is not shift invariant. Reconstruction metrics must
//! be computed against the centred input.

use super::{EvalError, Result};
use serde_json::Value;
use std::path::Path;

/// Subtracts from every row of `x` (B×d) its mean over the d entries (f64
/// mean): the residual of a `center_writing_weights` model.
pub fn center_rows(x: &mut [f32], d: usize) {
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "x is not rows of d = {d}"
    );
    for row in x.chunks_mut(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        row.iter_mut().for_each(|v| *v = (*v as f64 - mean) as f32);
    }
}

/// Reads `center_writing_weights` from a SAELens `cfg.json` in `dir`:
/// `model_from_pretrained_kwargs.center_writing_weights` at the top level
/// (pre-6.0) or under `metadata` (v6). `None` when the cfg does not say:
/// then SAELens's registry may (its `config_overrides`, e.g.
/// `gpt2-small-res-jb` → true), and the caller should take a flag.
pub fn saelens_center_writing_weights(dir: &Path) -> Result<Option<bool>> {
    let path = dir.join("cfg.json");
    let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
        path: path.clone(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| EvalError::Json {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let read = |root: Option<&Value>| {
        root.and_then(|r| r.get("model_from_pretrained_kwargs"))
            .and_then(|k| k.get("center_writing_weights"))
            .and_then(Value::as_bool)
    };
    Ok(read(v.get("metadata")).or_else(|| read(Some(&v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centering_removes_row_means() {
        let mut x = vec![1.0, 2.0, 3.0, 10.0, 10.0, 10.0];
        center_rows(&mut x, 3);
        assert_eq!(x, vec![-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn reads_cfg_in_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("cfg.json"),
            r#"{"metadata": {"model_from_pretrained_kwargs": {"center_writing_weights": true}}}"#,
        )
        .unwrap();
        assert_eq!(saelens_center_writing_weights(p).unwrap(), Some(true));
        std::fs::write(
            p.join("cfg.json"),
            r#"{"model_from_pretrained_kwargs": {"center_writing_weights": false}}"#,
        )
        .unwrap();
        assert_eq!(saelens_center_writing_weights(p).unwrap(), Some(false));
        std::fs::write(p.join("cfg.json"), r#"{"d_in": 4}"#).unwrap();
        assert_eq!(saelens_center_writing_weights(p).unwrap(), None);
    }
}
