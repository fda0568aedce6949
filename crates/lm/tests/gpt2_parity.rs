//! GPT-2 forward parity against HF transformers (fixture made by
//! `scripts/reference/gen_lm_fixtures.py`), hooks, splice and interventions.

mod common;
use common::*;
use rand::SeedableRng;
use saelab_lm::{ForwardSpec, HookPoint, Model, PosIntervention, Positions, Site, Splice};
use std::path::Path;

const SEED: u64 = 1234;
const D: usize = 64;
const L: usize = 3;
const VOCAB: usize = 50257;

/// Writes the tiny GPT-2 as an HF folder; `prefix` is prepended to names.
fn write_tiny_gpt2(dir: &Path, prefix: &str) {
    saelab_lm::testing::write_gpt2(dir, saelab_lm::testing::Gpt2Shape::TINY, SEED, prefix).unwrap();
}

fn tiny_gpt2(prefix: &str) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_gpt2(dir.path(), prefix);
    let m = Model::load(dir.path().to_str().unwrap()).unwrap();
    (dir, m)
}

fn all_hooks() -> Vec<HookPoint> {
    (0..L)
        .flat_map(|l| {
            [Site::ResidPre, Site::ResidMid, Site::ResidPost].map(|s| HookPoint::new(l, s))
        })
        .collect()
}

fn check_against(m: &Model, fx: &Fixture, prefix: &str, positions: Positions) {
    let (b, t, tokens) = fx.tokens();
    let mut spec = ForwardSpec {
        reads: all_hooks(),
        splice: None,
        logits: true,
        positions,
    };
    let out = m.forward(&tokens, b, t, &mut spec).unwrap();
    for h in all_hooks() {
        let (_, want) = fx.f(&format!("{prefix}{h}"));
        let got = out.hook(h).unwrap();
        let e = rel_err(got, want);
        assert!(e <= 1e-4, "{prefix}{h}: relative error {e}");
    }
    let logits = out.logits.unwrap();
    let (_, ids) = fx.ints.get("logit_ids").unwrap();
    let (_, want) = fx.f(&format!("{prefix}logits_at_ids"));
    let got: Vec<f32> = (0..b * t)
        .flat_map(|r| ids.iter().map(move |&i| (r, i as usize)))
        .map(|(r, i)| logits[r * VOCAB + i])
        .collect();
    let e = rel_err(&got, want);
    assert!(e <= 1e-4, "{prefix}logits: relative error {e}");
    let ce = saelab_lm::ops::next_token_ce(&logits, &tokens, b, t, VOCAB);
    let (_, want_ce) = fx.f(&format!("{prefix}ce"));
    let e = rel_err(&ce, want_ce);
    assert!(e <= 1e-4, "{prefix}ce: relative error {e}");
}

#[test]
fn weight_generator_matches_python() {
    let text = std::fs::read_to_string(fixtures().join("splitmix_check.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let name = v["name"].as_str().unwrap();
    let seed = v["model_seed"].as_u64().unwrap();
    let first: Vec<f32> = v["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(gen_tensor(name, first.len(), seed), first);
}

#[test]
fn matches_transformers_at_every_hook_and_logits() {
    let fx = load_fixture(&fixtures().join("gpt2_tiny_ref.safetensors"));
    let (_d, m) = tiny_gpt2("");
    check_against(&m, &fx, "", Positions::Normal);
}

#[test]
fn accepts_transformer_prefix() {
    let fx = load_fixture(&fixtures().join("gpt2_tiny_ref.safetensors"));
    let (_d, m) = tiny_gpt2("transformer.");
    check_against(&m, &fx, "", Positions::Normal);
}

#[test]
fn zero_intervention_matches_zeroed_wpe_reference() {
    let fx = load_fixture(&fixtures().join("gpt2_tiny_ref.safetensors"));
    let (_d, m) = tiny_gpt2("");
    check_against(&m, &fx, "zero_wpe.", Positions::Zero);
}

#[test]
fn zero_intervention_equals_zeroed_weights_bitwise() {
    let (_d, m) = tiny_gpt2("");
    let (_d2, mut m0) = tiny_gpt2("");
    if let saelab_lm::model::Arch::Gpt2(g) = &mut m0.arch {
        g.zero_wpe();
    }
    let tokens: Vec<u32> = (0..2 * 20).map(|i| (i * 7919 % VOCAB) as u32).collect();
    let hooks = all_hooks();
    let mut a = ForwardSpec {
        reads: hooks.clone(),
        splice: None,
        logits: true,
        positions: Positions::Zero,
    };
    let mut b = ForwardSpec {
        reads: hooks,
        splice: None,
        logits: true,
        positions: Positions::Normal,
    };
    let oa = m.forward(&tokens, 2, 20, &mut a).unwrap();
    let ob = m0.forward(&tokens, 2, 20, &mut b).unwrap();
    assert_eq!(oa.logits, ob.logits);
    for ((_, x), (_, y)) in oa.hooks.iter().zip(&ob.hooks) {
        assert_eq!(x, y);
    }
}

#[test]
fn shuffle_matches_transformers_with_permuted_position_ids() {
    // The shuffle intervention is wpe[σ(t)]: transformers with
    // `position_ids = σ` (σ(t) = (5t + 3) mod 16, stored in the fixture).
    let (_d, m) = tiny_gpt2("");
    let fx = load_fixture(&fixtures().join("gpt2_tiny_ref.safetensors"));
    let perm: Vec<usize> = (0..16).map(|t| (5 * t + 3) % 16).collect();
    let stored: Vec<usize> = fx.ints["perm"].1.iter().map(|&x| x as usize).collect();
    assert_eq!(perm, stored);
    check_against(&m, &fx, "perm.", Positions::Permuted(perm));
}

#[test]
fn shuffle_is_reproducible_and_differs_from_clean() {
    let (_d, m) = tiny_gpt2("");
    let tokens: Vec<u32> = (0..2 * 16).map(|i| (i * 104729 % VOCAB) as u32).collect();
    let h = vec![HookPoint::new(2, Site::ResidPost)];
    let run = |p: Positions| {
        let mut s = ForwardSpec {
            reads: h.clone(),
            splice: None,
            logits: false,
            positions: p,
        };
        m.forward(&tokens, 2, 16, &mut s).unwrap().hooks.remove(0).1
    };
    let perm = |seed| {
        PosIntervention::Shuffle.positions(16, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    };
    let a = run(perm(5));
    let b = run(perm(5));
    let c = run(perm(6));
    let clean = run(Positions::Normal);
    assert_eq!(a, b, "same seed, same result");
    assert_ne!(a, c, "different seed, different permutation");
    assert_ne!(a, clean, "shuffled differs from clean");
    // Position 0 of the shuffled run is the clean run with wpe[σ(0)]: the
    // first token sees only itself, so only its position matters.
    if let Positions::Permuted(p) = perm(5) {
        assert_eq!(p.len(), 16);
        let mut q = p.clone();
        q.sort();
        assert_eq!(q, (0..16).collect::<Vec<_>>());
    }
}

#[test]
fn identity_splice_leaves_logits_unchanged_and_reads_stop_early() {
    let (_d, m) = tiny_gpt2("");
    let tokens: Vec<u32> = (0..3 * 10).map(|i| (i * 31 % VOCAB) as u32).collect();
    let mut clean = ForwardSpec {
        reads: vec![],
        splice: None,
        logits: true,
        positions: Positions::Normal,
    };
    let base = m
        .forward(&tokens, 3, 10, &mut clean)
        .unwrap()
        .logits
        .unwrap();
    let mut calls = 0;
    let mut ident = |_x: &mut [f32], rows: usize, d: usize| {
        assert_eq!((rows, d), (30, D));
        calls += 1;
        Ok(())
    };
    let mut s = ForwardSpec {
        reads: vec![],
        splice: Some(Splice {
            hook: HookPoint::new(1, Site::ResidPre),
            f: &mut ident,
        }),
        logits: true,
        positions: Positions::Normal,
    };
    let spliced = m.forward(&tokens, 3, 10, &mut s).unwrap().logits.unwrap();
    drop(s);
    assert_eq!(calls, 1);
    assert_eq!(base, spliced);

    // Zero-ablation splice changes the output; a read at the splice hook
    // sees the clean value.
    let mut zero = |x: &mut [f32], _: usize, _: usize| {
        x.fill(0.0);
        Ok(())
    };
    let hp = HookPoint::new(1, Site::ResidPre);
    let mut s = ForwardSpec {
        reads: vec![hp],
        splice: Some(Splice {
            hook: hp,
            f: &mut zero,
        }),
        logits: true,
        positions: Positions::Normal,
    };
    let out = m.forward(&tokens, 3, 10, &mut s).unwrap();
    assert_ne!(out.logits.as_ref().unwrap(), &base);
    let mut r = ForwardSpec::reads(&[hp]);
    let clean_read = m.forward(&tokens, 3, 10, &mut r).unwrap();
    assert_eq!(out.hook(hp), clean_read.hook(hp));
    assert!(clean_read.logits.is_none());
}

#[test]
fn bad_inputs_are_named() {
    let (dir, m) = tiny_gpt2("");
    let e = m
        .forward(
            &[0u32; 70],
            1,
            70,
            &mut ForwardSpec::reads(&[HookPoint::new(0, Site::ResidPre)]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds") && e.contains("64"), "{e}");
    let e = m
        .forward(
            &[60000u32; 4],
            1,
            4,
            &mut ForwardSpec::reads(&[HookPoint::new(0, Site::ResidPre)]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("60000"), "{e}");
    let e = m
        .forward(
            &[1u32; 4],
            1,
            4,
            &mut ForwardSpec::reads(&[HookPoint::new(3, Site::ResidPre)]),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blocks.3.hook_resid_pre") && e.contains("3 layers"),
        "{e}"
    );

    // Truncated safetensors.
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = Model::load(dir.path().to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("safetensors"),
        "{e}"
    );
    // Garbage.
    std::fs::write(&st, b"not a tensor file at all").unwrap();
    let e = Model::load(dir.path().to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");

    // Wrong shape.
    let d2 = tempfile::tempdir().unwrap();
    write_tiny_gpt2(d2.path(), "");
    let cfg = std::fs::read_to_string(d2.path().join("config.json"))
        .unwrap()
        .replace("\"n_positions\":64", "\"n_positions\":32");
    std::fs::write(d2.path().join("config.json"), cfg).unwrap();
    let e = Model::load(d2.path().to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("wpe.weight") && e.contains("[64, 64]") && e.contains("[32, 64]"),
        "{e}"
    );

    // Missing file.
    let e = Model::load("/nonexistent/model.gguf")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}

#[test]
fn unreachable_hub_names_the_offline_alternatives() {
    // An endpoint that refuses connections at once stands in for "no hub".
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    std::env::set_var("HF_HOME", tempfile::tempdir().unwrap().keep());
    let e = Model::load("gpt2").err().unwrap().to_string();
    assert!(
        e.contains("`gpt2`") && e.contains("local HF folder") && e.contains("fetch-assets"),
        "{e}"
    );
}
