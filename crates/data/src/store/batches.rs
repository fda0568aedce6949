//! [`BatchStream`]: shuffled batches of activation vectors for SAE training,
//! read from an [`ActivationStore`] with bounded memory, or from any other
//! [`ShardProvider`] (vectors computed on demand, e.g. by a model forward
//! pass: the same algorithm over the same vectors gives the same batches).
//!
//! # The algorithm (exact, so a run can be reproduced from its seed)
//!
//! The stream sees one hook. An *activation vector* is the `d` floats of one
//! (row, position); positions `< skip_positions` (e.g. 1 = drop the BOS
//! position) are never read. Within a shard, vectors are enumerated row by
//! row, position by position. `V = rows * (seq_len - skip_positions)` vectors
//! form one epoch.
//!
//! One ChaCha8 generator, `ChaCha8Rng::seed_from_u64(seed)`, drives every
//! random choice in the order they happen below. `below(n)` draws a uniform
//! integer in `0..n` from it by Lemire's multiply-and-reject method on
//! `next_u64()` (`m = x * n` as 128 bits; if `low64(m) < (2^64 - n) mod n`
//! draw again; return `high64(m)`), so the stream depends on ChaCha8's output
//! only, not on the sampling code of a `rand` version. `shuffle(a)` is
//! Fisher–Yates: for `i` from `len-1` down to `1`, swap `a[i]` and
//! `a[below(i+1)]`.
//!
//! For each epoch:
//! 1. `order = shuffle([0, 1, ..., num_shards-1])`; shards are read in that
//!    order, each from its first vector to its last.
//! 2. *Fill*: the buffer keeps the `r` vectors carried over from the last
//!    round at its front, in their shuffled order, then appends vectors in
//!    read order until it holds `buffer_vectors` vectors or the epoch's
//!    shards are exhausted.
//! 3. *Shuffle* the buffer with `shuffle` (the same generator).
//! 4. *Emit* `⌊m / batch_size⌋` batches of consecutive vectors from the
//!    front of the buffer (`m` = buffer length). The `r = m mod batch_size`
//!    vectors left over are carried to step 2.
//! 5. Repeat 2–4 until a fill reads the epoch's last vector. After that
//!    fill's batches, the last `r < batch_size` vectors are not shuffled
//!    again: they are dropped (default; an epoch yields
//!    `⌊V / batch_size⌋` batches, matching "training steps = ⌊tokens / B⌋") or,
//!    with [`BatchStream::with_keep_last`], emitted as one short batch (then
//!    every vector appears exactly once per epoch).
//!
//! With `epochs = None` the stream restarts at step 1 forever. The study's
//! setting is `buffer_vectors = 10 * 512 * 128` (ten batches of 512 rows of
//! 128 tokens) and `batch_size = 4096`.
//!
//! Memory: the buffer holds the vectors in the store dtype
//! (`buffer_vectors * d * 2` bytes for f16/bf16, `* 4` for f32: about 1 GB
//! for the study's buffer at d = 768 in f16), plus one memory-mapped shard at
//! a time; the store is never loaded whole. Vectors are converted to `f32`
//! only when a batch is gathered.
//!
//! Integrity: each shard's sha256 is checked against the manifest the first
//! time the stream opens it (see [`BatchStream::with_verify_shards`]).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::manifest::StoreDtype;
use super::reader::{ActivationStore, ShardReader};
use super::{Result, StoreError};
use std::ops::Range;

/// The shards a [`BatchStream`] reads, in the store's layout: shard `i`
/// holds `rows` rows of `seq_len` vectors of one hook, row by row.
pub trait ShardProvider: std::fmt::Debug {
    /// Shards in one pass.
    fn num_shards(&self) -> usize;
    /// Rows over all shards.
    fn rows(&self) -> u64;
    /// Rows of shard `index` (known without opening it).
    fn shard_rows(&self, index: usize) -> usize;
    /// Opens shard `index` (once per shard per epoch, in the stream's
    /// shard order; after a skip, the shards still buffered are opened
    /// again, the one being read last).
    fn open(&mut self, index: usize) -> Result<Box<dyn ShardVectors>>;
    /// Whether to check shard checksums on first open (stores only).
    fn set_verify(&mut self, _verify: bool) {}
}

/// One opened shard of one hook.
pub trait ShardVectors {
    /// Rows in the shard.
    fn rows(&self) -> usize;
    /// Raw little-endian bytes (in the stream's dtype) of the elements
    /// `elems` of the shard's `[rows · seq_len · d]` vectors.
    fn raw(&self, elems: Range<usize>) -> Result<&[u8]>;
}

/// One hook of an [`ActivationStore`], shards memory-mapped.
#[derive(Debug)]
struct StoreShards {
    store: ActivationStore,
    hook_index: usize,
    /// Check each shard's sha256 the first time it is read.
    verify: bool,
    /// Shards whose sha256 has been checked.
    verified: Vec<bool>,
}

impl ShardProvider for StoreShards {
    fn num_shards(&self) -> usize {
        self.store.num_shards()
    }
    fn rows(&self) -> u64 {
        self.store.rows()
    }
    fn shard_rows(&self, index: usize) -> usize {
        self.store
            .manifest()
            .shards
            .get(index)
            .map_or(0, |s| s.rows)
    }
    fn open(&mut self, index: usize) -> Result<Box<dyn ShardVectors>> {
        if self.verify && !self.verified[index] {
            self.store.verify_shard(index)?;
            self.verified[index] = true;
        }
        Ok(Box::new(HookOfShard {
            reader: self.store.open_shard(index)?,
            hook_index: self.hook_index,
        }))
    }
    fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }
}

struct HookOfShard {
    reader: ShardReader,
    hook_index: usize,
}

impl ShardVectors for HookOfShard {
    fn rows(&self) -> usize {
        self.reader.rows()
    }
    fn raw(&self, elems: Range<usize>) -> Result<&[u8]> {
        self.reader.raw(self.hook_index, elems)
    }
}

/// The shard a stream is reading: opened only when its bytes are needed
/// (a skip reads none).
struct Current {
    shard: usize,
    reader: Option<Box<dyn ShardVectors>>,
    /// Next vector in the shard, and the shard's vector count.
    next: usize,
    total: usize,
}

/// Deterministic shuffled batches of one hook's activation vectors.
pub struct BatchStream {
    shards: Box<dyn ShardProvider>,
    batch_size: usize,
    buffer_vectors: usize,
    skip_positions: usize,
    keep_last: bool,
    epochs: Option<usize>,
    rng: ChaCha8Rng,
    d: usize,
    seq_len: usize,
    dtype: StoreDtype,
    /// Bytes per vector (`d * dtype.size()`).
    vec_bytes: usize,

    started: bool,
    finished: bool,
    /// Current epoch (0-based).
    epoch: usize,
    /// Batches emitted in the current epoch.
    epoch_batches: usize,
    /// Shard order of the current epoch.
    order: Vec<usize>,
    /// Next position in `order` to open.
    next_in_order: usize,
    /// The shard being read.
    current: Option<Current>,
    /// All shards of the epoch have been read into the buffer.
    exhausted: bool,
    /// `[buf_len, d]` vectors as raw little-endian store-dtype bytes
    /// (`u64` words keep the bytes 8-aligned for the fast decode path).
    buffer: Vec<u64>,
    buf_len: usize,
    /// Where each buffer slot's vector comes from: `shard << 32 | vector`
    /// (kept also when skipping, which moves ids, not bytes).
    ids: Vec<u64>,
    /// Shuffled permutation of `0..buf_len`: the buffer in shuffled order.
    perm: Vec<u32>,
    /// Next index into `perm` to emit.
    emit_pos: usize,
}

impl BatchStream {
    /// A stream of `batch_size` vectors of `hook` per batch, shuffled through a
    /// buffer of `buffer_vectors` vectors (≥ `batch_size`), `epochs` passes
    /// over the store (`None`: endless).
    pub fn new(
        store: &ActivationStore,
        hook: &str,
        batch_size: usize,
        seed: u64,
        epochs: Option<usize>,
        buffer_vectors: usize,
    ) -> Result<BatchStream> {
        let spec = store.spec();
        let shards = StoreShards {
            store: store.clone(),
            hook_index: spec.hook_index(hook)?,
            verify: true,
            verified: vec![false; store.num_shards()],
        };
        if store.rows() == 0 {
            return Err(StoreError::BadStream(format!(
                "{}: the store holds no rows",
                store.dir().display()
            )));
        }
        let layout = (spec.d, spec.seq_len, spec.dtype);
        Self::from_provider(
            Box::new(shards),
            layout,
            batch_size,
            seed,
            epochs,
            buffer_vectors,
        )
    }

    /// A stream over any [`ShardProvider`] whose vectors are `d` wide,
    /// `seq_len` per row, stored as `dtype` (`layout`); otherwise as [`new`](Self::new).
    pub fn from_provider(
        shards: Box<dyn ShardProvider>,
        layout: (usize, usize, StoreDtype),
        batch_size: usize,
        seed: u64,
        epochs: Option<usize>,
        buffer_vectors: usize,
    ) -> Result<BatchStream> {
        let (d, seq_len, dtype) = layout;
        if batch_size == 0 {
            return Err(StoreError::BadStream("batch_size must be > 0".into()));
        }
        if buffer_vectors < batch_size {
            return Err(StoreError::BadStream(format!(
                "buffer of {buffer_vectors} vectors is smaller than a batch of {batch_size}"
            )));
        }
        if buffer_vectors > u32::MAX as usize {
            return Err(StoreError::BadStream(format!(
                "buffer of {buffer_vectors} vectors is too large (max {})",
                u32::MAX
            )));
        }
        let vec_bytes = d * dtype.size();
        if buffer_vectors
            .checked_mul(vec_bytes)
            .and_then(|b| b.checked_add(8))
            .is_none()
        {
            return Err(StoreError::BadStream("buffer_vectors * d overflows".into()));
        }
        if shards.rows() == 0 || seq_len == 0 {
            return Err(StoreError::BadStream(
                "the stream's source holds no vectors".into(),
            ));
        }
        Ok(BatchStream {
            shards,
            batch_size,
            buffer_vectors,
            skip_positions: 0,
            keep_last: false,
            epochs,
            rng: ChaCha8Rng::seed_from_u64(seed),
            d,
            seq_len,
            dtype,
            vec_bytes,
            started: false,
            finished: epochs == Some(0),
            epoch: 0,
            epoch_batches: 0,
            order: Vec::new(),
            next_in_order: 0,
            current: None,
            exhausted: false,
            buffer: Vec::new(),
            buf_len: 0,
            ids: Vec::new(),
            perm: Vec::new(),
            emit_pos: 0,
        })
    }

    /// Never read positions `< n` of a row (1 = skip the BOS position).
    /// Must be called before the first batch.
    pub fn with_skip_positions(mut self, n: usize) -> Result<BatchStream> {
        if self.started {
            return Err(StoreError::BadStream(
                "skip_positions must be set before the first batch".into(),
            ));
        }
        if n >= self.seq_len {
            return Err(StoreError::BadStream(format!(
                "skip_positions {n} leaves nothing of rows of seq_len {}",
                self.seq_len
            )));
        }
        self.skip_positions = n;
        Ok(self)
    }

    /// Emit the `< batch_size` vectors left at the end of an epoch as a short
    /// batch instead of dropping them.
    pub fn with_keep_last(mut self, keep: bool) -> BatchStream {
        self.keep_last = keep;
        self
    }

    /// Whether to check each shard's sha256 against the manifest the first
    /// time the stream reads it (default: on; one extra read per shard, so
    /// a corrupted store fails the run instead of training on bad data).
    pub fn with_verify_shards(mut self, verify: bool) -> BatchStream {
        self.shards.set_verify(verify);
        self
    }

    /// Width of the vectors.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Vectors per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Current epoch (0-based).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Vectors read per epoch.
    pub fn vectors_per_epoch(&self) -> u64 {
        self.shards.rows() * (self.seq_len - self.skip_positions) as u64
    }

    /// Full batches per epoch (`⌊vectors_per_epoch / batch_size⌋`), plus one
    /// short batch with `keep_last` if there is a remainder.
    pub fn batches_per_epoch(&self) -> u64 {
        let v = self.vectors_per_epoch();
        let b = self.batch_size as u64;
        v / b + u64::from(self.keep_last && !v.is_multiple_of(b))
    }

    /// Uniform integer in `0..n` (Lemire's method, see the module doc).
    fn below(&mut self, n: u64) -> u64 {
        let mut m = u128::from(self.rng.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let t = n.wrapping_neg() % n;
            while (m as u64) < t {
                m = u128::from(self.rng.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    fn start_epoch(&mut self) {
        let mut order: Vec<usize> = (0..self.shards.num_shards()).collect();
        for i in (1..order.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        self.order = order;
        self.next_in_order = 0;
        self.current = None;
        self.exhausted = false;
        self.buf_len = 0;
        self.emit_pos = 0;
        self.perm.clear();
        self.epoch_batches = 0;
    }

    /// Steps 2 and 3: carry the leftover to the front, fill, shuffle.
    /// `dry` (a skip) moves the vectors' ids only; [`Self::materialize`]
    /// reads the bytes of what is left when the skip ends.
    fn refill(&mut self, dry: bool) -> Result<()> {
        let vb = self.vec_bytes;
        let words = (self.buffer_vectors * vb).div_ceil(8);
        if !dry && self.buffer.len() < words {
            self.buffer.resize(words, 0);
        }
        // Carry the leftover vectors (in shuffled order) to the front.
        let left = &self.perm[self.emit_pos..self.buf_len];
        let carried_ids: Vec<u64> = left.iter().map(|&k| self.ids[k as usize]).collect();
        if !dry {
            let buffer: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buffer);
            let mut carried = vec![0u8; left.len() * vb];
            for (k, &src) in left.iter().enumerate() {
                let s = src as usize * vb;
                carried[k * vb..(k + 1) * vb].copy_from_slice(&buffer[s..s + vb]);
            }
            buffer[..carried.len()].copy_from_slice(&carried);
        }
        let mut len = carried_ids.len();
        self.ids.clear();
        self.ids.extend(carried_ids);

        // Fill in read order.
        let usable = self.seq_len - self.skip_positions;
        while len < self.buffer_vectors {
            let Some(cur) = self.current.as_mut().filter(|c| c.next < c.total) else {
                let Some(&shard) = self.order.get(self.next_in_order) else {
                    self.exhausted = true;
                    break;
                };
                self.next_in_order += 1;
                let total = self.shards.shard_rows(shard) * usable;
                // Buffer slots record `shard << 32 | vector`.
                if total > u32::MAX as usize || shard > u32::MAX as usize {
                    return Err(StoreError::BadStream(format!(
                        "shard {shard} holds {total} vectors; at most {} per shard",
                        u32::MAX
                    )));
                }
                self.current = Some(Current {
                    shard,
                    reader: None,
                    next: 0,
                    total,
                });
                continue;
            };
            let take = (self.buffer_vectors - len).min(cur.total - cur.next);
            let tag = (cur.shard as u64) << 32;
            self.ids
                .extend((cur.next..cur.next + take).map(|v| tag | v as u64));
            if !dry {
                if cur.reader.is_none() {
                    cur.reader = Some(self.shards.open(cur.shard)?);
                }
                if let Some(reader) = cur.reader.as_deref() {
                    let buffer: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buffer);
                    let layout = (self.seq_len, self.skip_positions, self.d, vb);
                    copy_run(reader, layout, cur.next, take, &mut buffer[len * vb..])?;
                }
            }
            cur.next += take;
            len += take;
        }
        if !self.exhausted
            && self.next_in_order >= self.order.len()
            && self.current.as_ref().is_none_or(|c| c.next >= c.total)
        {
            self.exhausted = true;
        }
        if self.exhausted {
            self.current = None;
        }

        // Shuffle.
        self.buf_len = len;
        self.perm.clear();
        self.perm.extend(0..len as u32);
        for i in (1..len).rev() {
            let j = self.below(i as u64 + 1) as usize;
            self.perm.swap(i, j);
        }
        self.emit_pos = 0;
        Ok(())
    }

    /// After a skip: reads the bytes of the buffer slots not yet emitted,
    /// opening each shard they come from once.
    fn materialize(&mut self) -> Result<()> {
        let vb = self.vec_bytes;
        let words = (self.buffer_vectors * vb).div_ceil(8);
        if self.buffer.len() < words {
            self.buffer.resize(words, 0);
        }
        let mut by_shard: std::collections::BTreeMap<usize, Vec<(usize, usize)>> =
            Default::default();
        for &slot in &self.perm[self.emit_pos..self.buf_len] {
            let id = self.ids[slot as usize];
            let (shard, v) = ((id >> 32) as usize, (id & 0xffff_ffff) as usize);
            by_shard.entry(shard).or_default().push((slot as usize, v));
        }
        let layout = (self.seq_len, self.skip_positions, self.d, vb);
        // The shard being read goes last and stays open for the next fill
        // (a computed shard is then not computed twice).
        let current = self.current.as_ref().map(|c| c.shard);
        let mut shards: Vec<(usize, Vec<(usize, usize)>)> = by_shard.into_iter().collect();
        if let Some(pos) = shards.iter().position(|(s, _)| Some(*s) == current) {
            let cur = shards.remove(pos);
            shards.push(cur);
        } else if let Some(c) = current {
            shards.push((c, Vec::new()));
        }
        for (shard, slots) in shards {
            let reader = self.shards.open(shard)?;
            let buffer: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buffer);
            for (slot, v) in slots {
                copy_run(&*reader, layout, v, 1, &mut buffer[slot * vb..])?;
            }
            if let Some(c) = self.current.as_mut().filter(|c| c.shard == shard) {
                c.reader = Some(reader);
            }
        }
        Ok(())
    }

    fn gather(&self, from: usize, count: usize, out: &mut Vec<f32>) {
        let (d, vb) = (self.d, self.vec_bytes);
        out.clear();
        out.resize(count * d, 0.0);
        let buffer: &[u8] = bytemuck::cast_slice(&self.buffer);
        for (dst, &src) in out.chunks_exact_mut(d).zip(&self.perm[from..from + count]) {
            let s = src as usize * vb;
            self.dtype.decode(&buffer[s..s + vb], dst);
        }
    }

    /// Write the next batch into `out` (`[n, d]`, `n = batch_size` except a
    /// `keep_last` short batch). Returns `false` when the stream has ended.
    pub fn next_into(&mut self, out: &mut Vec<f32>) -> Result<bool> {
        self.advance(Some(out))
    }

    /// Moves past `batches` batches without reading their vectors (only
    /// those still in the shuffle buffer afterwards are read), ending in
    /// the state `batches` calls of [`Self::next_into`] would leave.
    /// Returns the batches skipped (fewer if the stream ended).
    pub fn skip_batches(&mut self, batches: u64) -> Result<u64> {
        let mut done = 0;
        while done < batches && self.advance(None)? {
            done += 1;
        }
        if done > 0 && !self.finished {
            if let Err(e) = self.materialize() {
                self.finished = true;
                return Err(e);
            }
        }
        Ok(done)
    }

    /// One batch into `out`, or past it (`None`: a skip).
    fn advance(&mut self, mut out: Option<&mut Vec<f32>>) -> Result<bool> {
        let dry = out.is_none();
        loop {
            if self.finished {
                return Ok(false);
            }
            if !self.started {
                self.started = true;
                self.start_epoch();
            }
            let left = self.buf_len - self.emit_pos;
            let short = self.exhausted && self.keep_last && left > 0;
            if left >= self.batch_size || short {
                let n = left.min(self.batch_size);
                if let Some(out) = out.as_deref_mut() {
                    self.gather(self.emit_pos, n, out);
                }
                self.emit_pos += n;
                self.epoch_batches += 1;
                return Ok(true);
            }
            if !self.exhausted {
                if let Err(e) = self.refill(dry) {
                    self.finished = true;
                    return Err(e);
                }
                continue;
            }
            // End of the epoch.
            let emitted = self.epoch_batches;
            self.epoch += 1;
            if emitted == 0 || self.epochs.is_some_and(|e| self.epoch >= e) {
                // `emitted == 0`: fewer vectors than a batch; an endless
                // stream would spin without yielding.
                self.finished = true;
                return Ok(false);
            }
            self.start_epoch();
        }
    }
}

/// Copies `count` consecutive vectors of `reader`, from vector `first`
/// (row-major over the usable positions), into `dst`.
fn copy_run(
    reader: &dyn ShardVectors,
    (seq_len, skip, d, vb): (usize, usize, usize, usize),
    first: usize,
    count: usize,
    dst: &mut [u8],
) -> Result<()> {
    let usable = seq_len - skip;
    let mut done = 0;
    while done < count {
        let v = first + done;
        let (row, p) = (v / usable, v % usable);
        let run = (usable - p).min(count - done);
        let e = (row * seq_len + skip + p) * d;
        let src = reader.raw(e..e + run * d)?;
        dst[done * vb..(done + run) * vb].copy_from_slice(src);
        done += run;
    }
    Ok(())
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("shards", &self.shards)
            .field("batch_size", &self.batch_size)
            .field("buffer_vectors", &self.buffer_vectors)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Iterator for BatchStream {
    type Item = Result<Vec<f32>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut out = Vec::new();
        match self.next_into(&mut out) {
            Ok(true) => Some(Ok(out)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
