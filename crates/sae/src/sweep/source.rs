//! [`BatchSource`]: where a sweep's training batches come from. The SAE
//! crate knows nothing of activation stores; the store-backed source lives
//! in `saelab_study::sources`. [`MemorySource`] serves vectors held in
//! memory (tests, small experiments).

use super::error::SourceError;
use crate::io::ExportMeta;
use serde_json::{json, Value};

/// A deterministic stream of training batches of a fixed size.
///
/// Resume replays the position: after `skip(s)` the stream must yield
/// exactly what it would have yielded after `s` calls of `next_into`.
pub trait BatchSource {
    /// Width of the vectors.
    fn d(&self) -> usize;
    /// Vectors in one pass over the data, when known (the default run
    /// length is one pass).
    fn vectors_per_epoch(&self) -> Option<u64>;
    /// Skips `batches` batches.
    fn skip(&mut self, batches: u64) -> Result<(), SourceError>;
    /// Writes the next `[batch, d]` batch into `batch`; `false` at the end.
    fn next_into(&mut self, batch: &mut Vec<f32>) -> Result<bool, SourceError>;
    /// What a resumed run must match: the data (by content, not path),
    /// the batch order seed, the shuffle buffer.
    fn identity(&self) -> Value;
    /// Where the vectors come from, for the SAELens cfg (`extra` keys are
    /// kept and the sweep's own are added).
    fn meta(&self) -> ExportMeta;
    /// Lanes: hook points served side by side, one batch each per step
    /// (several hooks of one forward pass). SAEs name theirs in
    /// [`super::SaePlan::lane`].
    fn lanes(&self) -> usize {
        1
    }
    /// The next batch of every lane (`batches.len() == lanes()`), each
    /// `[batch, d]`; `false` at the end.
    fn next_lanes(&mut self, batches: &mut [Vec<f32>]) -> Result<bool, SourceError> {
        match batches {
            [one] => self.next_into(one),
            _ => Err(format!("a one-lane source was asked for {} lanes", batches.len()).into()),
        }
    }
    /// [`Self::meta`] of one lane (its hook).
    fn meta_lane(&self, _lane: usize) -> ExportMeta {
        self.meta()
    }
}

/// Row-major `[rows, d]` vectors served in order, `batch` at a time,
/// wrapping around at the end (endless).
#[derive(Clone, Debug)]
pub struct MemorySource {
    data: Vec<f32>,
    d: usize,
    batch: usize,
    /// Next row.
    pos: usize,
    meta: ExportMeta,
}

impl MemorySource {
    /// `data` must hold at least one batch of whole rows.
    pub fn new(
        data: Vec<f32>,
        d: usize,
        batch: usize,
        meta: ExportMeta,
    ) -> Result<Self, SourceError> {
        if d == 0 || batch == 0 || !data.len().is_multiple_of(d) || data.len() / d < batch {
            return Err(format!(
                "memory source: {} floats are not whole rows of d = {d} holding a batch of {batch}",
                data.len()
            )
            .into());
        }
        Ok(MemorySource {
            data,
            d,
            batch,
            pos: 0,
            meta,
        })
    }

    fn rows(&self) -> usize {
        self.data.len() / self.d
    }
}

impl BatchSource for MemorySource {
    fn d(&self) -> usize {
        self.d
    }

    fn vectors_per_epoch(&self) -> Option<u64> {
        Some(self.rows() as u64)
    }

    fn skip(&mut self, batches: u64) -> Result<(), SourceError> {
        let rows = self.rows() as u128;
        let moved = (batches as u128 * self.batch as u128) % rows;
        self.pos = ((self.pos as u128 + moved) % rows) as usize;
        Ok(())
    }

    fn next_into(&mut self, batch: &mut Vec<f32>) -> Result<bool, SourceError> {
        batch.clear();
        for _ in 0..self.batch {
            let r = self.pos * self.d;
            batch.extend_from_slice(&self.data[r..r + self.d]);
            self.pos = (self.pos + 1) % self.rows();
        }
        Ok(true)
    }

    fn identity(&self) -> Value {
        let bytes: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        json!({"kind": "memory", "d": self.d, "sha256": saelab_fsio::sha256_bytes(&bytes)})
    }

    fn meta(&self) -> ExportMeta {
        self.meta.clone()
    }
}
