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

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// Default cap on the tokens of one document (BOS included) for
/// [`Packing::Concat`].
pub const DEFAULT_MAX_DOC_TOKENS: usize = 1024;

/// Default row length.
pub const DEFAULT_SEQ_LEN: usize = 128;

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
    pub fn push_document(
        &mut self,
        text: &str,
        tokenize: &mut dyn FnMut(&str) -> Vec<u32>,
    ) -> usize {
        let tokens = tokenize(text);
        self.push_tokens(&tokens)
    }

    /// Append an already tokenized document (without BOS/EOS). Returns the
    /// number of complete rows now ready.
    pub fn push_tokens(&mut self, tokens: &[u32]) -> usize {
        if tokens.is_empty() {
            self.skipped_documents += 1;
            return self.ready_rows();
        }
        match self.packing {
            Packing::Concat => {
                let keep = tokens.len().min(self.max_doc_tokens - 1);
                if keep < tokens.len() {
                    self.truncated_documents += 1;
                }
                self.pending.push_back(self.bos);
                self.pending.extend(&tokens[..keep]);
            }
            Packing::BosRows => {
                if self.documents > 0 {
                    self.pending.push_back(self.eos);
                }
                self.pending.extend(tokens);
            }
        }
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

        let bad = vec![Ok("abcdefgh".to_string()), Err("boom"), Ok("x".to_string())];
        let mut it = RowPacker::new(Packing::Concat, 4, BOS, EOS)
            .unwrap()
            .rows(bad.into_iter(), tok);
        assert_eq!(it.next(), Some(Ok(cat(&[&[BOS], &t("abc")]))));
        assert_eq!(it.next(), Some(Ok(t("defg"))));
        assert_eq!(it.next(), Some(Err("boom")));
    }

    #[test]
    fn deterministic() {
        let docs: Vec<String> = (0..50).map(|i| format!("document number {i} ")).collect();
        let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
        for packing in [Packing::Concat, Packing::BosRows] {
            let a = pack(RowPacker::new(packing, 7, BOS, EOS).unwrap(), &refs).0;
            let b = pack(RowPacker::new(packing, 7, BOS, EOS).unwrap(), &refs).0;
            assert_eq!(a, b);
            assert!(!a.is_empty());
        }
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
