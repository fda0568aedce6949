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

/// Per-vector relative error: `max over rows of ‖a_r − b_r‖ / ‖b_r‖` for
/// rows of `d` values, and the row where it is largest. Unlike [`rel_err`]
/// it is not dominated by the largest entry of the whole tensor (SmolLM2's
/// residual stream has outliers ~5000× its median), so an error confined
/// to one position or to the ordinary-sized entries is still seen.
pub fn row_rel_err(a: &[f32], b: &[f32], d: usize) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    assert!(
        d > 0 && a.len().is_multiple_of(d),
        "{} values are not rows of {d}",
        a.len()
    );
    let mut worst = (0f64, 0);
    for (r, (ra, rb)) in a.chunks_exact(d).zip(b.chunks_exact(d)).enumerate() {
        let diff: f64 = ra
            .iter()
            .zip(rb)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let norm: f64 = rb.iter().map(|&y| f64::from(y).powi(2)).sum();
        let e = (diff / norm.max(1e-300)).sqrt();
        if e > worst.0 {
            worst = (e, r);
        }
    }
    worst
}

/// The fixture's greedy continuation (`greedy_ids` in `smollm2_ref.json`).
pub fn json_ids(file: &str, key: &str) -> Vec<u32> {
    let path = fixtures().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no array `{key}`"))
        .iter()
        .map(|x| x.as_u64().expect("token id") as u32)
        .collect()
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
        notice_skipped(&format!(
            "{} not fetched, SmolLM2 checks not run (run scripts/fetch-assets)",
            p.display()
        ));
        None
    }
}

/// Tell the person running the tests that a check did not run. Written to
/// the process's stderr directly: `eprintln!` output of a passing test is
/// captured by the test harness and never shown.
pub fn notice_skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
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
