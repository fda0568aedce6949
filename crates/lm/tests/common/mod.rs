//! Test support: the deterministic weight generator shared with the Python
//! reference (`scripts/reference/README.md`), fixture loading, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lm")
}

#[allow(unused_imports)]
pub use saelab_lm::testing::gen_tensor;

/// A reference fixture: tensors by name as f32 / i64 values with shapes.
pub struct Fixture {
    pub f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

pub fn load_fixture(path: &Path) -> Fixture {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut f32s = HashMap::new();
    let mut ints = HashMap::new();
    for (name, v) in st.tensors() {
        let shape = v.shape().to_vec();
        let b = v.data();
        match v.dtype() {
            safetensors::Dtype::F32 => {
                f32s.insert(
                    name,
                    (
                        shape,
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                );
            }
            safetensors::Dtype::I32 => {
                ints.insert(
                    name,
                    (
                        shape,
                        b.chunks_exact(4)
                            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                            .collect(),
                    ),
                );
            }
            safetensors::Dtype::I64 => {
                ints.insert(
                    name,
                    (
                        shape,
                        b.chunks_exact(8)
                            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                );
            }
            other => panic!("fixture {name}: unexpected dtype {other:?}"),
        }
    }
    Fixture { f32s, ints }
}

impl Fixture {
    pub fn f(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.f32s
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no f32 tensor {name}"))
    }
    pub fn tokens(&self) -> (usize, usize, Vec<u32>) {
        let (s, v) = self.ints.get("tokens").expect("fixture has no tokens");
        (s[0], s[1], v.iter().map(|&x| x as u32).collect())
    }
}

/// max |a - b| / max |b|
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-12);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

/// The SmolLM2 GGUF from the offline assets, if fetched.
pub fn smollm2_path() -> Option<PathBuf> {
    let p = saelab_assets::default_model_gguf().expect("the default model is known");
    if p.exists() {
        Some(p)
    } else if saelab_assets::assets_required() {
        panic!(
            "{} is missing and SAELAB_REQUIRE_ASSETS is set: run scripts/fetch-assets",
            p.display()
        );
    } else {
        eprintln!(
            "skipping: {} not fetched (run scripts/fetch-assets)",
            p.display()
        );
        None
    }
}

/// The greedy next token after `ids` (one row, logits of the last position).
pub fn greedy_next(m: &saelab_lm::Model, ids: &[u32]) -> u32 {
    let mut s = saelab_lm::ForwardSpec {
        reads: vec![],
        splice: None,
        logits: true,
        positions: saelab_lm::Positions::Normal,
    };
    let lg = m
        .forward(ids, 1, ids.len(), &mut s)
        .unwrap()
        .logits
        .unwrap();
    let v = m.info.vocab_size;
    let last = &lg[(ids.len() - 1) * v..];
    (0..v).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap() as u32
}
