//! CPU kernels for the SAE hot loop, on plain row-major `f32` slices.
//!
//! The only dense work is the encoder product `x · W_enc` (B×d times d×n),
//! which goes through the `gemm` crate with rayon parallelism, or, with
//! `EncoderPrecision::Bf16`, through the hand-written bf16 GEMM of
//! `saelab_kernels` (≈ 2× the f32 rate on AVX512_BF16). Everything
//! after the activation touches only the active latents of each row, so it
//! is hand-written over a compressed (index, value) representation
//! ([`SparseCodes`], CSR by row):
//!
//! - per-row top-k: a k-slot min-heap scan, because for k ≪ n almost every
//!   candidate fails a single compare against the heap minimum, which beats
//!   `select_nth_unstable` over (value, index) pairs by an order of magnitude;
//! - batch top-(k·B): a two-pass radix select on the bit patterns of the
//!   positive activations (positive `f32` order equals `u32` order), since
//!   integer histograms merge exactly in any order, keeping the result
//!   independent of rayon scheduling;
//! - sparse decode (gather rows of `W_dec`), and the decoder / encoder
//!   gradients computed per latent from a CSC transpose of the codes, so each
//!   gradient row is summed by one thread in a fixed order.
//!   When codes are dense enough to share latents within a block of rows
//!   (AuxK, high-L0 ReLU / JumpReLU), `crate::blocked` runs the same sums
//!   row-blocked for cache reuse, bit-identically.
//!
//! Ties in every selection are broken by the lower index (row-major flat
//! index for the batch-level selection), so results are a pure function of
//! the inputs. All floating-point reductions either run sequentially inside
//! one row/latent or combine fixed-boundary partial sums in order: the same
//! inputs give the same bits for any thread count (the `gemm` crate's own
//! blocking is the one part we do not control; see the determinism test).

use crate::error::{Result, SaeError};
use rayon::prelude::*;
use saelab_kernels::simd::{above_mask, Width};

/// Rows per rayon task for row-parallel kernels; fixed so that chunked
/// reductions have boundaries independent of the thread count.
pub const ROW_CHUNK: usize = 64;

/// Sparse codes of a batch: for each row the active latents in increasing
/// index order with their values (CSR layout).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseCodes {
    /// Number of rows (tokens).
    pub rows: usize,
    /// Number of latents (dictionary size).
    pub n: usize,
    /// Row `b` owns entries `indptr[b]..indptr[b + 1]`.
    pub indptr: Vec<usize>,
    /// Latent index of each entry.
    pub idx: Vec<u32>,
    /// Activation value of each entry.
    pub val: Vec<f32>,
}

impl SparseCodes {
    /// Builds CSR codes from per-row lists (each sorted by index).
    pub fn from_rows(n: usize, rows: Vec<(Vec<u32>, Vec<f32>)>) -> Self {
        let total: usize = rows.iter().map(|r| r.0.len()).sum();
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let mut idx = Vec::with_capacity(total);
        let mut val = Vec::with_capacity(total);
        indptr.push(0);
        let nrows = rows.len();
        for (i, v) in rows {
            idx.extend_from_slice(&i);
            val.extend_from_slice(&v);
            indptr.push(idx.len());
        }
        SparseCodes {
            rows: nrows,
            n,
            indptr,
            idx,
            val,
        }
    }

    /// Entries of row `b` as (indices, values).
    pub fn row(&self, b: usize) -> (&[u32], &[f32]) {
        let (s, e) = (self.indptr[b], self.indptr[b + 1]);
        (&self.idx[s..e], &self.val[s..e])
    }

    /// `buf` (one value per entry, in CSR order) cut into each row's part,
    /// so rows can be filled in parallel.
    pub fn row_parts<'a>(&self, buf: &'a mut [f32]) -> Vec<&'a mut [f32]> {
        let mut parts = Vec::with_capacity(self.rows);
        let mut rest = buf;
        for b in 0..self.rows {
            let (h, t) = rest.split_at_mut(self.indptr[b + 1] - self.indptr[b]);
            parts.push(h);
            rest = t;
        }
        parts
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.idx.len()
    }

    /// Number of entries with a strictly positive value (the L0 numerator).
    pub fn count_positive(&self) -> usize {
        self.val.iter().filter(|&&v| v > 0.0).count()
    }

    /// Dense B×n matrix of the codes.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.n];
        for b in 0..self.rows {
            let (ix, vs) = self.row(b);
            for (&i, &v) in ix.iter().zip(vs) {
                out[b * self.n + i as usize] = v;
            }
        }
        out
    }

    /// Column view: for each latent, the (row, CSR position) of its entries in
    /// increasing row order. Built by a counting sort, so it is deterministic.
    pub fn to_csc(&self) -> Csc {
        let mut colptr = vec![0usize; self.n + 1];
        for &i in &self.idx {
            colptr[i as usize + 1] += 1;
        }
        for i in 0..self.n {
            colptr[i + 1] += colptr[i];
        }
        let mut fill = colptr.clone();
        let mut row = vec![0u32; self.nnz()];
        let mut pos = vec![0u32; self.nnz()];
        for b in 0..self.rows {
            for p in self.indptr[b]..self.indptr[b + 1] {
                let i = self.idx[p] as usize;
                row[fill[i]] = b as u32;
                pos[fill[i]] = p as u32;
                fill[i] += 1;
            }
        }
        Csc { colptr, row, pos }
    }
}

/// Column (per-latent) view of [`SparseCodes`].
#[derive(Clone, Debug)]
pub struct Csc {
    /// Latent `i` owns entries `colptr[i]..colptr[i + 1]`.
    pub colptr: Vec<usize>,
    /// Row of each entry.
    pub row: Vec<u32>,
    /// Position of each entry in the CSR arrays (to read values and grads).
    pub pos: Vec<u32>,
}

/// Returns an error naming the first row holding NaN or Inf.
pub fn check_finite(x: &[f32], d: usize) -> Result<()> {
    if d == 0 {
        return Ok(());
    }
    let bad = x
        .par_chunks(d * ROW_CHUNK)
        .enumerate()
        .filter_map(|(c, chunk)| {
            chunk
                .iter()
                .position(|v| !v.is_finite())
                .map(|p| c * d * ROW_CHUNK + p)
        })
        .min();
    match bad {
        Some(flat) => Err(SaeError::NonFinite {
            row: flat / d,
            col: flat % d,
        }),
        None => Ok(()),
    }
}

/// Per-row input unit normalization (SPEC §2.1): returns x̃ and the per-row
/// (μ, σ) needed to map reconstructions back. σ is the unbiased std.
pub fn normalize_rows(x: &[f32], d: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut xt = vec![0.0f32; x.len()];
    let (mu, sd) = normalize_rows_into(x, d, eps, &mut xt);
    (xt, mu, sd)
}

/// [`normalize_rows`] into `xt` (same length as `x`, e.g. a buffer kept
/// across training steps); returns the row means and standard deviations.
pub fn normalize_rows_into(x: &[f32], d: usize, eps: f32, xt: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(xt.len(), x.len(), "normalize_rows_into: output length");
    let rows = x.len() / d.max(1);
    let mut mu = vec![0.0f32; rows];
    let mut sd = vec![0.0f32; rows];
    if d == 0 {
        return (mu, sd);
    }
    const G: usize = ROW_GROUP;
    xt.par_chunks_mut(G * d)
        .zip(x.par_chunks(G * d))
        .zip(mu.par_chunks_mut(G).zip(sd.par_chunks_mut(G)))
        .for_each(|((out, block), (m, s))| {
            let rows = group_rows(block, d);
            let sums = row_sums_f64(&rows, |_, _, v| v as f64);
            let mean = sums.map(|t| t / d as f64);
            let sq = row_sums_f64(&rows, |r, _, v| {
                let c = v as f64 - mean[r];
                c * c
            });
            for (r, (o, row)) in out.chunks_mut(d).zip(block.chunks(d)).enumerate() {
                let std = (sq[r] / (d.max(2) - 1) as f64).sqrt();
                let denom = std + eps as f64;
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = ((v as f64 - mean[r]) / denom) as f32;
                }
                m[r] = mean[r] as f32;
                s[r] = std as f32;
            }
        });
    (mu, sd)
}

/// Rows summed side by side by [`row_sums_f64`].
pub const ROW_GROUP: usize = 8;

/// The rows of `block` (up to [`ROW_GROUP`] rows of length `d > 0`), the
/// missing ones filled with the first row (their sums are not used).
pub fn group_rows(block: &[f32], d: usize) -> [&[f32]; ROW_GROUP] {
    let mut rows = [&block[..d]; ROW_GROUP];
    for (r, row) in rows.iter_mut().zip(block.chunks_exact(d)) {
        *r = row;
    }
    rows
}

/// `out[r] = Σ_j f(r, j, rows[r][j])` in f64, bit for bit as
/// `rows[r].iter().enumerate().map(..).sum::<f64>()` (same start value,
/// same order), but with the rows' chains of dependent adds side by side:
/// one row at a time is bound by the add latency.
#[inline]
pub fn row_sums_f64(
    rows: &[&[f32]; ROW_GROUP],
    f: impl Fn(usize, usize, f32) -> f64,
) -> [f64; ROW_GROUP] {
    let start: f64 = std::iter::empty::<f64>().sum();
    let mut acc = [start; ROW_GROUP];
    let d = rows[0].len();
    for j in 0..d {
        for (r, (a, row)) in acc.iter_mut().zip(rows).enumerate() {
            *a += f(r, j, row[j]);
        }
    }
    acc
}

/// Dense encoder product through the `gemm` crate:
/// `out[b, i] = Σ_j x[b, j] · w_enc_t[i, j] (+ b_enc[i])`, with `w_enc_t`
/// the n×d transpose of W_enc (so one latent's weights are contiguous for
/// the sparse gradient).
pub fn encoder_preacts(
    x: &[f32],
    d: usize,
    w_enc_t: &[f32],
    n: usize,
    b_enc: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; (x.len() / d.max(1)) * n];
    encoder_preacts_into(x, d, w_enc_t, n, b_enc, &mut out);
    out
}

/// [`encoder_preacts`] into a caller-owned buffer of length B×n (which the
/// trainer reuses across steps: a fresh 200 MB buffer at n 12288 costs tens
/// of milliseconds of page faults every step).
pub fn encoder_preacts_into(
    x: &[f32],
    d: usize,
    w_enc_t: &[f32],
    n: usize,
    b_enc: Option<&[f32]>,
    out: &mut [f32],
) {
    let rows = x.len() / d.max(1);
    assert_eq!(out.len(), rows * n, "encoder_preacts_into: output length");
    if rows == 0 || n == 0 {
        return;
    }
    if d == 0 {
        out.fill(0.0);
        add_bias_rows(out, n, b_enc);
        return;
    }
    let threads = rayon::current_num_threads();
    if threads > 1 && n >= ENC_COLUMN_CHUNKS * ENC_MIN_CHUNK {
        // Column chunks, one single-threaded product each, spread over the
        // pool: 209–230 ms against 222–247 for one product split by the
        // `gemm` crate itself (4096 × 12288 × 768, 2 threads, alternated
        // over 7 rounds, bench/RESULTS.md session 12). The chunks are fixed
        // (not one per thread) and every output element is summed in the
        // same order either way (tested), so the bits do not change.
        let width = n.div_ceil(ENC_COLUMN_CHUNKS).next_multiple_of(16);
        let dst = SharedOut(out.as_mut_ptr());
        let dst = &dst;
        (0..n.div_ceil(width)).into_par_iter().for_each(|c| {
            let (c0, c1) = (c * width, ((c + 1) * width).min(n));
            // SAFETY: columns c0..c1 of `out` (row stride n) and latents
            // c0..c1 of W_enc lie inside their buffers; each task writes
            // its own columns only.
            unsafe { encoder_gemm(x, d, w_enc_t, n, (c0, c1), dst.0, gemm::Parallelism::None) };
        });
    } else {
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: all n columns of `out`, which is rows×n (checked above).
        unsafe { encoder_gemm(x, d, w_enc_t, n, (0, n), out.as_mut_ptr(), par) };
    }
    add_bias_rows(out, n, b_enc);
}

/// Column chunks of a large encoder product (see [`encoder_preacts_into`]).
const ENC_COLUMN_CHUNKS: usize = 8;
/// Fewer columns per chunk than this and the product runs as one call.
const ENC_MIN_CHUNK: usize = 256;

/// `out` as a pointer the column tasks share (each writes its own columns).
struct SharedOut(*mut f32);
// SAFETY: the tasks write disjoint columns of the buffer behind it.
unsafe impl Sync for SharedOut {}

/// Columns `c0..c1` of the encoder product into `out` (rows×n, row stride
/// n), with the `gemm` crate's parallelism `par`.
///
/// # Safety
/// `x` is rows×d, `w_enc_t` n×d, `out` valid for rows×n writes with
/// nothing else touching columns `c0..c1` during the call; `c0 ≤ c1 ≤ n`.
unsafe fn encoder_gemm(
    x: &[f32],
    d: usize,
    w_enc_t: &[f32],
    n: usize,
    (c0, c1): (usize, usize),
    out: *mut f32,
    par: gemm::Parallelism,
) {
    let rows = x.len() / d;
    // SAFETY: the caller's contract: x is rows×d (row stride d), W_enc
    // viewed as d×n reads w_enc_t[i*d + j] for latents i in c0..c1 (row
    // stride 1, column stride d), out's columns c0..c1 (row stride n).
    // read_dst is false, so `out` is only written.
    unsafe {
        gemm::gemm(
            rows,
            c1 - c0,
            d,
            out.add(c0),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            d as isize,
            w_enc_t.as_ptr().add(c0 * d),
            d as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// Adds `b` to every row of `out`; skipped when `b` is all zeros (TopK and
/// BatchTopK do not train b_enc), which changes nothing but a −0 to +0.
fn add_bias_rows(out: &mut [f32], n: usize, b: Option<&[f32]>) {
    let Some(b) = b.filter(|b| b.iter().any(|&v| v != 0.0)) else {
        return;
    };
    out.par_chunks_mut(n).for_each(|row| {
        for (o, &bi) in row.iter_mut().zip(b) {
            *o += bi;
        }
    });
}

/// General dense product `dst (m×n, row-major) (+)= lhs · rhs` with explicit
/// element strides for the operands (so transposed views need no copy).
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    assert!(dst.len() >= m * n, "gemm_strided: dst too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].iter_mut().for_each(|v| *v = 0.0);
        }
        return;
    }
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    assert!(
        lhs.len() > last(lhs_rs, lhs_cs, m, k),
        "gemm_strided: lhs too small"
    );
    assert!(
        rhs.len() > last(rhs_rs, rhs_cs, k, n),
        "gemm_strided: rhs too small"
    );
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every element the strides address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// [`encoder_preacts`] with the product in bf16 (inputs and W_enc rounded
/// to bf16, f32 accumulation; see `saelab_kernels::bf16`), into a
/// caller-owned B×n buffer. W_enc changes every step, so it is packed on each
/// call. The result does not depend on the thread count.
pub fn encoder_preacts_bf16_into(
    x: &[f32],
    d: usize,
    w_enc_t: &[f32],
    n: usize,
    b_enc: &[f32],
    out: &mut [f32],
) {
    let rows = x.len() / d.max(1);
    assert_eq!(
        out.len(),
        rows * n,
        "encoder_preacts_bf16_into: output length"
    );
    if rows == 0 || n == 0 {
        return;
    }
    let w = saelab_kernels::bf16::PackedBf16::from_out_in(w_enc_t, d, n);
    encoder_preacts_bf16_packed(x, &w, b_enc, out);
}

/// [`encoder_preacts_bf16_into`] with W_enc already packed (`w`: k = d,
/// n latents), e.g. by [`saelab_kernels::bf16::PackedBf16::repack_out_in`].
pub fn encoder_preacts_bf16_packed(
    x: &[f32],
    w: &saelab_kernels::bf16::PackedBf16,
    b_enc: &[f32],
    out: &mut [f32],
) {
    let rows = x.len() / w.k().max(1);
    if rows == 0 || w.n() == 0 {
        return;
    }
    saelab_kernels::bf16::gemm_bf16(rows, x, w, out, false);
    add_bias_rows(out, w.n(), Some(b_enc));
}

/// [`encoder_preacts_bf16_into`] into a fresh buffer.
pub fn encoder_preacts_bf16(
    x: &[f32],
    d: usize,
    w_enc_t: &[f32],
    n: usize,
    b_enc: &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; (x.len() / d.max(1)) * n];
    encoder_preacts_bf16_into(x, d, w_enc_t, n, b_enc, &mut out);
    out
}

/// Values per chunk in [`row_topk_positive`]'s comparison masks.
const SCAN_CHUNK: usize = 64;

/// Top-k of the strictly positive entries of one row, returned sorted by
/// index. Ties go to the lower index: a later candidate must be strictly
/// larger than the heap minimum to enter.
pub fn row_topk_positive(row: &[f32], k: usize, idx: &mut Vec<u32>, val: &mut Vec<f32>) {
    idx.clear();
    val.clear();
    if k == 0 {
        return;
    }
    // Min-heap by (value asc, index desc): the root is the worst kept entry.
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let worse = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    let mut next = row.len();
    for (i, &v) in row.iter().enumerate() {
        if v > 0.0 {
            heap.push((v, i as u32));
            sift_up(&mut heap, worse);
            if heap.len() == k {
                next = i + 1;
                break;
            }
        }
    }
    if heap.len() == k {
        let mut min = heap[0].0;
        // Once the heap has filled, few values beat its minimum: one vector
        // comparison per chunk finds those that beat it at the chunk's
        // start, and only they are visited, in order (the minimum only
        // grows, so no other value of the chunk could enter). NaN never
        // compares greater, as in a plain scan.
        let width = Width::best();
        for (c, chunk) in row[next..].chunks(SCAN_CHUNK).enumerate() {
            let mut mask = above_mask(width, chunk, min);
            let base = next + c * SCAN_CHUNK;
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let v = chunk[j];
                if v > min {
                    heap[0] = (v, (base + j) as u32);
                    sift_down(&mut heap, worse);
                    min = heap[0].0;
                }
            }
        }
    }
    heap.sort_unstable_by_key(|e| e.1);
    for (v, i) in heap {
        idx.push(i);
        val.push(v);
    }
}

/// A set of latents as a bit mask (bit `i % 64` of word `i / 64`), the
/// form [`topk_positive_among`] scans with.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentMask {
    words: Vec<u64>,
    count: usize,
}

impl LatentMask {
    /// The mask of `members` (each < `n`; duplicates count once).
    pub fn new(n: usize, members: &[u32]) -> Self {
        let mut words = vec![0u64; n.div_ceil(64)];
        for &i in members {
            words[i as usize / 64] |= 1 << (i % 64);
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        LatentMask { words, count }
    }

    /// Number of members.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// Top-k of the strictly positive entries of `row` among the latents of
/// `candidates`, returned sorted by index, ties to the lower index — the
/// same set as [`row_topk_positive`] on the gathered values. For AuxK's
/// large k (512 of thousands of dead latents) a linear-time selection beats
/// the heap. Each positive entry becomes one integer key, value bits high
/// (they order positive floats as their values) and the complemented index
/// low, so a plain integer selection orders by value and then by lower
/// index, with no comparator to call.
pub fn topk_positive_among(
    row: &[f32],
    candidates: &LatentMask,
    k: usize,
    idx: &mut Vec<u32>,
    val: &mut Vec<f32>,
) {
    idx.clear();
    val.clear();
    if k == 0 {
        return;
    }
    // One vector comparison per 64 values, masked by the candidates, finds
    // the entries to key: the row is read in order, and only the (about a
    // quarter of all) positive candidates are visited. Gathering through a
    // list of candidate indices took most of this function's time.
    let width = Width::best();
    let mut keys: Vec<u64> = Vec::with_capacity(candidates.count);
    for (chunk, &word) in row.chunks(64).zip(&candidates.words) {
        if word == 0 {
            continue;
        }
        let base = (chunk.as_ptr() as usize - row.as_ptr() as usize) / 4;
        let mut m = word & above_mask(width, chunk, 0.0);
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            let i = (base + j) as u32;
            keys.push(((chunk[j].to_bits() as u64) << 32) | (u32::MAX - i) as u64);
        }
    }
    let m = keys.len();
    if m > k {
        keys.select_nth_unstable(m - k);
    }
    idx.extend(
        keys[m.saturating_sub(k)..]
            .iter()
            .map(|&key| u32::MAX - key as u32),
    );
    idx.sort_unstable();
    val.extend(idx.iter().map(|&i| row[i as usize]));
}

fn sift_up(h: &mut [(f32, u32)], worse: impl Fn((f32, u32), (f32, u32)) -> bool) {
    let mut c = h.len() - 1;
    while c > 0 {
        let p = (c - 1) / 2;
        if worse(h[c], h[p]) {
            h.swap(c, p);
            c = p;
        } else {
            break;
        }
    }
}

fn sift_down(h: &mut [(f32, u32)], worse: impl Fn((f32, u32), (f32, u32)) -> bool) {
    let n = h.len();
    let mut p = 0;
    loop {
        let l = 2 * p + 1;
        if l >= n {
            break;
        }
        let r = l + 1;
        let c = if r < n && worse(h[r], h[l]) { r } else { l };
        if worse(h[c], h[p]) {
            h.swap(c, p);
            p = c;
        } else {
            break;
        }
    }
}

/// Per-row top-k of the positive entries of a B×n matrix.
pub fn topk_rows(pre: &[f32], n: usize, k: usize) -> SparseCodes {
    let rows: Vec<(Vec<u32>, Vec<f32>)> = pre
        .par_chunks(n)
        .map(|row| {
            let (mut i, mut v) = (Vec::with_capacity(k), Vec::with_capacity(k));
            row_topk_positive(row, k, &mut i, &mut v);
            (i, v)
        })
        .collect();
    SparseCodes::from_rows(n, rows)
}

/// Entries with `pre[b, i] > thr(i)` (thresholds must be ≥ 0, so only
/// positive values are kept), per row in index order.
pub fn threshold_rows(pre: &[f32], n: usize, thr: &(dyn Fn(usize) -> f32 + Sync)) -> SparseCodes {
    let rows: Vec<(Vec<u32>, Vec<f32>)> = pre
        .par_chunks(n)
        .map(|row| {
            let (mut ix, mut vs) = (Vec::new(), Vec::new());
            for (i, &v) in row.iter().enumerate() {
                if v > 0.0 && v > thr(i) {
                    ix.push(i as u32);
                    vs.push(v);
                }
            }
            (ix, vs)
        })
        .collect();
    SparseCodes::from_rows(n, rows)
}

/// Batch top-m: keeps the `m` largest positive entries of the whole B×n
/// matrix (ties to the lower row-major index). Returns the codes and the
/// smallest kept value, if any entry was kept.
pub fn batch_topk(pre: &[f32], n: usize, m: usize) -> (SparseCodes, Option<f32>) {
    let rows = pre.len() / n.max(1);
    let hist_hi = key_histogram(pre, |_| true, 16);
    let total: u64 = hist_hi.iter().sum();
    if m == 0 || total == 0 {
        return (
            SparseCodes::from_rows(n, vec![(vec![], vec![]); rows]),
            None,
        );
    }
    let keep_all = total <= m as u64;
    // Find the key τ of the m-th largest positive entry (radix select: top
    // 16 bits, then the low 16 bits inside the chosen bucket).
    let (tau, need_eq) = if keep_all {
        (1u32, u64::MAX) // every positive key is ≥ 1
    } else {
        let (hi, above_hi) = find_bucket(&hist_hi, m as u64);
        let hist_lo = key_histogram(pre, |k| (k >> 16) as usize == hi, 0);
        let (lo, above_lo) = find_bucket(&hist_lo, m as u64 - above_hi);
        let tau = ((hi as u32) << 16) | lo as u32;
        (tau, m as u64 - above_hi - above_lo)
    };
    // Entries equal to τ are kept in flat order until `need_eq` are used.
    let eq_counts: Vec<u64> = pre
        .par_chunks(n)
        .map(|row| {
            row.iter()
                .filter(|&&v| v > 0.0 && v.to_bits() == tau)
                .count() as u64
        })
        .collect();
    let mut eq_allow = Vec::with_capacity(rows);
    let mut left = need_eq;
    for &c in &eq_counts {
        let a = c.min(left);
        eq_allow.push(a);
        left -= a;
    }
    let out: Vec<(Vec<u32>, Vec<f32>)> = pre
        .par_chunks(n)
        .zip(eq_allow.par_iter())
        .map(|(row, &allow)| {
            let (mut ix, mut vs) = (Vec::new(), Vec::new());
            let mut eq_used = 0u64;
            for (i, &v) in row.iter().enumerate() {
                if v > 0.0 {
                    let key = v.to_bits();
                    let take = if keep_all || key > tau {
                        true
                    } else if key == tau && eq_used < allow {
                        eq_used += 1;
                        true
                    } else {
                        false
                    };
                    if take {
                        ix.push(i as u32);
                        vs.push(v);
                    }
                }
            }
            (ix, vs)
        })
        .collect();
    let codes = SparseCodes::from_rows(n, out);
    let min = codes.val.iter().copied().fold(f32::INFINITY, f32::min);
    (codes, if min.is_finite() { Some(min) } else { None })
}

/// Histogram of 16-bit digits of the keys of positive entries that pass
/// `filter`; `shift` selects the digit. Integer counts merge exactly, so
/// the fold/reduce order does not matter.
fn key_histogram(pre: &[f32], filter: impl Fn(u32) -> bool + Sync, shift: u32) -> Vec<u64> {
    pre.par_chunks(1 << 16)
        .fold(
            || vec![0u64; 1 << 16],
            |mut h, chunk| {
                for &v in chunk {
                    if v > 0.0 {
                        let k = v.to_bits();
                        if filter(k) {
                            h[((k >> shift) & 0xffff) as usize] += 1;
                        }
                    }
                }
                h
            },
        )
        .reduce(
            || vec![0u64; 1 << 16],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        )
}

/// Scanning buckets from the top, the bucket holding the `m`-th largest key
/// and the count of keys in buckets strictly above it.
fn find_bucket(hist: &[u64], m: u64) -> (usize, u64) {
    let mut above = 0u64;
    for b in (0..hist.len()).rev() {
        if above + hist[b] >= m {
            return (b, above);
        }
        above += hist[b];
    }
    (0, above)
}

/// Sparse decode: `out[b] = Σ_{i active in b} z[b,i] · w_dec[i] (+ bias)`.
pub fn sparse_decode(
    codes: &SparseCodes,
    w_dec: &[f32],
    d: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; codes.rows * d];
    out.par_chunks_mut(d).enumerate().for_each(|(b, o)| {
        if let Some(bias) = bias {
            o.copy_from_slice(bias);
        }
        let (ix, vs) = codes.row(b);
        for (&i, &v) in ix.iter().zip(vs) {
            axpy(v, &w_dec[i as usize * d..(i as usize + 1) * d], o);
        }
    });
    out
}

/// `y += a·x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Dot product with eight independent accumulators (so the compiler can
/// vectorize), in a fixed order: [`dot_lanes`] over the whole 8-wide
/// chunks, then [`dot_finish`]. The tiled kernels in [`crate::blocked`]
/// call the same two pieces tile by tile, so they give the same bits.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let full = a.len().min(b.len()) / 8 * 8;
    dot_lanes(&mut acc, &a[..full], &b[..full]);
    dot_finish(&acc, &a[full..], &b[full..])
}

/// Dot products run side by side in [`dots_side_by_side`].
pub const DOT_GROUP: usize = 8;

/// `dot(rows[l], v)` for [`DOT_GROUP`] rows of length ≥ `d` (their first
/// `d` values), bit for bit as [`dot`]. Each dot is a chain of dependent
/// adds in `dot`'s fixed lane order, so one at a time is bound by the add
/// latency; several side by side are not. Callers with fewer rows pad
/// the group with copies and ignore those results ([`dot_group`]); since
/// `x·y = y·x` exactly, `dot(v, rows[l])` has the same bits.
#[inline]
pub fn dots_against(rows: &[&[f32]; DOT_GROUP], v: &[f32], d: usize) -> [f32; DOT_GROUP] {
    let full = d / 8 * 8;
    let mut acc = [[0.0f32; 8]; DOT_GROUP];
    for c in (0..full).step_by(8) {
        let vc = &v[c..c + 8];
        for (a, r) in acc.iter_mut().zip(rows) {
            dot_lanes(a, &r[c..c + 8], vc);
        }
    }
    let mut out = [0.0f32; DOT_GROUP];
    for ((o, a), r) in out.iter_mut().zip(&acc).zip(rows) {
        *o = dot_finish(a, &r[full..d], &v[full..d]);
    }
    out
}

/// Up to [`DOT_GROUP`] rows as the fixed group [`dots_against`] takes,
/// padded with copies of the first (empty if there are none).
#[inline]
pub fn dot_group<'a>(rows: impl Iterator<Item = &'a [f32]>) -> [&'a [f32]; DOT_GROUP] {
    let mut rows = rows.take(DOT_GROUP);
    let mut group = [rows.next().unwrap_or(&[]); DOT_GROUP];
    for (slot, r) in group.iter_mut().skip(1).zip(rows) {
        *slot = r;
    }
    group
}

/// `acc[l] += Σ_j a[8j + l]·b[8j + l]` over the 8-wide chunks, in order.
#[inline]
pub fn dot_lanes(acc: &mut [f32; 8], a: &[f32], b: &[f32]) {
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
}

/// The lanes summed in a fixed tree, then the tail `ra·rb` in order.
#[inline]
pub fn dot_finish(acc: &[f32; 8], ra: &[f32], rb: &[f32]) -> f32 {
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// For each CSR entry `p` in row `b`: `out[p] = g_of(b, idx[p]) · w_dec[idx[p]]`.
pub fn sparse_dz<'a>(
    codes: &SparseCodes,
    w_dec: &[f32],
    d: usize,
    g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
) -> Vec<f32> {
    let mut dz = vec![0.0f32; codes.nnz()];
    codes
        .row_parts(&mut dz)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, out)| {
            let (ix, _) = codes.row(b);
            for (o, &i) in out.iter_mut().zip(ix) {
                let i = i as usize;
                *o = dot(g_of(b, i), &w_dec[i * d..(i + 1) * d]);
            }
        });
    dz
}

/// Per-latent gradient accumulation from a CSC view, each latent summed by
/// one task in increasing row order:
/// `d_w_dec[i] += Σ z·g_of(b, i)`, `d_w_enc_t[i] += Σ dpre·xc[b]`,
/// `col_sum[i] += Σ dpre`. With `overwrite`, each latent's rows of
/// `d_w_dec` and `d_w_enc_t` are zeroed first, by the task that fills
/// them, so the caller need not clear the two n×d gradients beforehand.
#[allow(clippy::too_many_arguments)]
pub fn latent_grads<'a>(
    csc: &Csc,
    z: &[f32],
    dpre: &[f32],
    xc: &[f32],
    d: usize,
    g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
    d_w_dec: &mut [f32],
    d_w_enc_t: &mut [f32],
    col_sum: &mut [f32],
    overwrite: bool,
) {
    d_w_dec
        .par_chunks_mut(d)
        .zip(d_w_enc_t.par_chunks_mut(d))
        .zip(col_sum.par_iter_mut())
        .enumerate()
        .for_each(|(i, ((gd, ge), cs))| {
            if overwrite {
                gd.fill(0.0);
                ge.fill(0.0);
            }
            let (s, e) = (csc.colptr[i], csc.colptr[i + 1]);
            if s == e {
                return;
            }
            let mut acc = 0.0f32;
            for q in s..e {
                let b = csc.row[q] as usize;
                let p = csc.pos[q] as usize;
                add_latent_entry(
                    z[p],
                    dpre[p],
                    g_of(b, i),
                    &xc[b * d..(b + 1) * d],
                    gd,
                    ge,
                    &mut acc,
                );
            }
            *cs += acc;
        });
}

/// One entry's share of a latent's gradients: `gd += z·g`, and when
/// `dp ≠ 0`, `ge += dp·x` and `acc += dp`. The row-blocked kernel
/// (`blocked::add_group`) adds in exactly this order per element.
#[inline]
pub(crate) fn add_latent_entry(
    z: f32,
    dp: f32,
    g: &[f32],
    x: &[f32],
    gd: &mut [f32],
    ge: &mut [f32],
    acc: &mut f32,
) {
    axpy(z, g, gd);
    if dp != 0.0 {
        axpy(dp, x, ge);
        *acc += dp;
    }
}

/// Deterministic sum of squares of a slice in f64 (fixed chunking). Each
/// chunk sums into eight f64 lanes, so the adds are not one dependent
/// chain (which made this the step's gradient-norm cost: 19 ms over the
/// 19M parameters at n 12288).
pub fn sum_sq(x: &[f32]) -> f64 {
    let parts: Vec<f64> = x.par_chunks(1 << 14).map(sum_sq_lanes).collect();
    parts.iter().sum()
}

/// Sum of squares of `c` in f64 in eight lanes, summed in a fixed tree
/// (one chunk of [`sum_sq`]; also the decoder row norms).
pub(crate) fn sum_sq_lanes(c: &[f32]) -> f64 {
    saelab_kernels::simd::sum_sq_lanes(Width::best(), c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The column-chunked encoder product gives the bits of one product
    /// over all columns, on pools of 1, 2 and 3 threads (n with a partial
    /// last chunk, and the step's d).
    #[test]
    fn column_chunks_give_the_one_product_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for (rows, d, n) in [(70, 96, 8 * 256 + 37), (33, 768, 4096)] {
            let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-0.1..0.1)).collect();
            let mut want = vec![0.0f32; rows * n];
            // SAFETY: all columns of a rows×n buffer.
            unsafe {
                encoder_gemm(
                    &x,
                    d,
                    &w,
                    n,
                    (0, n),
                    want.as_mut_ptr(),
                    gemm::Parallelism::None,
                )
            };
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut got = vec![f32::NAN; rows * n];
                pool.install(|| encoder_preacts_into(&x, d, &w, n, None, &mut got));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&got) == bits(&want),
                    "{rows}×{n}×{d}, {threads} threads"
                );
            }
        }
    }

    /// Rows of every kind the sums meet: random, all −0.0, all +0.0, with
    /// subnormals and huge values; `rows` not a multiple of the group.
    fn awkward_rows(rows: usize, d: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-4.0..4.0)).collect();
        x[..d].fill(-0.0);
        x[d..2 * d].fill(0.0);
        for (j, v) in x[2 * d..3 * d].iter_mut().enumerate() {
            *v = if j % 2 == 0 { 1e-40 } else { -3e38 };
        }
        x
    }

    /// The row-by-row normalization this kernel replaced, kept as the
    /// reference: one serial sum per row.
    fn normalize_row_by_row(x: &[f32], d: usize, eps: f32) -> Vec<(f32, f32, f32)> {
        let mut out = Vec::new();
        for row in x.chunks(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                .sum::<f64>()
                / (d.max(2) - 1) as f64;
            let std = var.sqrt();
            for &v in row {
                out.push((
                    ((v as f64 - mean) / (std + eps as f64)) as f32,
                    mean as f32,
                    std as f32,
                ));
            }
        }
        out
    }

    #[test]
    fn row_sums_side_by_side_give_the_serial_bits() {
        for (rows, d) in [(3, 5), (8, 16), (13, 37), (21, 768)] {
            let x = awkward_rows(rows, d);
            for block in x.chunks(d * ROW_GROUP) {
                // Terms that are not exact in f64, so the order of the adds shows.
                let f = |r: usize, j: usize, v: f32| {
                    v as f64 / 3.0 + (j as f64).sqrt() * (r + 1) as f64
                };
                let got = row_sums_f64(&group_rows(block, d), f);
                for (r, row) in block.chunks(d).enumerate() {
                    let want: f64 = row.iter().enumerate().map(|(j, &v)| f(r, j, v)).sum();
                    assert_eq!(
                        got[r].to_bits(),
                        want.to_bits(),
                        "rows {rows}, d {d}, row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn normalize_rows_matches_the_row_by_row_form() {
        for (rows, d) in [(3, 5), (13, 37), (21, 768)] {
            let x = awkward_rows(rows, d);
            let (xt, mu, sd) = normalize_rows(&x, d, 1e-5);
            let want = normalize_row_by_row(&x, d, 1e-5);
            for (p, w) in want.iter().enumerate() {
                let got = (xt[p], mu[p / d], sd[p / d]);
                let bits = |t: (f32, f32, f32)| (t.0.to_bits(), t.1.to_bits(), t.2.to_bits());
                assert_eq!(bits(got), bits(*w), "rows {rows}, d {d}, entry {p}");
            }
        }
    }
}
