//! Llama-family parity: a tiny GGUF mixing F32/F16/Q8_0/Q4_1 tensors against
//! HF transformers on its dequantized weights, and the real SmolLM2-135M GGUF
//! (when its asset is present) against transformers' GGUF loader.

mod common;
use common::*;
use saelab_lm::gguf::GgufFile;
use saelab_lm::{ForwardSpec, HookPoint, Model, Positions, Site};

fn check_hooks(m: &Model, fx: &Fixture, hooks: &[HookPoint], tol: f64) -> Vec<f32> {
    let (b, t, tokens) = fx.tokens();
    let mut spec = ForwardSpec {
        reads: hooks.to_vec(),
        splice: None,
        logits: true,
        positions: Positions::Normal,
    };
    let out = m.forward(&tokens, b, t, &mut spec).unwrap();
    for &h in hooks {
        let (_, want) = fx.f(&h.to_string());
        let e = rel_err(out.hook(h).unwrap(), want);
        assert!(e <= tol, "{h}: relative error {e}");
    }
    out.logits.unwrap()
}

#[test]
fn tiny_gguf_dequantizes_like_gguf_py() {
    let fx = load_fixture(&fixtures().join("llama_tiny_ref.safetensors"));
    let g = GgufFile::open(&fixtures().join("llama_tiny.gguf")).unwrap();
    let mut checked = 0;
    for t in &g.tensors {
        let Some((_, want)) = fx.f32s.get(&format!("dequant.{}", t.name)) else {
            continue;
        };
        let all = g.tensor_f32(&t.name, &t.shape.clone()).unwrap();
        assert_eq!(&all[..want.len()], &want[..], "{}", t.name);
        let (_, last) = fx.f(&format!("dequant_last.{}", t.name));
        assert_eq!(
            &all[all.len() - last.len()..],
            &last[..],
            "{} (tail)",
            t.name
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} tensors checked");
}

#[test]
fn tiny_gguf_matches_transformers() {
    let fx = load_fixture(&fixtures().join("llama_tiny_ref.safetensors"));
    let m = Model::load(fixtures().join("llama_tiny.gguf").to_str().unwrap()).unwrap();
    let hooks: Vec<HookPoint> = (0..2)
        .flat_map(|l| {
            [Site::ResidPre, Site::ResidMid, Site::ResidPost].map(|s| HookPoint::new(l, s))
        })
        .collect();
    let logits = check_hooks(&m, &fx, &hooks, 1e-4);
    let (_, want) = fx.f("logits");
    let e = rel_err(&logits, want);
    assert!(e <= 1e-4, "logits: relative error {e}");
    let (b, t, tokens) = fx.tokens();
    let ce = saelab_lm::ops::next_token_ce(&logits, &tokens, b, t, 256);
    assert!(rel_err(&ce, &fx.f("ce").1) <= 1e-4);
}

#[test]
fn smollm2_matches_transformers_and_says_paris() {
    let Some(path) = smollm2_path() else { return };
    let fx = load_fixture(&fixtures().join("smollm2_ref.safetensors"));
    let m = Model::load(path.to_str().unwrap()).unwrap();
    assert_eq!(
        (m.info.n_layers, m.info.d_model, m.info.vocab_size),
        (30, 576, 49152)
    );
    let hooks: Vec<HookPoint> = [0, 1, 2, 10, 20, 29]
        .iter()
        .map(|&l| HookPoint::new(l, Site::ResidPre))
        .chain([HookPoint::new(29, Site::ResidPost)])
        .collect();
    let logits = check_hooks(&m, &fx, &hooks, 1e-4);
    let (_, ids) = fx.ints.get("logit_ids").unwrap();
    let (_, want) = fx.f("logits_at_ids");
    let (_, t, _) = fx.tokens();
    let got: Vec<f32> = (0..t)
        .flat_map(|r| ids.iter().map(move |&i| (r, i as usize)))
        .map(|(r, i)| logits[r * 49152 + i])
        .collect();
    let e = rel_err(&got, want);
    assert!(e <= 1e-4, "logits: relative error {e}");

    // Tokenizer and greedy continuation.
    let tokens = m
        .tokenizer()
        .unwrap()
        .encode("The capital of France is")
        .unwrap();
    assert_eq!(tokens, fx.tokens().2);
    let mut ids = tokens.clone();
    for _ in 0..2 {
        let next = greedy_next(&m, &ids);
        ids.push(next);
    }
    let cont = m.tokenizer().unwrap().decode(&ids[tokens.len()..]).unwrap();
    assert!(cont.starts_with(" Paris"), "continuation {cont:?}");
}
