//! Tokenizers: GPT-2 byte-level BPE (`tiktoken-rs` r50k_base, ranks compiled
//! in), HF `tokenizer.json` (`tokenizers` crate), and the byte-level BPE
//! stored in a GGUF's metadata (turned into an HF tokenizer definition).
//! Encoding never adds special tokens: packing decides where BOS goes.

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;
use std::cell::RefCell;
use std::path::Path;

enum Inner {
    Tiktoken(&'static tiktoken_rs::CoreBPE),
    Hf(Box<tokenizers::Tokenizer>),
}

pub struct Tokenizer {
    inner: Inner,
    /// Token prepended to documents / rows.
    pub bos: u32,
    /// Token that ends a document.
    pub eos: u32,
    /// Human-readable origin, for manifests.
    pub kind: String,
}

impl Tokenizer {
    /// GPT-2's encoding; `<|endoftext|>` (50256) is both BOS and EOS.
    pub fn gpt2() -> Tokenizer {
        Tokenizer {
            inner: Inner::Tiktoken(tiktoken_rs::r50k_base_singleton()),
            bos: 50256,
            eos: 50256,
            kind: "gpt2-bpe (r50k_base)".into(),
        }
    }

    /// An HF `tokenizer.json`; BOS/EOS looked up by the usual token names
    /// unless given.
    pub fn from_hf_file(path: &Path, bos: Option<u32>, eos: Option<u32>) -> Result<Tokenizer> {
        let tk = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| LmError::Tokenizer(format!("{}: {e}", path.display())))?;
        let find = |names: &[&str]| names.iter().find_map(|n| tk.token_to_id(n));
        let bos = bos
            .or_else(|| find(&["<|endoftext|>", "<s>", "<|begin_of_text|>", "<bos>"]))
            .ok_or_else(|| LmError::Tokenizer(format!("{}: no BOS token found", path.display())))?;
        let eos = eos
            .or_else(|| find(&["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"]))
            .unwrap_or(bos);
        Ok(Tokenizer {
            inner: Inner::Hf(Box::new(tk)),
            bos,
            eos,
            kind: format!("hf tokenizer.json ({})", path.display()),
        })
    }

    /// The byte-level BPE in a GGUF (`tokenizer.ggml.model = gpt2`). A GGUF
    /// without `tokenizer.ggml.merges` (e.g. the test fixture's 256-token
    /// byte vocabulary) is a BPE with no merges: every byte is one token. Its
    /// vocabulary must then spell all 256 bytes, or text could not be encoded.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let err = |msg: String| LmError::Tokenizer(format!("{}: {msg}", g.path.display()));
        let model = g
            .meta("tokenizer.ggml.model")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer.ggml.model `{model}` is not supported (supported: gpt2 byte-level BPE)"
            )));
        }
        let tokens = g
            .meta("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .ok_or_else(|| err("tokenizer.ggml.tokens missing".into()))?;
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let s = t
                .as_str()
                .ok_or_else(|| err(format!("token {i} is not a string")))?;
            vocab.insert(s.to_string(), serde_json::Value::from(i as u64));
        }
        let merges = gguf_merges(g, &vocab).map_err(err)?;
        let pre = g
            .meta("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let byte_level = serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
        });
        // llama.cpp's `smollm` pre-tokenizer: single digits, then GPT-2's regex.
        let pre_tokenizer = match pre {
            "smollm" | "starcoder" => serde_json::json!({
                "type": "Sequence",
                "pretokenizers": [ {"type": "Digits", "individual_digits": true}, byte_level ]
            }),
            "default" | "gpt2" | "gpt-2" => byte_level,
            other => {
                return Err(err(format!(
                    "pre-tokenizer `{other}` is not supported (supported: gpt2, smollm)"
                )))
            }
        };
        let def = serde_json::json!({
            "version": "1.0",
            "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": merges}
        });
        let tk: tokenizers::Tokenizer = def
            .to_string()
            .parse()
            .map_err(|e| err(format!("cannot build the BPE tokenizer: {e}")))?;
        let id = |k: &str| g.meta(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let bos = id("tokenizer.ggml.bos_token_id")
            .ok_or_else(|| err("tokenizer.ggml.bos_token_id missing".into()))?;
        let eos = id("tokenizer.ggml.eos_token_id").unwrap_or(bos);
        Ok(Tokenizer {
            inner: Inner::Hf(Box::new(tk)),
            bos,
            eos,
            kind: format!("gguf byte-level BPE (pre: {pre})"),
        })
    }

    /// Token ids of `text`, no special tokens added or parsed.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Tiktoken(bpe) => Ok(bpe.encode_ordinary(text)),
            Inner::Hf(tk) => tk
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| LmError::Tokenizer(e.to_string())),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Inner::Tiktoken(bpe) => bpe
                .decode(ids)
                .map_err(|e| LmError::Tokenizer(e.to_string())),
            Inner::Hf(tk) => tk
                .decode(ids, false)
                .map_err(|e| LmError::Tokenizer(e.to_string())),
        }
    }
}

/// The merges of a GGUF BPE; none if the key is absent (llama.cpp refuses
/// such a file, gguf-py cannot write an empty array, so "absent" is how a
/// merge-less vocabulary is stored), in which case every byte must be a
/// token of `vocab`.
fn gguf_merges(
    g: &GgufFile,
    vocab: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<Vec<serde_json::Value>, String> {
    let Some(merges) = g.meta("tokenizer.ggml.merges") else {
        if let Some(b) = (0..=255u8).find(|&b| !vocab.contains_key(&byte_symbol(b).to_string())) {
            return Err(format!(
                "no tokenizer.ggml.merges and no token for byte {b:#04x}: a BPE without merges \
                 needs all 256 byte tokens"
            ));
        }
        return Ok(Vec::new());
    };
    let merges = merges
        .as_array()
        .ok_or("tokenizer.ggml.merges is not an array")?;
    Ok(merges
        .iter()
        .filter_map(|m| m.as_str().map(|s| serde_json::Value::from(s.to_string())))
        .collect())
}

/// GPT-2's byte-to-unicode spelling of byte `b`: printable Latin-1 bytes
/// stand for themselves, the others for U+0100 upwards in byte order.
fn byte_symbol(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).unwrap_or('\u{FFFD}')
    }
}

/// A tokenizer for callers that want an infallible function (the row
/// packers): a text that fails to encode gives no ids, and the first
/// failure is kept for the caller to report once the rows are read.
pub struct LenientTokenizer<'t> {
    tokenizer: &'t Tokenizer,
    first_error: RefCell<Option<String>>,
}

impl<'t> LenientTokenizer<'t> {
    /// Wraps `tokenizer`.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        LenientTokenizer {
            tokenizer,
            first_error: RefCell::new(None),
        }
    }

    /// The ids of `text`, or none if it fails to encode (the failure kept).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text).unwrap_or_else(|e| {
            self.first_error.borrow_mut().get_or_insert(e.to_string());
            Vec::new()
        })
    }

    /// The first failure since the last call, if any.
    pub fn take_error(&self) -> Option<String> {
        self.first_error.borrow_mut().take()
    }
}

#[cfg(test)]
mod tests {
    use super::byte_symbol;

    #[test]
    fn byte_symbols_are_gpt2s() {
        assert_eq!(byte_symbol(b'a'), 'a');
        assert_eq!(byte_symbol(b' '), 'Ġ'); // U+0120
        assert_eq!(byte_symbol(b'\n'), 'Ċ'); // U+010A
        assert_eq!(byte_symbol(0), '\u{100}');
        assert_eq!(byte_symbol(0xAD), '\u{143}');
        let all: std::collections::HashSet<char> = (0..=255).map(byte_symbol).collect();
        assert_eq!(all.len(), 256);
    }
}
