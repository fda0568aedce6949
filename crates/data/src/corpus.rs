//! Text corpora: streaming readers that turn a file or folder on disk into a
//! sequence of documents (plain `String`s), plus a content hash of the source
//! bytes for run manifests.
//!
//! Supported sources (auto-detected by [`Corpus::open`]):
//! - a plain-text file (`.txt`, `.md`, `.rs`, … or no extension): the whole
//!   file is one document;
//! - a `.jsonl` / `.ndjson` file: one JSON object per line, the document is
//!   the string field `text` (configurable with [`Corpus::with_text_field`]);
//! - a `.parquet` file with a `text` column (string or binary; configurable);
//! - a folder, searched recursively (hidden entries skipped, paths sorted for
//!   determinism): if it holds any `.parquet` file it is a set of parquet
//!   shards (the Hugging Face datasets layout), else if it holds `.jsonl`
//!   files they are read in order, else every text-like file
//!   ([`TEXT_EXTENSIONS`]) is one document.
//!
//! Non-UTF-8 bytes are decoded lossily, never fatal, but counted: every
//! replaced sequence ([`CorpusStats::invalid_utf8_sequences`]) and the files
//! and first line/row where it happened ([`Documents::lossy_files`]), so a
//! caller can report it. Documents that
//! are empty or whitespace-only are skipped and counted. A corpus that yields
//! no non-empty document at all is an error ([`CorpusError::Empty`]), reported
//! by the iterator when it reaches the end.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, LargeBinaryArray, LargeStringArray, StringArray,
    StringViewArray,
};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use sha2::{Digest, Sha256};

/// Field (JSONL) or column (parquet) holding the document text by default.
pub const DEFAULT_TEXT_FIELD: &str = "text";

/// File extensions read as plain text (one file = one document), both for a
/// single file and inside folders.
pub const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "text", "md", "markdown", "rst", "org", "adoc", "tex", "html", "htm", "rs", "py", "c",
    "h", "cc", "cpp", "hpp", "js", "ts", "go", "java",
];

const JSONL_EXTENSIONS: &[&str] = &["jsonl", "ndjson"];
const PARQUET_EXTENSIONS: &[&str] = &["parquet"];

/// Rows per record batch when reading parquet.
const PARQUET_BATCH_ROWS: usize = 1024;

/// Errors from opening or reading a corpus. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus {path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error("corpus {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corpus {path}: unsupported file type (expected a .txt/.md/... text file, .jsonl, .parquet, or a folder of them)")]
    UnsupportedFormat { path: PathBuf },
    #[error("corpus folder {path}: no .parquet, .jsonl or text files found")]
    NoFiles { path: PathBuf },
    #[error("corpus {path}: no non-empty documents ({skipped_empty} empty skipped)")]
    Empty { path: PathBuf, skipped_empty: u64 },
    #[error("corpus {path}:{line}: bad JSON line: {message}")]
    BadJson {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("corpus {path}:{line}: no field `{field}` in the JSON object")]
    MissingField {
        path: PathBuf,
        line: u64,
        field: String,
    },
    #[error("corpus {path}:{line}: field `{field}` is not a string")]
    FieldNotString {
        path: PathBuf,
        line: u64,
        field: String,
    },
    #[error("corpus {path}: parquet file has no column `{column}` (columns: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("corpus {path}: parquet column `{column}` has type {data_type}, expected a string or binary column")]
    ColumnType {
        path: PathBuf,
        column: String,
        data_type: String,
    },
    #[error("corpus {path}: parquet: {message}")]
    Parquet { path: PathBuf, message: String },
}

impl CorpusError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            CorpusError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            CorpusError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn parquet(path: &Path, err: impl std::fmt::Display) -> Self {
        CorpusError::Parquet {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }
}

/// How the documents of a corpus are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusFormat {
    /// One text file = one document.
    Text,
    /// JSON lines, one document per line.
    Jsonl,
    /// Parquet file(s) with a text column.
    Parquet,
}

/// Counters kept while iterating a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorpusStats {
    /// Non-empty documents yielded so far.
    pub documents: u64,
    /// Empty or whitespace-only documents skipped.
    pub skipped_empty: u64,
    /// Documents that held invalid UTF-8 and were decoded lossily.
    pub lossy_utf8: u64,
    /// UTF-8 bytes of the yielded documents.
    pub bytes: u64,
    /// Invalid UTF-8 sequences replaced by U+FFFD (one per replacement
    /// character inserted; counted in every record read, skipped ones too).
    pub invalid_utf8_sequences: u64,
    /// Source bytes those replacements stand for.
    pub invalid_utf8_bytes: u64,
}

/// A file in which invalid UTF-8 was replaced. [`Documents::lossy_files`]
/// lists one per such file, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossyFile {
    pub path: PathBuf,
    /// First record with a replacement, 1-based: the JSONL line, the parquet
    /// row, or 1 for a text file (one file = one record).
    pub first_record: u64,
    /// Records (lines, rows, or the file) with a replacement.
    pub records: u64,
    /// Invalid sequences replaced in this file.
    pub sequences: u64,
    /// Source bytes replaced in this file.
    pub bytes: u64,
}

/// An opened corpus source: the list of files to read, in order, and how to
/// read them. Cheap to keep around; reading happens in [`Corpus::documents`].
#[derive(Debug, Clone)]
pub struct Corpus {
    path: PathBuf,
    format: CorpusFormat,
    files: Vec<PathBuf>,
    text_field: String,
}

impl Corpus {
    /// Open a corpus file or folder, detecting its format (see module docs).
    /// Fails if the path does not exist, has an unsupported extension, or is
    /// a folder with no readable files. Emptiness of the documents themselves
    /// is only known while iterating.
    pub fn open(path: &Path) -> Result<Corpus, CorpusError> {
        let meta = std::fs::metadata(path).map_err(|e| CorpusError::io(path, e))?;
        let (format, files) = if meta.is_dir() {
            let mut all = Vec::new();
            walk(path, &mut all)?;
            all.sort();
            let pick = |exts: &[&str]| -> Vec<PathBuf> {
                all.iter()
                    .filter(|p| has_extension(p, exts))
                    .cloned()
                    .collect()
            };
            let parquet = pick(PARQUET_EXTENSIONS);
            let jsonl = pick(JSONL_EXTENSIONS);
            let text = pick(TEXT_EXTENSIONS);
            if !parquet.is_empty() {
                (CorpusFormat::Parquet, parquet)
            } else if !jsonl.is_empty() {
                (CorpusFormat::Jsonl, jsonl)
            } else if !text.is_empty() {
                (CorpusFormat::Text, text)
            } else {
                return Err(CorpusError::NoFiles {
                    path: path.to_path_buf(),
                });
            }
        } else {
            let format = if has_extension(path, PARQUET_EXTENSIONS) {
                CorpusFormat::Parquet
            } else if has_extension(path, JSONL_EXTENSIONS) {
                CorpusFormat::Jsonl
            } else if path.extension().is_none() || has_extension(path, TEXT_EXTENSIONS) {
                CorpusFormat::Text
            } else {
                return Err(CorpusError::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            };
            (format, vec![path.to_path_buf()])
        };
        Ok(Corpus {
            path: path.to_path_buf(),
            format,
            files,
            text_field: DEFAULT_TEXT_FIELD.to_string(),
        })
    }

    /// Use another JSONL field / parquet column than `text`.
    pub fn with_text_field(mut self, field: &str) -> Corpus {
        self.text_field = field.to_string();
        self
    }

    /// The path given to [`Corpus::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected format.
    pub fn format(&self) -> CorpusFormat {
        self.format
    }

    /// The files read, in reading order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The JSONL field / parquet column holding the text.
    pub fn text_field(&self) -> &str {
        &self.text_field
    }

    /// Stream the documents, in a deterministic order. The iterator stops
    /// after the first error.
    pub fn documents(&self) -> Documents {
        Documents {
            corpus: self.clone(),
            next_file: 0,
            current: None,
            stats: CorpusStats::default(),
            lossy_files: Vec::new(),
            finished: false,
        }
    }

    /// SHA-256 (lowercase hex) over the bytes of [`Corpus::files`], in order.
    /// For a single-file corpus this equals `sha256sum` of the file.
    pub fn content_hash(&self) -> Result<String, CorpusError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for path in &self.files {
            let mut f = File::open(path).map_err(|e| CorpusError::io(path, e))?;
            loop {
                let n = f.read(&mut buf).map_err(|e| CorpusError::io(path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Total size in bytes of the source files.
    pub fn source_bytes(&self) -> Result<u64, CorpusError> {
        let mut total = 0;
        for path in &self.files {
            total += std::fs::metadata(path)
                .map_err(|e| CorpusError::io(path, e))?
                .len();
        }
        Ok(total)
    }
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Recursively collect regular files under `dir`, skipping hidden entries and
/// not following symlinked folders (no cycles).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CorpusError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CorpusError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| CorpusError::io(&path, e))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// What lossy decoding replaced in one record.
#[derive(Debug, Clone, Copy, Default)]
struct Repair {
    sequences: u64,
    bytes: u64,
}

/// Decode bytes as UTF-8, replacing each invalid sequence by U+FFFD, and
/// count the replacements. `from_utf8_lossy` inserts exactly one U+FFFD per
/// non-empty `Utf8Chunk::invalid()`, so counting those chunks counts the
/// replacements (a U+FFFD already in the source is valid and not counted).
fn decode_lossy(bytes: Vec<u8>) -> (String, Repair) {
    match String::from_utf8(bytes) {
        Ok(s) => (s, Repair::default()),
        Err(e) => {
            let bytes = e.into_bytes();
            let mut repair = Repair::default();
            for chunk in bytes.utf8_chunks() {
                if !chunk.invalid().is_empty() {
                    repair.sequences += 1;
                    repair.bytes += chunk.invalid().len() as u64;
                }
            }
            (String::from_utf8_lossy(&bytes).into_owned(), repair)
        }
    }
}

enum Source {
    Jsonl {
        path: PathBuf,
        reader: BufReader<File>,
        line: u64,
    },
    Parquet {
        path: PathBuf,
        reader: ParquetRecordBatchReader,
        column: Option<ArrayRef>,
        row: usize,
        /// Rows read from the file so far (across record batches).
        record: u64,
    },
}

/// One raw document pulled from a source, before empty-skipping.
struct RawDoc {
    text: String,
    repair: Repair,
    /// 1-based line / row in its file (1 for a text file).
    record: u64,
}

/// Streaming iterator over the documents of a [`Corpus`]. Yields
/// `Err(CorpusError::Empty)` at the end if no document was non-empty, and
/// stops after any error.
pub struct Documents {
    corpus: Corpus,
    next_file: usize,
    current: Option<Source>,
    stats: CorpusStats,
    lossy_files: Vec<LossyFile>,
    finished: bool,
}

impl Documents {
    /// Counters so far (final once the iterator returned `None`).
    pub fn stats(&self) -> CorpusStats {
        self.stats
    }

    /// The files where invalid UTF-8 was replaced so far, in reading order
    /// (complete once the iterator returned `None`).
    pub fn lossy_files(&self) -> &[LossyFile] {
        &self.lossy_files
    }

    /// Count the replacements of a record of the file being read.
    fn note_repair(&mut self, doc: &RawDoc) {
        let Repair { sequences, bytes } = doc.repair;
        if sequences == 0 {
            return;
        }
        self.stats.invalid_utf8_sequences += sequences;
        self.stats.invalid_utf8_bytes += bytes;
        // The file being read is the last one opened.
        let path = &self.corpus.files[self.next_file - 1];
        match self.lossy_files.last_mut() {
            Some(f) if &f.path == path => {
                f.records += 1;
                f.sequences += sequences;
                f.bytes += bytes;
            }
            _ => self.lossy_files.push(LossyFile {
                path: path.clone(),
                first_record: doc.record,
                records: 1,
                sequences,
                bytes,
            }),
        }
    }

    /// Next raw document (possibly empty), `Ok(None)` at the end of the corpus.
    fn next_raw(&mut self) -> Result<Option<RawDoc>, CorpusError> {
        loop {
            if let Some(source) = self.current.as_mut() {
                let doc = match source {
                    Source::Jsonl { path, reader, line } => {
                        next_jsonl(path, reader, line, &self.corpus.text_field)?
                    }
                    Source::Parquet {
                        path,
                        reader,
                        column,
                        row,
                        record,
                    } => next_parquet(path, reader, column, row, record)?,
                };
                match doc {
                    Some(d) => return Ok(Some(d)),
                    None => self.current = None,
                }
            }
            let Some(path) = self.corpus.files.get(self.next_file).cloned() else {
                return Ok(None);
            };
            self.next_file += 1;
            match self.corpus.format {
                CorpusFormat::Text => {
                    let mut bytes = std::fs::read(&path).map_err(|e| CorpusError::io(&path, e))?;
                    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
                        bytes.drain(..3);
                    }
                    let (text, repair) = decode_lossy(bytes);
                    return Ok(Some(RawDoc {
                        text,
                        repair,
                        record: 1,
                    }));
                }
                CorpusFormat::Jsonl => {
                    let f = File::open(&path).map_err(|e| CorpusError::io(&path, e))?;
                    self.current = Some(Source::Jsonl {
                        path,
                        reader: BufReader::with_capacity(1 << 16, f),
                        line: 0,
                    });
                }
                CorpusFormat::Parquet => {
                    let reader = open_parquet(&path, &self.corpus.text_field)?;
                    self.current = Some(Source::Parquet {
                        path,
                        reader,
                        column: None,
                        row: 0,
                        record: 0,
                    });
                }
            }
        }
    }
}

impl Iterator for Documents {
    type Item = Result<String, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            match self.next_raw() {
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                Ok(None) => {
                    self.finished = true;
                    if self.stats.documents == 0 {
                        return Some(Err(CorpusError::Empty {
                            path: self.corpus.path.clone(),
                            skipped_empty: self.stats.skipped_empty,
                        }));
                    }
                    return None;
                }
                Ok(Some(doc)) => {
                    self.note_repair(&doc);
                    if doc.text.trim().is_empty() {
                        self.stats.skipped_empty += 1;
                        continue;
                    }
                    self.stats.documents += 1;
                    self.stats.bytes += doc.text.len() as u64;
                    if doc.repair.sequences > 0 {
                        self.stats.lossy_utf8 += 1;
                    }
                    return Some(Ok(doc.text));
                }
            }
        }
    }
}

fn next_jsonl(
    path: &Path,
    reader: &mut BufReader<File>,
    line: &mut u64,
    field: &str,
) -> Result<Option<RawDoc>, CorpusError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CorpusError::io(path, e))?;
        if n == 0 {
            return Ok(None);
        }
        *line += 1;
        let (text, repair) = decode_lossy(std::mem::take(&mut buf));
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| CorpusError::BadJson {
                path: path.to_path_buf(),
                line: *line,
                message: e.to_string(),
            })?;
        let serde_json::Value::Object(mut obj) = value else {
            return Err(CorpusError::BadJson {
                path: path.to_path_buf(),
                line: *line,
                message: "expected a JSON object".to_string(),
            });
        };
        return match obj.remove(field) {
            None => Err(CorpusError::MissingField {
                path: path.to_path_buf(),
                line: *line,
                field: field.to_string(),
            }),
            Some(serde_json::Value::String(s)) => Ok(Some(RawDoc {
                text: s,
                repair,
                record: *line,
            })),
            Some(serde_json::Value::Null) => Ok(Some(RawDoc {
                text: String::new(),
                repair,
                record: *line,
            })),
            Some(_) => Err(CorpusError::FieldNotString {
                path: path.to_path_buf(),
                line: *line,
                field: field.to_string(),
            }),
        };
    }
}

fn open_parquet(path: &Path, column: &str) -> Result<ParquetRecordBatchReader, CorpusError> {
    let f = File::open(path).map_err(|e| CorpusError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| CorpusError::parquet(path, e))?;
    let fields = builder.schema().fields();
    let Some(idx) = fields.iter().position(|f| f.name() == column) else {
        let available: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(CorpusError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            available: available.join(", "),
        });
    };
    let dt = fields[idx].data_type();
    if !is_text_array(arrow_array::new_empty_array(dt).as_ref()) {
        return Err(CorpusError::ColumnType {
            path: path.to_path_buf(),
            column: column.to_string(),
            data_type: format!("{dt:?}"),
        });
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
    builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()
        .map_err(|e| CorpusError::parquet(path, e))
}

/// Whether an array is one of the string / binary types [`cell_text`] reads.
fn is_text_array(a: &dyn Array) -> bool {
    let any = a.as_any();
    any.is::<StringArray>()
        || any.is::<LargeStringArray>()
        || any.is::<StringViewArray>()
        || any.is::<BinaryArray>()
        || any.is::<LargeBinaryArray>()
        || any.is::<BinaryViewArray>()
}

fn next_parquet(
    path: &Path,
    reader: &mut ParquetRecordBatchReader,
    column: &mut Option<ArrayRef>,
    row: &mut usize,
    record: &mut u64,
) -> Result<Option<RawDoc>, CorpusError> {
    loop {
        if let Some(col) = column.as_ref() {
            if *row < col.len() {
                let i = *row;
                *row += 1;
                *record += 1;
                return Ok(Some(cell_text(path, col, i, *record)?));
            }
        }
        match reader.next() {
            None => return Ok(None),
            Some(Err(e)) => return Err(CorpusError::parquet(path, e)),
            Some(Ok(batch)) => {
                *column = Some(batch.column(0).clone());
                *row = 0;
            }
        }
    }
}

fn cell_text(path: &Path, col: &ArrayRef, i: usize, record: u64) -> Result<RawDoc, CorpusError> {
    let owned = |s: &str| RawDoc {
        text: s.to_string(),
        repair: Repair::default(),
        record,
    };
    if col.is_null(i) {
        return Ok(owned(""));
    }
    let any = col.as_any();
    let bytes = |b: &[u8]| {
        let (text, repair) = decode_lossy(b.to_vec());
        RawDoc {
            text,
            repair,
            record,
        }
    };
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Ok(owned(a.value(i)))
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        Ok(owned(a.value(i)))
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        Ok(owned(a.value(i)))
    } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
        Ok(bytes(a.value(i)))
    } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
        Ok(bytes(a.value(i)))
    } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
        Ok(bytes(a.value(i)))
    } else {
        Err(CorpusError::parquet(
            path,
            format!("unexpected array type {:?}", col.data_type()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    fn collect(c: &Corpus) -> Result<Vec<String>, CorpusError> {
        c.documents().collect()
    }

    fn write_parquet(path: &Path, batches: &[RecordBatch]) {
        let f = File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(f, batches[0].schema(), None).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    fn text_batch(texts: &[Option<&str>]) -> RecordBatch {
        let ids = Int32Array::from_iter_values(0..texts.len() as i32);
        let text = StringArray::from(texts.to_vec());
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(ids) as ArrayRef),
            ("text", Arc::new(text) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn text_file_is_one_document() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "hello\n\nworld\n").unwrap();
        let c = Corpus::open(&p).unwrap();
        assert_eq!(c.format(), CorpusFormat::Text);
        assert_eq!(collect(&c).unwrap(), vec!["hello\n\nworld\n".to_string()]);
        // Content hash of a single file = sha256 of its bytes.
        let expect = hex::encode(Sha256::digest(b"hello\n\nworld\n"));
        assert_eq!(c.content_hash().unwrap(), expect);
    }

    #[test]
    fn lossy_utf8_and_bom() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"\xEF\xBB\xBFab\xFFcd").unwrap();
        let c = Corpus::open(&p).unwrap();
        let mut it = c.documents();
        assert_eq!(it.next().unwrap().unwrap(), "ab\u{FFFD}cd");
        assert!(it.next().is_none());
        assert_eq!(it.stats().lossy_utf8, 1);
        assert_eq!(it.stats().documents, 1);
    }

    /// Every replaced sequence is counted (not just "this document was
    /// lossy"), a genuine U+FFFD in the source is not, and the file and
    /// record are named.
    #[test]
    fn invalid_utf8_sequences_are_counted_per_file() {
        let dir = tempfile::tempdir().unwrap();
        // "x", truncated 3-byte sequence (2 bytes), "y", a lone 0xFF, a real
        // U+FFFD (EF BF BD), "z".
        std::fs::write(dir.path().join("a.txt"), b"x\xE2\x82y\xFF\xEF\xBF\xBDz").unwrap();
        std::fs::write(dir.path().join("b.txt"), "clean").unwrap();
        std::fs::write(dir.path().join("c.txt"), b"\xC3").unwrap();
        let c = Corpus::open(dir.path()).unwrap();
        let mut it = c.documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(
            docs,
            vec!["x\u{FFFD}y\u{FFFD}\u{FFFD}z", "clean", "\u{FFFD}"]
        );
        let st = it.stats();
        assert_eq!(st.lossy_utf8, 2);
        assert_eq!((st.invalid_utf8_sequences, st.invalid_utf8_bytes), (3, 4));
        let files = it.lossy_files();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0].path, dir.path().join("a.txt"));
        assert_eq!(
            (
                files[0].first_record,
                files[0].records,
                files[0].sequences,
                files[0].bytes
            ),
            (1, 1, 2, 3)
        );
        assert_eq!(files[1].path, dir.path().join("c.txt"));
        assert_eq!((files[1].sequences, files[1].bytes), (1, 1));
    }

    /// JSONL: the line of the first replacement; a line skipped as empty
    /// still counts its replacements (they were in the source).
    #[test]
    fn invalid_utf8_in_jsonl_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            b"{\"text\":\"ok\"}\n{\"text\":\"\",\"id\":\"\xFF\"}\n{\"text\":\"a\xFE\xFEb\"}\n",
        )
        .unwrap();
        let mut it = Corpus::open(&p).unwrap().documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["ok", "a\u{FFFD}\u{FFFD}b"]);
        let st = it.stats();
        assert_eq!((st.skipped_empty, st.lossy_utf8), (1, 1));
        assert_eq!((st.invalid_utf8_sequences, st.invalid_utf8_bytes), (3, 3));
        let files = it.lossy_files();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].first_record, files[0].records), (2, 2));
    }

    /// Parquet binary column: the row counts across record batches.
    #[test]
    fn invalid_utf8_in_parquet_names_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.parquet");
        let mut cells: Vec<Vec<u8>> = (0..1500).map(|i| format!("doc {i}").into_bytes()).collect();
        cells[1200] = b"bad\xFF".to_vec();
        let bin = BinaryArray::from(cells.iter().map(|c| c.as_slice()).collect::<Vec<_>>());
        let b = RecordBatch::try_from_iter(vec![("text", Arc::new(bin) as ArrayRef)]).unwrap();
        write_parquet(&p, &[b]);
        let mut it = Corpus::open(&p).unwrap().documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs.len(), 1500);
        assert_eq!(it.stats().invalid_utf8_sequences, 1);
        let files = it.lossy_files();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].first_record, files[0].records), (1201, 1));
    }

    #[test]
    fn folder_sorted_recursive_skips_hidden_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("b/sub/z.md"), "third").unwrap();
        std::fs::write(root.join("b/a.rs"), "second").unwrap();
        std::fs::write(root.join("a.txt"), "first").unwrap();
        std::fs::write(root.join("empty.txt"), "  \n").unwrap();
        std::fs::write(root.join("image.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(root.join(".hidden.txt"), "hidden").unwrap();
        std::fs::write(root.join(".git/x.txt"), "hidden").unwrap();
        let c = Corpus::open(root).unwrap();
        assert_eq!(c.format(), CorpusFormat::Text);
        let mut it = c.documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["first", "second", "third"]);
        assert_eq!(it.stats().skipped_empty, 1);
        assert_eq!(it.stats().documents, 3);
        // Hash is over the files in path order (b/… sorts before empty.txt).
        let expect = hex::encode(Sha256::digest(b"firstsecondthird  \n"));
        assert_eq!(c.content_hash().unwrap(), expect);
    }

    #[test]
    fn jsonl_reads_field_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            "{\"text\":\"one\",\"id\":1}\n\n{\"text\":\"\"}\r\n{\"text\":null}\n{\"text\":\"two\\nlines\"}\n",
        )
        .unwrap();
        let c = Corpus::open(&p).unwrap();
        assert_eq!(c.format(), CorpusFormat::Jsonl);
        let mut it = c.documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["one", "two\nlines"]);
        assert_eq!(it.stats().skipped_empty, 2);

        let p2 = dir.path().join("bad.jsonl");
        std::fs::write(&p2, "{\"text\":\"ok\"}\n{\"text\": oops}\n").unwrap();
        let err = collect(&Corpus::open(&p2).unwrap()).unwrap_err();
        assert!(matches!(err, CorpusError::BadJson { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("bad.jsonl:2"), "{err}");

        let p3 = dir.path().join("field.jsonl");
        std::fs::write(&p3, "{\"body\":\"x\"}\n").unwrap();
        let err = collect(&Corpus::open(&p3).unwrap()).unwrap_err();
        assert!(
            matches!(err, CorpusError::MissingField { line: 1, .. }),
            "{err}"
        );
        let c3 = Corpus::open(&p3).unwrap().with_text_field("body");
        assert_eq!(collect(&c3).unwrap(), vec!["x"]);

        let p4 = dir.path().join("num.jsonl");
        std::fs::write(&p4, "{\"text\":3}\n").unwrap();
        let err = collect(&Corpus::open(&p4).unwrap()).unwrap_err();
        assert!(matches!(err, CorpusError::FieldNotString { .. }), "{err}");

        let p5 = dir.path().join("arr.jsonl");
        std::fs::write(&p5, "[1,2]\n").unwrap();
        let err = collect(&Corpus::open(&p5).unwrap()).unwrap_err();
        assert!(matches!(err, CorpusError::BadJson { .. }), "{err}");
    }

    #[test]
    fn jsonl_lossy_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, b"{\"text\":\"a\xFEb\"}\n").unwrap();
        let c = Corpus::open(&p).unwrap();
        let mut it = c.documents();
        assert_eq!(it.next().unwrap().unwrap(), "a\u{FFFD}b");
        assert!(it.next().is_none());
        assert_eq!(it.stats().lossy_utf8, 1);
    }

    #[test]
    fn empty_corpus_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        std::fs::write(&p, "{\"text\":\"\"}\n{\"text\":\"  \"}\n").unwrap();
        let err = collect(&Corpus::open(&p).unwrap()).unwrap_err();
        assert!(
            matches!(
                err,
                CorpusError::Empty {
                    skipped_empty: 2,
                    ..
                }
            ),
            "{err}"
        );
        // The iterator is fused after the error.
        let mut it = Corpus::open(&p).unwrap().documents();
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn missing_and_unsupported_paths() {
        let dir = tempfile::tempdir().unwrap();
        let err = Corpus::open(&dir.path().join("nope.txt")).unwrap_err();
        assert!(matches!(err, CorpusError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("nope.txt"));
        let p = dir.path().join("x.bin");
        std::fs::write(&p, "x").unwrap();
        let err = Corpus::open(&p).unwrap_err();
        assert!(
            matches!(err, CorpusError::UnsupportedFormat { .. }),
            "{err}"
        );
        let empty_dir = dir.path().join("d");
        std::fs::create_dir(&empty_dir).unwrap();
        std::fs::write(empty_dir.join("x.bin"), "x").unwrap();
        let err = Corpus::open(&empty_dir).unwrap_err();
        assert!(matches!(err, CorpusError::NoFiles { .. }), "{err}");
    }

    #[test]
    fn parquet_file_and_shards() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        write_parquet(
            &data.join("train-00001-of-00002.parquet"),
            &[text_batch(&[Some("c"), None, Some("d")])],
        );
        write_parquet(
            &data.join("train-00000-of-00002.parquet"),
            &[text_batch(&[Some("a"), Some("")]), text_batch(&[Some("b")])],
        );
        // A README next to the shards is ignored: parquet wins.
        std::fs::write(dir.path().join("README.md"), "# card").unwrap();
        let c = Corpus::open(dir.path()).unwrap();
        assert_eq!(c.format(), CorpusFormat::Parquet);
        assert_eq!(c.files().len(), 2);
        let mut it = c.documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["a", "b", "c", "d"]);
        assert_eq!(it.stats().skipped_empty, 2);

        let single = Corpus::open(&data.join("train-00001-of-00002.parquet")).unwrap();
        assert_eq!(collect(&single).unwrap(), vec!["c", "d"]);
    }

    #[test]
    fn parquet_many_rows_cross_batches() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.parquet");
        let texts: Vec<String> = (0..2500).map(|i| format!("doc {i}")).collect();
        let refs: Vec<Option<&str>> = texts.iter().map(|s| Some(s.as_str())).collect();
        write_parquet(&p, &[text_batch(&refs)]);
        let docs = collect(&Corpus::open(&p).unwrap()).unwrap();
        assert_eq!(docs, texts);
    }

    #[test]
    fn parquet_binary_column_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.parquet");
        let bin = BinaryArray::from(vec![b"x\xFFy".as_ref(), b"ok".as_ref()]);
        let b = RecordBatch::try_from_iter(vec![("content", Arc::new(bin) as ArrayRef)]).unwrap();
        write_parquet(&p, &[b]);
        let err = collect(&Corpus::open(&p).unwrap()).unwrap_err();
        match &err {
            CorpusError::MissingColumn { available, .. } => assert_eq!(available, "content"),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("bin.parquet"));
        let c = Corpus::open(&p).unwrap().with_text_field("content");
        let mut it = c.documents();
        let docs: Vec<String> = it.by_ref().map(|d| d.unwrap()).collect();
        assert_eq!(docs, vec!["x\u{FFFD}y", "ok"]);
        assert_eq!(it.stats().lossy_utf8, 1);

        let p2 = dir.path().join("int.parquet");
        let ints = Int32Array::from(vec![1, 2]);
        let b = RecordBatch::try_from_iter(vec![("text", Arc::new(ints) as ArrayRef)]).unwrap();
        write_parquet(&p2, &[b]);
        let err = collect(&Corpus::open(&p2).unwrap()).unwrap_err();
        assert!(matches!(err, CorpusError::ColumnType { .. }), "{err}");

        let p3 = dir.path().join("junk.parquet");
        std::fs::write(&p3, "not parquet").unwrap();
        let err = collect(&Corpus::open(&p3).unwrap()).unwrap_err();
        assert!(matches!(err, CorpusError::Parquet { .. }), "{err}");
    }

    #[test]
    fn jsonl_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"text\":\"2\"}\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"text\":\"1\"}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let c = Corpus::open(dir.path()).unwrap();
        assert_eq!(c.format(), CorpusFormat::Jsonl);
        assert_eq!(collect(&c).unwrap(), vec!["1", "2"]);
    }
    /// Reads the corpora fetched by `saelab fetch-assets` and checks them
    /// against their `.meta.json`. Runs on whatever is fetched; `wiki` (the
    /// corpus `scripts/test` fetches) is required when
    /// `SAELAB_REQUIRE_ASSETS` is set.
    #[test]
    fn fetched_assets_match_their_meta() {
        let root = saelab_assets::root();
        let mut seen = 0;
        for name in saelab_assets::CORPORA {
            let path = saelab_assets::corpus_path(&root, name).unwrap();
            if !path.is_file() {
                assert!(
                    *name != "wiki" || !saelab_assets::assets_required(),
                    "{} is missing and SAELAB_REQUIRE_ASSETS is set: run scripts/fetch-assets",
                    path.display()
                );
                continue;
            }
            let meta = saelab_assets::CorpusMeta::read_for(&path).unwrap();
            let c = Corpus::open(&path).unwrap();
            assert_eq!(c.content_hash().unwrap(), meta.sha256);
            let mut it = c.documents();
            for d in it.by_ref() {
                d.unwrap();
            }
            let st = it.stats();
            assert_eq!(st.documents, meta.documents, "{path:?}");
            assert_eq!(st.bytes, meta.text_bytes, "{path:?}");
            assert_eq!(st.skipped_empty, 0);
            eprintln!(
                "{}: {} documents, {} bytes, {} invalid UTF-8 sequences replaced",
                path.display(),
                st.documents,
                st.bytes,
                st.invalid_utf8_sequences
            );
            seen += 1;
        }
        if seen == 0 {
            eprintln!(
                "skipping: no corpora under {} (run scripts/fetch-assets)",
                root.display()
            );
        }
    }
}
