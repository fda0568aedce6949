//! Top-n cosine profiles by blocked matrix products with bounded memory.
//!
//! For a reference set A (n_A unit vectors) and a query set B (n_B), the
//! cosine matrix S = A·Bᵀ is never materialized: it is produced one tile of
//! at most [`TileConfig::query_block`] × [`TileConfig::ref_block`] entries at
//! a time by the `gemm` crate, and each tile is scanned at once into running
//! per-row (and optionally per-column) top-n lists. Memory is O(tile +
//! (n_A + n_B)·n) whatever the sizes.
//!
//! Scanning keeps the GEMM the bottleneck: a tile row is checked 32 values
//! at a time against the list's current n-th value with a branch-free
//! (vectorizable) compare, and only the rare chunks holding a candidate are
//! scanned element by element. The GEMM costs 2d flops per entry; the scan
//! a fraction of a nanosecond.
//!
//! Parallelism: rayon over query blocks, each running a single-threaded
//! GEMM; when there are fewer blocks than threads (small query sets) the
//! blocks run in turn and the GEMM itself is parallel.
//!
//! Ordering: each list is sorted by decreasing cosine, ties broken by the
//! lower index, so the result is a pure function of the cosine values.
//! (Cosines themselves come from the `gemm` crate, whose rounding may depend
//! on the tile shape at the level of an ulp.)

use super::error::{MatchError, Result};
use super::vectors::UnitVectors;
use rayon::prelude::*;
use std::sync::Mutex;

/// Tile sizes of the blocked products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    /// Query vectors per tile (rows of the tile).
    pub query_block: usize,
    /// Reference vectors per tile (columns of the tile).
    pub ref_block: usize,
}

impl Default for TileConfig {
    /// 512 × 4096 f32 = 8 MB per worker: large enough for the GEMM to run at
    /// full speed, small enough to stay bounded on a laptop.
    fn default() -> Self {
        TileConfig {
            query_block: 512,
            ref_block: 4096,
        }
    }
}

impl TileConfig {
    fn validate(&self) -> Result<()> {
        if self.query_block == 0 || self.ref_block == 0 {
            return Err(MatchError::InvalidOption(
                "tile sizes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// For each of `n_queries` queries, the `k` largest cosines over the
/// `n_refs` reference vectors, in decreasing order (ties: lower index
/// first). `k = min(requested n, n_refs)`: asking for more neighbours than
/// there are references gives all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct TopN {
    /// Entries per query.
    pub k: usize,
    /// Number of queries (rows).
    pub n_queries: usize,
    /// Number of reference vectors searched.
    pub n_refs: usize,
    /// `n_queries × k` cosines, row-major.
    pub values: Vec<f32>,
    /// `n_queries × k` reference indices, row-major.
    pub indices: Vec<u32>,
}

impl TopN {
    /// Indices and cosines of query `q`'s neighbours, best first.
    pub fn row(&self, q: usize) -> (&[u32], &[f32]) {
        let r = q * self.k..(q + 1) * self.k;
        (&self.indices[r.clone()], &self.values[r])
    }

    /// max_i S_iq per query (the top-1 value); empty if `k == 0`.
    pub fn max_values(&self) -> Vec<f32> {
        self.rank_values(0)
    }

    /// Top-(r+1) cosine of every query (`r` is 0-based); empty if `r ≥ k`.
    pub fn rank_values(&self, r: usize) -> Vec<f32> {
        if r >= self.k {
            return Vec::new();
        }
        self.values
            .iter()
            .skip(r)
            .step_by(self.k)
            .copied()
            .collect()
    }

    /// The same profile cut to the first `k` entries per query (the top-k
    /// list, since entries are sorted).
    pub fn truncated(&self, k: usize) -> TopN {
        let k = k.min(self.k);
        let mut values = Vec::with_capacity(self.n_queries * k);
        let mut indices = Vec::with_capacity(self.n_queries * k);
        for q in 0..self.n_queries {
            let (ix, vs) = self.row(q);
            values.extend_from_slice(&vs[..k]);
            indices.extend_from_slice(&ix[..k]);
        }
        TopN {
            k,
            n_queries: self.n_queries,
            n_refs: self.n_refs,
            values,
            indices,
        }
    }

    /// Index of the best reference of every query; empty if `k == 0`.
    pub fn argmax(&self) -> Vec<u32> {
        if self.k == 0 {
            return Vec::new();
        }
        self.indices.iter().step_by(self.k).copied().collect()
    }
}

/// Ranking order: larger value first, then lower index.
#[inline]
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
    v > w || (v == w && i < j)
}

/// Inserts (v, i) into a sorted list of fixed length if it beats the last
/// entry. Empty slots hold (−∞, u32::MAX).
#[inline]
fn insert(vals: &mut [f32], idx: &mut [u32], v: f32, i: u32) {
    let k = vals.len();
    if k == 0 || !better(v, i, vals[k - 1], idx[k - 1]) {
        return;
    }
    let mut p = k - 1;
    while p > 0 && better(v, i, vals[p - 1], idx[p - 1]) {
        vals[p] = vals[p - 1];
        idx[p] = idx[p - 1];
        p -= 1;
    }
    vals[p] = v;
    idx[p] = i;
}

const CHUNK: usize = 32;

/// Scans one tile row (reference indices `c0..`) into a query's list.
#[inline]
fn scan_row(row: &[f32], c0: usize, vals: &mut [f32], idx: &mut [u32]) {
    let k = vals.len();
    if k == 0 {
        return;
    }
    let mut worst = vals[k - 1];
    for (ci, chunk) in row.chunks(CHUNK).enumerate() {
        // Branch-free test so the compiler vectorizes it; `>=` so that ties
        // go to the exact comparison below.
        if !chunk.iter().fold(false, |a, &v| a | (v >= worst)) {
            continue;
        }
        let base = c0 + ci * CHUNK;
        for (t, &v) in chunk.iter().enumerate() {
            if v >= worst {
                insert(vals, idx, v, (base + t) as u32);
                worst = vals[k - 1];
            }
        }
    }
}

/// Per-reference top lists accumulated by one worker (the "column"
/// direction: for each reference vector, its best queries).
struct ColTop {
    k: usize,
    vals: Vec<f32>,
    idx: Vec<u32>,
    /// Current k-th value of each list (copy of `vals[c*k + k-1]`), so the
    /// vectorized pre-check reads a contiguous array.
    worst: Vec<f32>,
}

impl ColTop {
    fn new(n_cols: usize, k: usize) -> Self {
        ColTop {
            k,
            vals: vec![f32::NEG_INFINITY; n_cols * k],
            idx: vec![u32::MAX; n_cols * k],
            worst: if k == 0 {
                Vec::new()
            } else {
                vec![f32::NEG_INFINITY; n_cols]
            },
        }
    }

    /// Scans one tile row (query `q`, references `c0..c0+row.len()`).
    #[inline]
    fn scan(&mut self, row: &[f32], q: u32, c0: usize) {
        let k = self.k;
        if k == 0 {
            return;
        }
        let worst = &mut self.worst[c0..c0 + row.len()];
        for (ci, (chunk, wchunk)) in row.chunks(CHUNK).zip(worst.chunks_mut(CHUNK)).enumerate() {
            let hit = chunk
                .iter()
                .zip(wchunk.iter())
                .fold(false, |a, (&v, &w)| a | (v >= w));
            if !hit {
                continue;
            }
            for (t, (&v, w)) in chunk.iter().zip(wchunk.iter_mut()).enumerate() {
                if v >= *w {
                    let c = c0 + ci * CHUNK + t;
                    let r = c * k..(c + 1) * k;
                    insert(&mut self.vals[r.clone()], &mut self.idx[r], v, q);
                    *w = self.vals[c * k + k - 1];
                }
            }
        }
    }

    /// Merges another worker's lists into these.
    fn merge(mut self, other: ColTop) -> ColTop {
        let k = self.k;
        if k == 0 {
            return self;
        }
        self.vals
            .par_chunks_mut(k)
            .zip(self.idx.par_chunks_mut(k))
            .zip(other.vals.par_chunks(k).zip(other.idx.par_chunks(k)))
            .for_each(|((v, i), (ov, oi))| {
                for (&x, &j) in ov.iter().zip(oi) {
                    if j == u32::MAX {
                        break;
                    }
                    insert(v, i, x, j);
                }
            });
        for (c, w) in self.worst.iter_mut().enumerate() {
            *w = self.vals[c * k + k - 1];
        }
        self
    }
}

/// `out (nq × nr) = Q (nq × dim) · Rᵀ` for row-major Q and R.
pub(crate) fn gemm_tile(
    q: &[f32],
    nq: usize,
    r: &[f32],
    nr: usize,
    dim: usize,
    out: &mut [f32],
    parallel: bool,
) {
    debug_assert!(q.len() >= nq * dim && r.len() >= nr * dim && out.len() >= nq * nr);
    if nq == 0 || nr == 0 {
        return;
    }
    if dim == 0 {
        out[..nq * nr].iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: q holds nq rows of `dim` (row stride dim, column stride 1); Rᵀ
    // element (k, c) is r[c*dim + k] (column stride dim, row stride 1); out
    // holds nq rows of nr. The debug assert above checks these bounds, and
    // every caller slices exactly these lengths.
    unsafe {
        gemm::gemm(
            nq,
            nr,
            dim,
            out.as_mut_ptr(),
            1,
            nr as isize,
            false,
            q.as_ptr(),
            1,
            dim as isize,
            r.as_ptr(),
            dim as isize,
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

/// Query block size and whether to run blocks in parallel (else the GEMM
/// is parallel): enough blocks to keep every thread busy.
pub(crate) fn plan_blocks(n_queries: usize, tile: &TileConfig) -> (usize, bool) {
    let threads = rayon::current_num_threads().max(1);
    let per_thread = n_queries.div_ceil(threads).max(1);
    let qb = tile.query_block.min(per_thread).max(1);
    let blocks = n_queries.div_ceil(qb);
    (qb, blocks >= 2 && threads >= 2)
}

/// Top-`n` references of every query (see [`TopN`]).
pub fn top_n(
    reference: &UnitVectors,
    query: &UnitVectors,
    n: usize,
    tile: &TileConfig,
) -> Result<TopN> {
    Ok(top_n_both(reference, query, n, 0, tile)?.0)
}

/// One pass over S = A·Bᵀ giving both directions: for every query its top
/// `n_query` references, and for every reference its top `n_ref` queries
/// (pass 0 to skip a direction). The second direction costs only a scan of
/// each tile, not another GEMM.
pub fn top_n_both(
    reference: &UnitVectors,
    query: &UnitVectors,
    n_query: usize,
    n_ref: usize,
    tile: &TileConfig,
) -> Result<(TopN, TopN)> {
    tile.validate()?;
    super::vectors::check_comparable(reference, query, "vector sets")?;
    let (na, nb, dim) = (reference.count, query.count, reference.dim);
    if na > u32::MAX as usize || nb > u32::MAX as usize {
        return Err(MatchError::InvalidOption(
            "vector sets must have fewer than 2^32 entries".into(),
        ));
    }
    let kq = n_query.min(na);
    let kr = n_ref.min(nb);
    let mut qvals = vec![f32::NEG_INFINITY; nb * kq];
    let mut qidx = vec![u32::MAX; nb * kq];
    let (qb, par_blocks) = plan_blocks(nb, tile);
    let rb = tile.ref_block.min(na.max(1));

    let process =
        |b: usize, vals: &mut [f32], idx: &mut [u32], col: &mut ColTop, buf: &mut Vec<f32>| {
            let q0 = b * qb;
            let nq = qb.min(nb - q0);
            let qdata = &query.data[q0 * dim..(q0 + nq) * dim];
            let mut c0 = 0;
            while c0 < na {
                let nr = rb.min(na - c0);
                buf.resize(nq * nr, 0.0);
                gemm_tile(
                    qdata,
                    nq,
                    &reference.data[c0 * dim..(c0 + nr) * dim],
                    nr,
                    dim,
                    buf,
                    !par_blocks,
                );
                for (r, row) in buf.chunks_exact(nr).enumerate() {
                    let s = r * kq..(r + 1) * kq;
                    scan_row(row, c0, &mut vals[s.clone()], &mut idx[s]);
                    col.scan(row, (q0 + r) as u32, c0);
                }
                c0 += nr;
            }
        };

    let cols = if nb == 0 || na == 0 {
        ColTop::new(na, kr)
    } else if par_blocks {
        // One column accumulator (and tile buffer) per worker thread, not per
        // rayon job: a fresh accumulator per block would start from −∞
        // thresholds and cost a full merge each.
        let threads = rayon::current_num_threads().max(1);
        let pool: Vec<Mutex<(ColTop, Vec<f32>)>> = (0..threads)
            .map(|_| Mutex::new((ColTop::new(na, kr), Vec::new())))
            .collect();
        let chunk = (qb * kq).max(1);
        let blocks = nb.div_ceil(qb);
        let mut vchunks: Vec<&mut [f32]> = qvals.chunks_mut(chunk).collect();
        let mut ichunks: Vec<&mut [u32]> = qidx.chunks_mut(chunk).collect();
        // With kq == 0 the outputs are empty: give every block an empty slice.
        vchunks.resize_with(blocks, Default::default);
        ichunks.resize_with(blocks, Default::default);
        vchunks
            .into_par_iter()
            .zip(ichunks)
            .enumerate()
            .with_max_len(1)
            .for_each(|(b, (v, i))| {
                let slot = rayon::current_thread_index().unwrap_or(0) % threads;
                // A panic elsewhere cannot leave the lists inconsistent
                // (inserts are local), so a poisoned lock is still usable.
                let mut guard = pool[slot].lock().unwrap_or_else(|e| e.into_inner());
                let (col, buf) = &mut *guard;
                process(b, v, i, col, buf);
            });
        pool.into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).0)
            .reduce(merge_cols)
            .unwrap_or_else(|| ColTop::new(na, kr))
    } else {
        let mut col = ColTop::new(na, kr);
        let mut buf = Vec::new();
        let blocks = nb.div_ceil(qb);
        for b in 0..blocks {
            let q0 = b * qb;
            let nq = qb.min(nb - q0);
            let (v, i) = (
                &mut qvals[q0 * kq..(q0 + nq) * kq],
                &mut qidx[q0 * kq..(q0 + nq) * kq],
            );
            process(b, v, i, &mut col, &mut buf);
        }
        col
    };
    Ok((
        TopN {
            k: kq,
            n_queries: nb,
            n_refs: na,
            values: qvals,
            indices: qidx,
        },
        TopN {
            k: kr,
            n_queries: na,
            n_refs: nb,
            values: cols.vals,
            indices: cols.idx,
        },
    ))
}

/// Merges two workers' accumulators (either may be the k = 0 placeholder).
fn merge_cols(a: ColTop, b: ColTop) -> ColTop {
    if a.k == 0 {
        b
    } else if b.k == 0 {
        a
    } else {
        a.merge(b)
    }
}
