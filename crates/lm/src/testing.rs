//! Synthetic models for tests and benchmarks: GPT-2-shaped HF folders whose
//! weights come from a formula (splitmix64 per tensor, seeded by the tensor
//! name), so the Python reference (`scripts/reference/gen_lm_fixtures.py`)
//! builds bit-identical weights without any weight file being committed.

use crate::error::{LmError, Result};
use std::path::Path;

fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The weight formula of `scripts/reference/README.md`: `n` values of tensor
/// `name` (HF name, row-major HF shape).
pub fn gen_tensor(name: &str, n: usize, model_seed: u64) -> Vec<f32> {
    let (center, scale) =
        if name.ends_with(".weight") && (name.contains("ln_") || name.contains("norm")) {
            (1.0f64, 0.1f64)
        } else if name.ends_with(".bias") {
            (0.0, 0.02)
        } else {
            (0.0, 0.08)
        };
    let mut state = fnv1a64(name) ^ model_seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            let u = (z >> 40) as f64 / (1u64 << 24) as f64;
            (center + scale * (2.0 * u - 1.0)) as f32
        })
        .collect()
}

/// Shape of a synthetic GPT-2.
#[derive(Debug, Clone, Copy)]
pub struct Gpt2Shape {
    pub vocab: usize,
    pub n_positions: usize,
    pub d: usize,
    pub n_layer: usize,
    pub n_head: usize,
}

impl Gpt2Shape {
    /// The parity fixture's model: GPT-2 vocabulary, 3 layers of width 64.
    pub const TINY: Gpt2Shape = Gpt2Shape {
        vocab: 50257,
        n_positions: 64,
        d: 64,
        n_layer: 3,
        n_head: 4,
    };
    /// GPT-2 small.
    pub const SMALL: Gpt2Shape = Gpt2Shape {
        vocab: 50257,
        n_positions: 1024,
        d: 768,
        n_layer: 12,
        n_head: 12,
    };

    /// HF tensor names and shapes.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.d;
        let mut t = vec![
            ("wte.weight".to_string(), vec![self.vocab, d]),
            ("wpe.weight".to_string(), vec![self.n_positions, d]),
        ];
        for i in 0..self.n_layer {
            for (n, s) in [
                ("ln_1.weight", vec![d]),
                ("ln_1.bias", vec![d]),
                ("attn.c_attn.weight", vec![d, 3 * d]),
                ("attn.c_attn.bias", vec![3 * d]),
                ("attn.c_proj.weight", vec![d, d]),
                ("attn.c_proj.bias", vec![d]),
                ("ln_2.weight", vec![d]),
                ("ln_2.bias", vec![d]),
                ("mlp.c_fc.weight", vec![d, 4 * d]),
                ("mlp.c_fc.bias", vec![4 * d]),
                ("mlp.c_proj.weight", vec![4 * d, d]),
                ("mlp.c_proj.bias", vec![d]),
            ] {
                t.push((format!("h.{i}.{n}"), s));
            }
        }
        t.push(("ln_f.weight".into(), vec![d]));
        t.push(("ln_f.bias".into(), vec![d]));
        t
    }
}

/// Writes a GPT-2 HF folder (`config.json`, `model.safetensors`) with
/// formula weights; `prefix` is prepended to tensor names (`transformer.`).
pub fn write_gpt2(dir: &Path, shape: Gpt2Shape, model_seed: u64, prefix: &str) -> Result<()> {
    let cfg = serde_json::json!({
        "model_type": "gpt2", "vocab_size": shape.vocab, "n_positions": shape.n_positions,
        "n_embd": shape.d, "n_layer": shape.n_layer, "n_head": shape.n_head,
        "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"
    });
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).map_err(|e| LmError::io(&cfg_path, e))?;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shape
        .tensors()
        .into_iter()
        .map(|(n, s)| {
            let v = gen_tensor(&n, s.iter().product(), model_seed);
            (
                format!("{prefix}{n}"),
                s,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let path = dir.join("model.safetensors");
    let st_err = |e: safetensors::SafeTensorError| LmError::Safetensors {
        path: path.clone(),
        msg: e.to_string(),
    };
    let views = data
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(st_err)
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &path).map_err(st_err)
}
