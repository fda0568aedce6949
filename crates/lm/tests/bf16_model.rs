//! The bf16 fast path of whole models against their f32 default: the
//! residual stream stays within the stated error (relative Frobenius error
//! per hook), differs from f32 (the path is really taken), leaves the f32
//! path untouched when switched back, and SmolLM2 still says " Paris".

mod common;

use common::{greedy_next, smollm2_path};
use saelab_lm::{ForwardSpec, HookPoint, Model, Precision, Site};

/// ‖a − b‖ / ‖b‖ in f64.
fn fro_rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

fn resid(m: &Model, tokens: &[u32], rows: usize, hooks: &[HookPoint]) -> Vec<Vec<f32>> {
    let t = tokens.len() / rows;
    let out = m
        .forward(tokens, rows, t, &mut ForwardSpec::reads(hooks))
        .unwrap();
    assert_eq!(out.hooks.len(), hooks.len());
    out.hooks.into_iter().map(|(_, a)| a).collect()
}

/// Errors per hook of bf16 vs f32; asserts the bounds and the round trip.
fn check(m: &mut Model, tokens: &[u32], rows: usize, hooks: &[HookPoint], bound: f64) -> Vec<f64> {
    let f32_acts = resid(m, tokens, rows, hooks);
    m.set_precision(Precision::Bf16);
    assert_eq!(m.info.precision, Precision::Bf16);
    let bf_acts = resid(m, tokens, rows, hooks);
    let errs: Vec<f64> = bf_acts
        .iter()
        .zip(&f32_acts)
        .map(|(a, b)| fro_rel(a, b))
        .collect();
    for (h, e) in hooks.iter().zip(&errs) {
        eprintln!("bf16 vs f32 at {h}: relative error {e:.2e}");
        assert!(
            *e > 0.0,
            "{h}: bf16 gave f32's bits: the fast path was not taken"
        );
        assert!(*e < bound, "{h}: relative error {e} ≥ {bound}");
    }
    m.set_precision(Precision::F32);
    let back = resid(m, tokens, rows, hooks);
    assert_eq!(back, f32_acts, "switching back to f32 restores its bits");
    errs
}

#[test]
fn gpt2_bf16_residuals_within_bound() {
    let dir = tempfile::tempdir().unwrap();
    saelab_lm::testing::write_gpt2(dir.path(), saelab_lm::testing::Gpt2Shape::TINY, 3, "").unwrap();
    let mut m = Model::load(dir.path().to_str().unwrap()).unwrap();
    let (rows, t) = (3usize, 16usize);
    let tokens: Vec<u32> = (0..rows * t)
        .map(|i| ((i * 7919) % m.info.vocab_size) as u32)
        .collect();
    let hooks: Vec<HookPoint> = (1..m.info.n_layers)
        .map(|l| HookPoint::new(l, Site::ResidPre))
        .collect();
    check(&mut m, &tokens, rows, &hooks, 2e-2);
}

#[test]
fn smollm2_bf16_residuals_within_bound_and_says_paris() {
    let Some(path) = smollm2_path() else { return };
    let mut m = Model::load(path.to_str().unwrap()).unwrap();
    let tok = m.tokenizer().unwrap();
    let text = "The study trains sparse autoencoders on the residual stream of a \
                language model and compares the features they learn across seeds.";
    let tokens = tok.encode(text).unwrap();
    let hooks = [
        HookPoint::new(8, Site::ResidPre),
        HookPoint::new(20, Site::ResidPre),
    ];
    let errs = check(&mut m, &tokens, 1, &hooks, 3e-2);
    eprintln!("SmolLM2 bf16 errors: {errs:?}");

    m.set_precision(Precision::Bf16);
    let prompt = m
        .tokenizer()
        .unwrap()
        .encode("The capital of France is")
        .unwrap();
    let best = greedy_next(&m, &prompt);
    let word = m.tokenizer().unwrap().decode(&[best]).unwrap();
    assert_eq!(word, " Paris");
}
