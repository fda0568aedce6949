//! `concat` packing tokenizes only the head of a long document
//! (`saelab_data::packing::tokenize_head`). This checks, with the real GPT-2
//! and SmolLM2 tokenizers, that the head gives exactly the first tokens of
//! whole-document tokenization, on documents of many lengths: the tokenizer
//! fixture text (whitespace runs, digits, accents, CJK, emoji, code) cut at
//! many points, and the fetched corpora when present.

mod common;
use common::*;
use saelab_data::corpus::Corpus;
use saelab_data::packing::tokenize_head;
use saelab_lm::Tokenizer;

/// Keeps to check: the default (1023 = 1024 minus BOS) and small ones, so
/// that the head path is taken on shorter documents too.
const KEEPS: [usize; 3] = [1023, 100, 7];

/// Documents cut from the fixture text repeated, at many lengths.
fn fixture_docs() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("tokenizer_text.txt")).unwrap();
    let long: Vec<char> = text.repeat(12).chars().collect();
    (0..48)
        .map(|i| 1500 + i * 1237 + (i * i) % 97)
        .chain([long.len()])
        .map(|n| long[..n.min(long.len())].iter().collect())
        .collect()
}

/// From a fetched corpus (if present): its first `n` documents of at
/// least 3.1 kB (long enough for the head path with keep 7), and `n` more
/// made by joining consecutive documents with blank lines up to ~30 kB.
fn corpus_docs(name: &str, n: usize) -> Vec<String> {
    let root = saelab_assets::root();
    let path = saelab_assets::corpus_path(&root, name).unwrap();
    if !path.is_file() {
        notice_skipped(&format!(
            "packing_head: corpus {name} not fetched, not checked"
        ));
        return vec![];
    }
    let all: Vec<String> = Corpus::open(&path)
        .unwrap()
        .documents()
        .take(2000)
        .map(|d| d.unwrap())
        .collect();
    let mut out: Vec<String> = all
        .iter()
        .filter(|d| d.len() >= 3100)
        .take(n)
        .cloned()
        .collect();
    let mut joined = String::new();
    for d in &all {
        joined.push_str(d);
        joined.push_str("\n\n");
        if joined.len() >= 30_000 {
            out.push(std::mem::take(&mut joined));
            if out.len() >= 2 * n {
                break;
            }
        }
    }
    out
}

/// Compares head and whole tokenization on every document and keep;
/// returns how often only a head was tokenized.
fn check(name: &str, tok: &Tokenizer, docs: &[String]) -> usize {
    let mut head_only = 0;
    for doc in docs {
        let whole = tok.encode(doc).unwrap();
        for keep in KEEPS {
            let mut asked = 0;
            let mut f = |s: &str| {
                asked += s.len();
                tok.encode(s).unwrap()
            };
            let (got, cut) = tokenize_head(doc, keep, &mut f);
            let want = &whole[..keep.min(whole.len())];
            if got != want {
                let i = got.iter().zip(want).position(|(a, b)| a != b);
                panic!(
                    "{name}: keep {keep}, document of {} bytes: head differs at token {i:?} \
                     (got {} tokens, want {})",
                    doc.len(),
                    got.len(),
                    want.len()
                );
            }
            assert_eq!(cut, whole.len() > keep, "{name}: keep {keep}");
            head_only += usize::from(asked < doc.len());
            // More than the document: a head was tokenized and then the whole
            // text anyway, i.e. the safety net fired (the word-end cut was not
            // prefix-stable) or the head had too few tokens.
            assert!(
                asked <= doc.len(),
                "{name}: keep {keep}, document of {} bytes: fell back to the whole text",
                doc.len()
            );
        }
    }
    println!(
        "{name}: {} documents × {} keeps, head-only tokenization in {head_only}",
        docs.len(),
        KEEPS.len()
    );
    head_only
}

fn check_all(name: &str, tok: &Tokenizer) {
    let fx = fixture_docs();
    assert!(check(&format!("{name} fixture"), tok, &fx) > 60);
    for corpus in saelab_assets::CORPORA {
        let docs = corpus_docs(corpus, 10);
        let head_only = check(&format!("{name} {corpus}"), tok, &docs);
        assert!(docs.is_empty() || head_only > 0, "{name} {corpus}");
    }
}

#[test]
fn gpt2_head_equals_whole_document_tokens() {
    check_all("gpt2", &Tokenizer::gpt2());
}

#[test]
fn smollm2_head_equals_whole_document_tokens() {
    let Some(path) = smollm2_path() else { return };
    let g = saelab_lm::gguf::GgufFile::open(&path).unwrap();
    check_all("smollm2", &Tokenizer::from_gguf(&g).unwrap());
}
