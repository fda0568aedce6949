//! Packing tokenized documents into fixed-length token rows (SPEC §1.5).
//!
//! Two layouts:
//! - [`Packing::Concat`] (the BatchTopK codebase's activation store, the
//!   study's training data): per document prepend BOS, tokenize, truncate the
//!   document (BOS included) to `max_doc_tokens` (default 1024), concatenate
//!   all documents and cut the stream into rows of `seq_len`. A row starts
//!   with BOS only if a document happens to start there.
//! - [`Packing::BosRows`] (the study's analysis runs): the documents are
//!   joined by EOS into one stream (`doc₁ EOS doc₂ EOS doc₃ …`, no EOS after
//!   the last one, no truncation) and every row is BOS followed by the next
//!   `seq_len − 1` tokens of that stream.
//!
//! [`RowPacker`] is streaming: documents are pushed one at a time and only
//! the tokens of the unfinished row are held. A trailing partial row is
//! dropped. Packing is deterministic: the rows depend only on the documents'
//! order and the tokenizer.
//!
//! The tokenize closure must return the document's tokens *without* special
//! tokens (no BOS/EOS of its own); the packer adds them. Documents that
//! tokenize to nothing are skipped.
//!
//! `concat` keeps at most `max_doc_tokens − 1` tokens of a document, so a
//! long document is not tokenized whole: [`tokenize_head`] tokenizes a
//! prefix ending at a word end and checks it against a longer one. This
//! gives exactly the first tokens of whole-document tokenization for
//! tokenizers that split before a space following a letter or digit (the
//! byte-level BPEs of GPT-2, Llama 3 and SmolLM2, whose pre-tokenizer
//! regexes never join `…x` and ` y`); `crates/lm/tests/packing_head.rs`
//! checks it against the real GPT-2 and SmolLM2 tokenizers.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// Default cap on the tokens of one document (BOS included) for
/// [`Packing::Concat`].
pub const DEFAULT_MAX_DOC_TOKENS: usize = 1024;

/// Default row length.
pub const DEFAULT_SEQ_LEN: usize = 128;

/// [`tokenize_head`] first tries a prefix of this many bytes per token
/// wanted (a byte-level BPE token spans ≥ 1 byte, English ≈ 4.5 on average)…
const HEAD_BYTES_PER_TOKEN: usize = 8;
/// … but at least this many bytes.
const MIN_HEAD_BYTES: usize = 1024;

/// Errors from configuring a packer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackingError {
    #[error("unknown packing `{0}` (expected `concat` or `bos_rows`)")]
    Unknown(String),
    #[error("seq_len must be at least {min} for packing `{packing}`, got {got}")]
    SeqLen {
        packing: Packing,
        min: usize,
        got: usize,
    },
    #[error("max_doc_tokens must be at least 1")]
    MaxDocTokens,
}

/// How documents are laid out in token rows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// BOS + document (truncated), concatenated, cut into rows.
    #[default]
    Concat,
    /// Every row = BOS + the next `seq_len − 1` tokens of the EOS-joined stream.
    BosRows,
}

impl Packing {
    /// The config / CLI name: `concat` or `bos_rows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Packing::Concat => "concat",
            Packing::BosRows => "bos_rows",
        }
    }
}

impl fmt::Display for Packing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Packing {
    type Err = PackingError;

    /// Accepts `concat`, `bos_rows` (also `bos-rows`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "concat" => Ok(Packing::Concat),
            "bos_rows" | "bos-rows" | "bosrows" => Ok(Packing::BosRows),
            _ => Err(PackingError::Unknown(s.to_string())),
        }
    }
}

/// Streaming packer of documents into rows of exactly `seq_len` tokens.
///
/// ```
/// use saelab_data::packing::{Packing, RowPacker};
/// let mut tok = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
/// let mut p = RowPacker::new(Packing::Concat, 4, 0, 0).unwrap();
/// p.push_document("abcdef", &mut tok);
/// assert_eq!(p.next_row(), Some(vec![0, 97, 98, 99]));
/// assert_eq!(p.next_row(), None); // "def" waits for more documents
/// ```
#[derive(Debug, Clone)]
pub struct RowPacker {
    packing: Packing,
    seq_len: usize,
    bos: u32,
    eos: u32,
    max_doc_tokens: usize,
    /// Tokens not yet emitted (for `BosRows`, without the row's BOS).
    pending: VecDeque<u32>,
    documents: u64,
    skipped_documents: u64,
    truncated_documents: u64,
    rows: u64,
}

impl RowPacker {
    /// A packer with the default `max_doc_tokens` (1024). `seq_len` must be
    /// ≥ 1 (`concat`) or ≥ 2 (`bos_rows`).
    pub fn new(packing: Packing, seq_len: usize, bos: u32, eos: u32) -> Result<Self, PackingError> {
        let min = match packing {
            Packing::Concat => 1,
            Packing::BosRows => 2,
        };
        if seq_len < min {
            return Err(PackingError::SeqLen {
                packing,
                min,
                got: seq_len,
            });
        }
        Ok(RowPacker {
            packing,
            seq_len,
            bos,
            eos,
            max_doc_tokens: DEFAULT_MAX_DOC_TOKENS,
            pending: VecDeque::new(),
            documents: 0,
            skipped_documents: 0,
            truncated_documents: 0,
            rows: 0,
        })
    }

    /// Cap on the tokens of one document, BOS included (`concat` only;
    /// `usize::MAX` = no cap).
    pub fn with_max_doc_tokens(mut self, max_doc_tokens: usize) -> Result<Self, PackingError> {
        if max_doc_tokens == 0 {
            return Err(PackingError::MaxDocTokens);
        }
        self.max_doc_tokens = max_doc_tokens;
        Ok(self)
    }

    pub fn packing(&self) -> Packing {
        self.packing
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Documents packed so far (not counting skipped ones).
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Documents skipped because they tokenized to nothing.
    pub fn skipped_documents(&self) -> u64 {
        self.skipped_documents
    }

    /// Documents cut to `max_doc_tokens` (`concat` only).
    pub fn truncated_documents(&self) -> u64 {
        self.truncated_documents
    }

    /// Rows returned by [`RowPacker::next_row`] so far.
    pub fn rows_emitted(&self) -> u64 {
        self.rows
    }

    /// Tokens waiting for a row (at the end of the corpus: the dropped tail).
    pub fn pending_tokens(&self) -> usize {
        self.pending.len()
    }

    fn row_body_len(&self) -> usize {
        match self.packing {
            Packing::Concat => self.seq_len,
            Packing::BosRows => self.seq_len - 1,
        }
    }

    /// Rows complete and waiting to be taken with [`RowPacker::next_row`].
    pub fn ready_rows(&self) -> usize {
        self.pending.len() / self.row_body_len()
    }

    /// Tokenize one document and append it to the stream. Returns the number
    /// of complete rows now ready. Take them with [`RowPacker::next_row`]
    /// before pushing many more documents, or memory grows.
    ///
    /// For `concat`, only the head of a long document is tokenized (see
    /// [`tokenize_head`]); the rows are the same as tokenizing it whole.
    pub fn push_document(
        &mut self,
        text: &str,
        tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    ) -> usize {
        match self.packing {
            Packing::Concat => {
                let (head, cut) = tokenize_head(text, self.max_doc_tokens - 1, tokenize);
                self.push_concat(&head, cut)
            }
            Packing::BosRows => self.push_tokens(&tokenize(text)),
        }
    }

    /// Append an already tokenized document (without BOS/EOS). Returns the
    /// number of complete rows now ready.
    pub fn push_tokens(&mut self, tokens: &[u32]) -> usize {
        match self.packing {
            Packing::Concat => {
                let keep = tokens.len().min(self.max_doc_tokens - 1);
                self.push_concat(&tokens[..keep], keep < tokens.len())
            }
            Packing::BosRows => self.push_bos_rows(tokens),
        }
    }

    /// `concat`: BOS + the kept tokens; `cut` = the document had more.
    fn push_concat(&mut self, kept: &[u32], cut: bool) -> usize {
        // With `max_doc_tokens` 1 a document keeps no token but its BOS; it
        // is skipped only if it has no token at all.
        if kept.is_empty() && !cut {
            self.skipped_documents += 1;
            return self.ready_rows();
        }
        if cut {
            self.truncated_documents += 1;
        }
        self.pending.push_back(self.bos);
        self.pending.extend(kept);
        self.documents += 1;
        self.ready_rows()
    }

    /// `bos_rows`: EOS between documents, never truncated.
    fn push_bos_rows(&mut self, tokens: &[u32]) -> usize {
        if tokens.is_empty() {
            self.skipped_documents += 1;
            return self.ready_rows();
        }
        if self.documents > 0 {
            self.pending.push_back(self.eos);
        }
        self.pending.extend(tokens);
        self.documents += 1;
        self.ready_rows()
    }

    /// The next complete row of exactly `seq_len` tokens, if one is ready.
    pub fn next_row(&mut self) -> Option<Vec<u32>> {
        let body = self.row_body_len();
        if self.pending.len() < body {
            return None;
        }
        let mut row = Vec::with_capacity(self.seq_len);
        if self.packing == Packing::BosRows {
            row.push(self.bos);
        }
        row.extend(self.pending.drain(..body));
        self.rows += 1;
        Some(row)
    }

    /// Adapt an iterator of documents into an iterator of rows. Errors from
    /// the document iterator are passed through as they come; if the caller
    /// keeps pulling after one, packing goes on with the next document.
    pub fn rows<I, E, F>(self, documents: I, tokenize: F) -> PackedRows<I, F>
    where
        I: Iterator<Item = Result<String, E>>,
        F: FnMut(&str) -> Vec<u32>,
    {
        PackedRows {
            packer: self,
            documents,
            tokenize,
        }
    }
}

/// The first `keep` tokens of `text` and whether it has more, as
/// `tokenize(text)` truncated to `keep` would give, without tokenizing all
/// of a long text.
///
/// A prefix ending at a word end (just before an ASCII space that follows a
/// letter or digit) is tokenized, growing it until it yields more than
/// `keep` tokens; then a prefix half as long again must start with the same
/// tokens, else (a tokenizer that is not prefix-stable at word ends) the
/// whole text is tokenized. Texts up to three times the first prefix
/// length (`8 × keep` bytes, at least 1 KiB), or without a word end in their
/// first third, are tokenized whole.
pub fn tokenize_head(
    text: &str,
    keep: usize,
    tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
) -> (Vec<u32>, bool) {
    let mut window = keep
        .saturating_mul(HEAD_BYTES_PER_TOKEN)
        .max(MIN_HEAD_BYTES);
    // Head + check cost ≤ 2.5 × `end`: below a third of the text it is
    // cheaper than tokenizing the whole text.
    while window < text.len() / 3 {
        let Some(end) = word_end_from(text, window).filter(|&e| e < text.len() / 3) else {
            break;
        };
        let mut head = tokenize(&text[..end]);
        if head.len() > keep {
            // Safety net: a longer prefix must agree on every token.
            let check = word_end_from(text, end + end / 2).map(|e| tokenize(&text[..e]));
            if check.is_some_and(|longer| longer.starts_with(&head)) {
                head.truncate(keep);
                return (head, true);
            }
            break;
        }
        window = window.saturating_mul(2);
    }
    let mut all = tokenize(text);
    let cut = all.len() > keep;
    all.truncate(keep);
    (all, cut)
}

/// The first position `i >= from` where `text` has an ASCII space right
/// after a letter or digit. Byte-level BPE pre-tokenizers (GPT-2, Llama 3,
/// SmolLM2 regexes) always split there: no pre-token spans `…x| y`.
fn word_end_from(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from.max(1);
    while i < bytes.len() {
        let off = bytes[i..].iter().position(|&b| b == b' ')?;
        i += off;
        // `i` is at an ASCII byte, hence a char boundary.
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Iterator of rows over an iterator of documents; see [`RowPacker::rows`].
pub struct PackedRows<I, F> {
    packer: RowPacker,
    documents: I,
    tokenize: F,
}

impl<I, F> PackedRows<I, F> {
    /// The underlying packer (for its counters).
    pub fn packer(&self) -> &RowPacker {
        &self.packer
    }

    /// The document iterator, e.g. a [`crate::corpus::Documents`] for its
    /// `stats()` and `lossy_files()` once the rows are consumed.
    pub fn documents(&self) -> &I {
        &self.documents
    }
}

impl<I, E, F> Iterator for PackedRows<I, F>
where
    I: Iterator<Item = Result<String, E>>,
    F: FnMut(&str) -> Vec<u32>,
{
    type Item = Result<Vec<u32>, E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.packer.next_row() {
                return Some(Ok(row));
            }
            match self.documents.next()? {
                Ok(doc) => {
                    self.packer.push_document(&doc, &mut self.tokenize);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOS: u32 = 1;
    const EOS: u32 = 2;

    /// Fake tokenizer: one token per byte, offset so ids never clash with BOS/EOS.
    fn tok(s: &str) -> Vec<u32> {
        s.bytes().map(|b| u32::from(b) + 100).collect()
    }

    fn t(s: &str) -> Vec<u32> {
        tok(s)
    }

    fn pack(packer: RowPacker, docs: &[&str]) -> (Vec<Vec<u32>>, RowPacker) {
        let mut p = packer;
        let mut rows = Vec::new();
        let mut f = tok;
        for d in docs {
            p.push_document(d, &mut f);
            while let Some(r) = p.next_row() {
                rows.push(r);
            }
        }
        (rows, p)
    }

    fn cat(parts: &[&[u32]]) -> Vec<u32> {
        parts.concat()
    }

    #[test]
    fn concat_exact_rows() {
        let p = RowPacker::new(Packing::Concat, 4, BOS, EOS).unwrap();
        let (rows, p) = pack(p, &["abcde", "fg", "", "hijkl"]);
        // Stream: B a b c d e B f g B h i j k l
        assert_eq!(
            rows,
            vec![
                cat(&[&[BOS], &t("abc")]),
                cat(&[&t("de"), &[BOS], &t("f")]),
                cat(&[&t("g"), &[BOS], &t("hi")]),
            ]
        );
        assert_eq!(p.pending_tokens(), 3); // "jkl" dropped at the end
        assert_eq!(p.documents(), 3);
        assert_eq!(p.skipped_documents(), 1);
        assert_eq!(p.rows_emitted(), 3);
    }

    #[test]
    fn concat_truncates_documents_including_bos() {
        let p = RowPacker::new(Packing::Concat, 3, BOS, EOS)
            .unwrap()
            .with_max_doc_tokens(4)
            .unwrap();
        let (rows, p) = pack(p, &["abcdefgh", "xy"]);
        // Each doc: BOS + at most 3 tokens. Stream: B a b c B x y
        assert_eq!(
            rows,
            vec![cat(&[&[BOS], &t("ab")]), cat(&[&t("c"), &[BOS], &t("x")])]
        );
        assert_eq!(p.truncated_documents(), 1);
        assert_eq!(p.pending_tokens(), 1);
    }

    #[test]
    fn concat_default_max_doc_tokens_is_1024() {
        let p = RowPacker::new(Packing::Concat, 128, BOS, EOS).unwrap();
        let doc = "z".repeat(5000);
        let (rows, p) = pack(p, &[&doc]);
        assert_eq!(rows.len(), 8); // 1024 / 128
        assert_eq!(p.pending_tokens(), 0);
        assert_eq!(rows[0][0], BOS);
        assert!(rows[1..].iter().all(|r| r[0] != BOS && r.len() == 128));
    }

    #[test]
    fn bos_rows_exact_rows() {
        let p = RowPacker::new(Packing::BosRows, 4, BOS, EOS).unwrap();
        let (rows, p) = pack(p, &["abcd", "", "ef", "ghijklm"]);
        // Stream: a b c d E e f E g h i j k l m ; rows take 3 tokens each.
        assert_eq!(
            rows,
            vec![
                cat(&[&[BOS], &t("abc")]),
                cat(&[&[BOS], &t("d"), &[EOS], &t("e")]),
                cat(&[&[BOS], &t("f"), &[EOS], &t("g")]),
                cat(&[&[BOS], &t("hij")]),
                cat(&[&[BOS], &t("klm")]),
            ]
        );
        assert_eq!(p.pending_tokens(), 0);
        // BosRows never truncates documents.
        assert_eq!(p.truncated_documents(), 0);
    }

    #[test]
    fn bos_rows_no_truncation_of_long_documents() {
        let p = RowPacker::new(Packing::BosRows, 101, BOS, EOS).unwrap();
        let doc = "q".repeat(3000);
        let (rows, _) = pack(p, &[&doc]);
        assert_eq!(rows.len(), 30);
        assert!(rows.iter().all(|r| r.len() == 101 && r[0] == BOS));
    }

    #[test]
    fn rows_adapter_matches_manual_and_passes_errors() {
        let docs = ["one two", "three", "four five six", "seven"];
        let manual = pack(RowPacker::new(Packing::Concat, 5, BOS, EOS).unwrap(), &docs).0;
        let it = docs.iter().map(|d| Ok::<String, String>(d.to_string()));
        let rows: Vec<Vec<u32>> = RowPacker::new(Packing::Concat, 5, BOS, EOS)
            .unwrap()
            .rows(it, tok)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows, manual);
        assert!(rows.iter().all(|r| r.len() == 5));
        let mut it = RowPacker::new(Packing::Concat, 5, BOS, EOS).unwrap().rows(
            docs.iter().map(|d| Ok::<String, String>(d.to_string())),
            tok,
        );
        assert_eq!(it.by_ref().count(), manual.len());
        assert!(it.documents().clone().next().is_none());
        assert_eq!(it.packer().documents(), 4);

        let bad = vec![Ok("abcdefgh".to_string()), Err("boom"), Ok("x".to_string())];
        let mut it = RowPacker::new(Packing::Concat, 4, BOS, EOS)
            .unwrap()
            .rows(bad.into_iter(), tok);
        assert_eq!(it.next(), Some(Ok(cat(&[&[BOS], &t("abc")]))));
        assert_eq!(it.next(), Some(Ok(t("defg"))));
        assert_eq!(it.next(), Some(Err("boom")));
    }

    /// Pack by hand, straight from SPEC §1.5, without the packer's
    /// streaming state: `concat` = per document BOS + tokens truncated to
    /// `max_doc_tokens` (BOS included), concatenated, cut into `seq_len`
    /// rows; `bos_rows` = documents joined by EOS, every row BOS + the next
    /// `seq_len − 1` tokens. Documents without tokens are left out; a
    /// trailing partial row is dropped.
    fn pack_by_hand(
        packing: Packing,
        docs: &[String],
        seq_len: usize,
        max_doc: usize,
    ) -> (Vec<Vec<u32>>, usize) {
        let toks: Vec<Vec<u32>> = docs
            .iter()
            .map(|d| tok(d))
            .filter(|t| !t.is_empty())
            .collect();
        let (stream, body, head) = match packing {
            Packing::Concat => {
                let mut stream = Vec::new();
                for t in &toks {
                    let mut doc = vec![BOS];
                    doc.extend(t);
                    doc.truncate(max_doc);
                    stream.extend(doc);
                }
                (stream, seq_len, vec![])
            }
            Packing::BosRows => (toks.join(&EOS), seq_len - 1, vec![BOS]),
        };
        let rows = stream
            .chunks_exact(body)
            .map(|c| [head.as_slice(), c].concat())
            .collect();
        (rows, stream.len() % body)
    }

    #[test]
    fn matches_packing_by_hand_from_the_spec() {
        // Lengths 0..~90 bytes, some empty / whitespace-only documents.
        let docs: Vec<String> = (0..60)
            .map(|i| match i % 7 {
                0 => String::new(),
                _ => format!("doc {i} ").repeat((i * 7) % 13),
            })
            .collect();
        let mut nonempty_cases = 0;
        for packing in [Packing::Concat, Packing::BosRows] {
            for seq_len in [2, 3, 7, 16, 64] {
                for max_doc in [1, 2, 5, 40, 1024] {
                    let (want, tail) = pack_by_hand(packing, &docs, seq_len, max_doc);
                    let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
                    let packer = RowPacker::new(packing, seq_len, BOS, EOS)
                        .unwrap()
                        .with_max_doc_tokens(max_doc)
                        .unwrap();
                    let (got, p) = pack(packer, &refs);
                    let what = format!("{packing} seq_len {seq_len} max_doc {max_doc}");
                    nonempty_cases += usize::from(!want.is_empty());
                    assert_eq!(got, want, "{what}");
                    assert_eq!(p.pending_tokens(), tail, "{what}");
                    let nonempty = docs.iter().filter(|d| !d.is_empty()).count() as u64;
                    assert_eq!(p.documents(), nonempty, "{what}");
                    assert_eq!(p.skipped_documents(), docs.len() as u64 - nonempty);
                    let cut = match packing {
                        Packing::Concat => docs.iter().filter(|d| d.len() + 1 > max_doc).count(),
                        Packing::BosRows => 0,
                    };
                    assert_eq!(p.truncated_documents(), cut as u64, "{what}");
                }
            }
        }
        assert!(
            nonempty_cases >= 45,
            "only {nonempty_cases} of 50 cases make rows"
        );
    }

    /// A long document is tokenized only up to where its kept tokens end:
    /// an 11.5 MB one-line file used to be tokenized whole (1.74 GB) just to
    /// keep 1023 tokens. Same rows as whole-document tokenization.
    #[test]
    fn concat_tokenizes_only_the_head_of_long_documents() {
        let doc = "lorem ipsum dolor sit amet, ".repeat(40_000); // ~1.1 MB
        let mut asked = Vec::new();
        let mut counting = |s: &str| {
            asked.push(s.len());
            tok(s)
        };
        let mut p = RowPacker::new(Packing::Concat, 128, BOS, EOS).unwrap();
        p.push_document(&doc, &mut counting);
        let rows: Vec<Vec<u32>> = std::iter::from_fn(|| p.next_row()).collect();
        let total: usize = asked.iter().sum();
        assert!(
            total < 64 << 10,
            "tokenized {total} bytes in calls {asked:?}"
        );
        let mut want = vec![BOS];
        want.extend(&tok(&doc)[..1023]);
        assert_eq!(rows.concat(), want[..1024]);
        assert_eq!(p.truncated_documents(), 1);
    }

    /// A stand-in for a byte-level BPE with GPT-2's pre-tokenizer: pieces
    /// ` ?letters/digits`, ` ?other`, whitespace runs (the last space of a run
    /// goes to the next word, like `\s+(?!\S)`); one token per piece, so a
    /// prefix cut inside a word or a space run changes its last token.
    fn word_tok(s: &str) -> Vec<u32> {
        let cs: Vec<char> = s.chars().collect();
        let class = |c: char| {
            if c.is_whitespace() {
                0
            } else if c.is_alphanumeric() {
                1
            } else {
                2
            }
        };
        let (mut out, mut i) = (Vec::new(), 0);
        while i < cs.len() {
            let start = i;
            if cs[i] == ' ' && i + 1 < cs.len() && class(cs[i + 1]) != 0 {
                i += 1;
            }
            let k = class(cs[i]);
            while i < cs.len() && class(cs[i]) == k {
                i += 1;
            }
            if k == 0 && i < cs.len() && i - start > 1 && cs[i - 1] == ' ' {
                i -= 1; // that space starts the next word
            }
            let piece: String = cs[start..i].iter().collect();
            let h = piece.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            out.push(100 + (h % 1_000_000) as u32);
        }
        out
    }

    /// Documents of many lengths with word ends, space runs, punctuation,
    /// newlines and non-ASCII text.
    fn varied_docs() -> Vec<String> {
        let base = "The cat's  toy, (really!) costs 12 345 €.\n\tNaïve  café—ok?  Привет мир 你好 ";
        let long = base.repeat(400);
        let mut docs: Vec<String> = [0usize, 1, 7, 100, 1000, 2047, 2049, 4097, 9000, 20_000]
            .iter()
            .chain(&(1..40).map(|i| i * 733 + i % 5).collect::<Vec<_>>())
            .map(|&n| long.chars().take(n).collect())
            .collect();
        docs.push("z".repeat(50_000)); // no word end at all
        docs.push(format!("{}{}", "q".repeat(30_000), " word".repeat(3000)));
        docs
    }

    #[test]
    fn tokenize_head_equals_whole_tokenization() {
        type Tok = fn(&str) -> Vec<u32>;
        // Not prefix-stable at all: the safety net must fall back to the
        // whole text.
        let reversed: Tok = |s| tok(s).into_iter().rev().collect();
        for (name, f) in [
            ("bytes", tok as Tok),
            ("words", word_tok),
            ("reversed", reversed),
        ] {
            let (mut head_only, mut fallbacks) = (0, 0);
            for doc in varied_docs() {
                for keep in [0, 1, 5, 100, 1023] {
                    let mut asked = 0;
                    let mut counted = |s: &str| {
                        asked += s.len();
                        f(s)
                    };
                    let (got, cut) = tokenize_head(&doc, keep, &mut counted);
                    let mut want = f(&doc);
                    let want_cut = want.len() > keep;
                    want.truncate(keep);
                    let what = format!("{name} keep {keep} doc of {} bytes", doc.len());
                    assert_eq!(got, want, "{what}");
                    assert_eq!(cut, want_cut, "{what}");
                    head_only += usize::from(asked < doc.len());
                    fallbacks += usize::from(asked > doc.len());
                }
            }
            // Prefix-stable tokenizers take the head path often and never
            // need the safety net (a bad cut would trip it); the reversed
            // one always falls back.
            if name == "reversed" {
                assert_eq!(head_only, 0, "{name}");
                assert!(fallbacks > 50, "{name}: {fallbacks} fallbacks");
            } else {
                assert!(head_only > 50, "{name}: head path used {head_only} times");
                assert_eq!(fallbacks, 0, "{name}");
            }
        }
    }

    #[test]
    fn word_ends() {
        assert_eq!(word_end_from("ab cd", 0), Some(2));
        assert_eq!(word_end_from("ab cd", 3), None);
        assert_eq!(word_end_from("a,  b c", 0), Some(5)); // not after `,` or a space
        assert_eq!(word_end_from(" x", 0), None);
        assert_eq!(word_end_from("é x", 0), Some(2));
        assert_eq!(word_end_from("é x", 1), Some(2)); // `from` inside a char
    }

    #[test]
    fn config_validation() {
        assert!(RowPacker::new(Packing::BosRows, 1, BOS, EOS).is_err());
        assert!(RowPacker::new(Packing::Concat, 0, BOS, EOS).is_err());
        assert!(RowPacker::new(Packing::Concat, 1, BOS, EOS).is_ok());
        assert_eq!(
            RowPacker::new(Packing::Concat, 4, BOS, EOS)
                .unwrap()
                .with_max_doc_tokens(0)
                .unwrap_err(),
            PackingError::MaxDocTokens
        );
    }

    #[test]
    fn packing_names() {
        assert_eq!("concat".parse::<Packing>().unwrap(), Packing::Concat);
        assert_eq!("bos_rows".parse::<Packing>().unwrap(), Packing::BosRows);
        assert_eq!("BOS-ROWS".parse::<Packing>().unwrap(), Packing::BosRows);
        assert!("rows".parse::<Packing>().is_err());
        assert_eq!(
            serde_json::to_string(&Packing::BosRows).unwrap(),
            "\"bos_rows\""
        );
        assert_eq!(
            serde_json::from_str::<Packing>("\"concat\"").unwrap(),
            Packing::Concat
        );
        assert_eq!(Packing::BosRows.to_string(), "bos_rows");
        assert_eq!(Packing::default(), Packing::Concat);
    }
}
