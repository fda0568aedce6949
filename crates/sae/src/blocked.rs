//! Row-blocked variants of the sparse decode / gradient kernels, for codes
//! with many active latents per row (AuxK's k_aux = 512 entries per row,
//! ReLU / JumpReLU early in training with L0 in the hundreds).
//!
//! The plain kernels in [`crate::kernels`] gather one decoder row (3 KB at
//! d 768) per entry from wherever it lives; at 2M entries per batch that is
//! bound by L3 / memory bandwidth (measured ≈ 15 GFLOP/s). Here the batch is
//! cut into blocks of [`BLOCK_ROWS`] rows and, inside a block, entries are
//! grouped by latent (a counting sort), so each decoder row, gradient row or
//! input row is loaded once per block and reused by every entry of that
//! latent in the block while the block's rows stay in L2.
//!
//! Every kernel adds in exactly the order of its plain counterpart — per
//! output row in increasing latent order, per latent in increasing row
//! order — so results are bit-identical to [`crate::kernels`] (tested) and
//! independent of the thread count. Hand-written: this is a measured hot
//! loop (AuxK was 1.1 s of a 1.8 s step at n 12288 with the plain kernels).
//! The decode is organized the other way, by column tiles
//! ([`tiled_decode`]): each tile of every decoder row is packed contiguous
//! (small enough for L2) and each output row sums its entries in registers.
//! Inside a latent's group the other kernels keep work in registers: ∂L/∂z
//! runs eight entries' dot products side by side (each a chain of
//! dependent adds in [`crate::kernels::dot`]'s order), and the gradients
//! take all of a group's entries per column chunk before storing it
//! (`cargo bench -p saelab-sae --bench auxk_kernels` times each kernel).

use crate::kernels::{axpy, dot_group, dots_against, SparseCodes, DOT_GROUP};
use rayon::prelude::*;

/// Rows per block: 128 rows of d 768 are 384 KB, so a block of gradient
/// rows plus a block of inputs fit the 2 MB L2 of the dev machine.
pub const BLOCK_ROWS: usize = 128;

/// Most latents per task in [`RowBlocks::latent_grads`]. Each task reads
/// every block's gradient and input rows, so fewer, wider tasks stream
/// them fewer times: on Zen 3 (512 KB L2) 512 latents ran the AuxK-shaped
/// kernel in 200–275 ms against 310–350 at 128 (tuning runs, session 19),
/// although their gradient rows (3 MB) no longer fit in L2.
const LATENT_CHUNK_MAX: usize = 512;

/// Fewest latents per task, so that a task's bookkeeping stays small
/// beside its work.
const LATENT_CHUNK_MIN: usize = 8;

/// Latents per task for `n` latents: at most [`LATENT_CHUNK_MAX`], and
/// small enough to give every thread about four tasks. The split does not
/// change any bit: each latent is summed by one task, in row order.
fn latent_chunk(n: usize) -> usize {
    let per_task = n.div_ceil(4 * rayon::current_num_threads());
    per_task.clamp(LATENT_CHUNK_MIN, LATENT_CHUNK_MAX)
}

/// Whether the blocked kernels pay off: each latent should be hit about
/// twice per block, otherwise there is nothing to reuse.
pub fn worth_blocking(codes: &SparseCodes) -> bool {
    codes.rows >= BLOCK_ROWS && codes.nnz() * BLOCK_ROWS >= 2 * codes.rows * codes.n
}

/// One block of rows with its entries grouped by latent.
struct Block {
    /// First row of the block.
    row0: usize,
    /// CSR position of the block's first entry (its entries are the CSR
    /// range starting here, in another order).
    p0: usize,
    /// Rows in the block.
    len: usize,
    /// Distinct latents of the block, increasing.
    lat: Vec<u32>,
    /// Group `g` (latent `lat[g]`) owns entries `gptr[g]..gptr[g + 1]`.
    gptr: Vec<u32>,
    /// Row of each entry (increasing inside a group).
    row: Vec<u32>,
    /// CSR position of each entry.
    pos: Vec<u32>,
}

/// The batch's codes cut into row blocks, each grouped by latent.
pub struct RowBlocks {
    blocks: Vec<Block>,
}

impl RowBlocks {
    /// Groups the entries of each block of [`BLOCK_ROWS`] rows by latent.
    pub fn new(codes: &SparseCodes) -> Self {
        let n = codes.n;
        let blocks = (0..codes.rows.div_ceil(BLOCK_ROWS))
            .into_par_iter()
            .map(|blk| {
                let row0 = blk * BLOCK_ROWS;
                let end = (row0 + BLOCK_ROWS).min(codes.rows);
                let (p0, p1) = (codes.indptr[row0], codes.indptr[end]);
                let mut count = vec![0u32; n + 1];
                for &i in &codes.idx[p0..p1] {
                    count[i as usize + 1] += 1;
                }
                let mut lat = Vec::new();
                let mut gptr = vec![0u32];
                let mut start = vec![0u32; n];
                let mut acc = 0u32;
                for i in 0..n {
                    let c = count[i + 1];
                    if c > 0 {
                        start[i] = acc;
                        acc += c;
                        lat.push(i as u32);
                        gptr.push(acc);
                    }
                }
                let e = p1 - p0;
                let mut row = vec![0u32; e];
                let mut pos = vec![0u32; e];
                for b in row0..end {
                    for p in codes.indptr[b]..codes.indptr[b + 1] {
                        let i = codes.idx[p] as usize;
                        let s = start[i] as usize;
                        row[s] = b as u32;
                        pos[s] = p as u32;
                        start[i] += 1;
                    }
                }
                Block {
                    row0,
                    p0,
                    len: end - row0,
                    lat,
                    gptr,
                    row,
                    pos,
                }
            })
            .collect();
        RowBlocks { blocks }
    }

    /// For each CSR entry `p` in row `b`: `g_of(b, idx[p]) · w_dec[idx[p]]`
    /// (as [`crate::kernels::sparse_dz`]).
    pub fn dz<'a>(
        &self,
        codes: &SparseCodes,
        w_dec: &[f32],
        d: usize,
        g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
    ) -> Vec<f32> {
        let mut dz = vec![0.0f32; codes.nnz()];
        let mut parts: Vec<&mut [f32]> = Vec::with_capacity(self.blocks.len());
        let mut rest: &mut [f32] = &mut dz;
        for blk in &self.blocks {
            let len = codes.indptr[blk.row0 + blk.len] - codes.indptr[blk.row0];
            let (h, t) = rest.split_at_mut(len);
            parts.push(h);
            rest = t;
        }
        parts
            .into_par_iter()
            .zip(self.blocks.par_iter())
            .for_each(|(out, blk)| blk.dz(codes.indptr[blk.row0], w_dec, d, g_of, out));
        dz
    }

    /// Per-latent gradient accumulation, as [`crate::kernels::latent_grads`]:
    /// `d_w_dec[i] += Σ z·g_of(b, i)`, `d_w_enc_t[i] += Σ dpre·xc[b]`,
    /// `col_sum[i] += Σ dpre`, each latent summed in increasing row order
    /// (with `overwrite`, the gradient rows are zeroed first, per task).
    #[allow(clippy::too_many_arguments)]
    pub fn latent_grads<'a>(
        &self,
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
        let chunk = latent_chunk(col_sum.len());
        let (ez, ed) = self.in_group_order(z, dpre);
        d_w_dec
            .par_chunks_mut(chunk * d)
            .zip(d_w_enc_t.par_chunks_mut(chunk * d))
            .zip(col_sum.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(c, ((gd, ge), cs))| {
                if overwrite {
                    gd.fill(0.0);
                    ge.fill(0.0);
                }
                let lo = (c * chunk) as u32;
                let hi = lo + cs.len() as u32;
                let mut acc = vec![0.0f32; cs.len()];
                let mut group = Vec::new();
                for blk in &self.blocks {
                    let g0 = blk.lat.partition_point(|&i| i < lo);
                    let g1 = blk.lat.partition_point(|&i| i < hi);
                    for g in g0..g1 {
                        let i = blk.lat[g] as usize;
                        let l = i - lo as usize;
                        group.clear();
                        for q in blk.gptr[g] as usize..blk.gptr[g + 1] as usize {
                            let b = blk.row[q] as usize;
                            let (zq, dq) = (ez[blk.p0 + q], ed[blk.p0 + q]);
                            if dq != 0.0 {
                                acc[l] += dq;
                            }
                            group.push((zq, dq, g_of(b, i), &xc[b * d..(b + 1) * d]));
                        }
                        add_group(
                            &group,
                            &mut gd[l * d..(l + 1) * d],
                            &mut ge[l * d..(l + 1) * d],
                        );
                    }
                }
                for (s, a) in cs.iter_mut().zip(acc) {
                    *s += a;
                }
            });
    }

    /// `z` and `dpre` (CSR order) permuted into each block's group order,
    /// so that a group reads its entries' values contiguously: gathered
    /// through the CSR positions inside the loop, each was a cache miss,
    /// once per entry and latent task.
    fn in_group_order(&self, z: &[f32], dpre: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut ez, mut ed) = (vec![0.0f32; z.len()], vec![0.0f32; dpre.len()]);
        let mut parts = Vec::with_capacity(self.blocks.len());
        let (mut rz, mut rd) = (&mut ez[..], &mut ed[..]);
        for blk in &self.blocks {
            let (hz, tz) = std::mem::take(&mut rz).split_at_mut(blk.pos.len());
            let (hd, td) = std::mem::take(&mut rd).split_at_mut(blk.pos.len());
            parts.push((blk, hz, hd));
            (rz, rd) = (tz, td);
        }
        parts.into_par_iter().for_each(|(blk, hz, hd)| {
            for ((&p, oz), od) in blk.pos.iter().zip(hz).zip(hd) {
                (*oz, *od) = (z[p as usize], dpre[p as usize]);
            }
        });
        (ez, ed)
    }
}

/// One latent's entries of a block, `(z, dpre, gradient row, input row)`
/// in increasing row order, added into its gradient rows `gd` and `ge`
/// exactly as `kernels::add_latent_entry` one entry after another would (same
/// order per element), but column chunk by column chunk: each chunk of
/// `gd` / `ge` is loaded once, takes every entry in registers and is
/// stored once, instead of a load and a store per entry. `gd` and `ge`
/// take their entries in two passes over the group, so that one chunk's
/// accumulators (eight ymm registers) leave room for the operands: both
/// chunks at once are all of AVX2's sixteen (this split took the AuxK
/// gradients from 340–347 to 247–277 ms on Zen 3, session 19).
fn add_group(group: &[(f32, f32, &[f32], &[f32])], gd: &mut [f32], ge: &mut [f32]) {
    const C: usize = 64;
    let d = gd.len();
    let full = d / C * C;
    for j0 in (0..full).step_by(C) {
        let mut ad: [f32; C] = gd[j0..j0 + C].try_into().unwrap_or([0.0; C]);
        for &(z, _, g, _) in group {
            let g = &g[j0..j0 + C];
            for j in 0..C {
                ad[j] += z * g[j];
            }
        }
        gd[j0..j0 + C].copy_from_slice(&ad);
        let mut ae: [f32; C] = ge[j0..j0 + C].try_into().unwrap_or([0.0; C]);
        for &(_, dp, _, x) in group {
            if dp != 0.0 {
                let x = &x[j0..j0 + C];
                for j in 0..C {
                    ae[j] += dp * x[j];
                }
            }
        }
        ge[j0..j0 + C].copy_from_slice(&ae);
    }
    for &(z, dp, g, x) in group {
        axpy(z, &g[full..d], &mut gd[full..]);
        if dp != 0.0 {
            axpy(dp, &x[full..d], &mut ge[full..]);
        }
    }
}

impl Block {
    /// [`RowBlocks::dz`] for this block's entries (`out` starts at CSR
    /// position `p0`). Each latent's decoder row stays in L1 while its
    /// entries go by [`DOT_GROUP`] at a time: the dot products are chains of
    /// dependent adds (the order [`crate::kernels::dot`] fixes), so several
    /// run side by side to hide the add latency.
    fn dz<'a>(
        &self,
        p0: usize,
        w_dec: &[f32],
        d: usize,
        g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
        out: &mut [f32],
    ) {
        for (g, &i) in self.lat.iter().enumerate() {
            let i = i as usize;
            let w = &w_dec[i * d..(i + 1) * d];
            let (start, end) = (self.gptr[g] as usize, self.gptr[g + 1] as usize);
            for q0 in (start..end).step_by(DOT_GROUP) {
                let q1 = (q0 + DOT_GROUP).min(end);
                let group = dot_group((q0..q1).map(|q| g_of(self.row[q] as usize, i)));
                let dots = dots_against(&group, w, d);
                for (q, &v) in (q0..q1).zip(&dots) {
                    out[self.pos[q] as usize - p0] = v;
                }
            }
        }
    }
}

/// Column tile of [`tiled_decode`]: 32 floats, so the packed tile of every
/// decoder row (n × 128 B, 1.5 MB at n 12288) fits the 2 MB L2.
const DECODE_TILE: usize = 32;

/// Rows per task in [`tiled_decode`].
const DECODE_ROWS: usize = 64;

/// `Σ_{i active in b} z[b,i] · w_dec[i]` per row (no bias), bit for bit as
/// [`crate::kernels::sparse_decode`]: per row from zero, in increasing
/// latent order. The columns go in tiles of [`DECODE_TILE`]: the tile of
/// every decoder row is packed contiguous, and each row sums its entries
/// into registers, so neither whole decoder rows (3 KB each, from L3) nor
/// output rows move per entry.
pub fn tiled_decode(codes: &SparseCodes, w_dec: &[f32], d: usize) -> Vec<f32> {
    const T: usize = DECODE_TILE;
    let n = codes.n;
    let mut out = vec![0.0f32; codes.rows * d];
    let mut packed = vec![0.0f32; n * T];
    for t0 in (0..d).step_by(T) {
        let w = (t0 + T).min(d) - t0;
        packed[..n * w]
            .par_chunks_mut(w * 256)
            .enumerate()
            .for_each(|(c, p)| {
                for (l, r) in p.chunks_mut(w).enumerate() {
                    let i = c * 256 + l;
                    r.copy_from_slice(&w_dec[i * d + t0..i * d + t0 + w]);
                }
            });
        let packed = &packed[..n * w];
        out.par_chunks_mut(DECODE_ROWS * d)
            .enumerate()
            .for_each(|(c, o)| {
                for (r, orow) in o.chunks_mut(d).enumerate() {
                    let (ix, vs) = codes.row(c * DECODE_ROWS + r);
                    let dst = &mut orow[t0..t0 + w];
                    if w == T {
                        let mut acc = [0.0f32; T];
                        for (&i, &v) in ix.iter().zip(vs) {
                            let wr = &packed[i as usize * T..(i as usize + 1) * T];
                            for j in 0..T {
                                acc[j] += v * wr[j];
                            }
                        }
                        dst.copy_from_slice(&acc);
                    } else {
                        for (&i, &v) in ix.iter().zip(vs) {
                            axpy(v, &packed[i as usize * w..(i as usize + 1) * w], dst);
                        }
                    }
                }
            });
    }
    out
}

/// The sparse kernels for one set of codes, blocked when [`worth_blocking`]
/// says so and plain otherwise; both give the same bits.
pub struct CodeKernels<'c> {
    codes: &'c SparseCodes,
    /// Whether the codes are dense enough for the blocked kernels.
    blocked: bool,
    /// The row blocks, grouped on first use (the decode does not need them).
    row_blocks: std::sync::OnceLock<RowBlocks>,
}

impl<'c> CodeKernels<'c> {
    /// Chooses the layout for `codes`.
    pub fn new(codes: &'c SparseCodes) -> Self {
        CodeKernels {
            codes,
            blocked: worth_blocking(codes),
            row_blocks: std::sync::OnceLock::new(),
        }
    }

    /// Whether the blocked layout is in use.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The row blocks when blocked (grouped once).
    fn blocks(&self) -> Option<&RowBlocks> {
        self.blocked
            .then(|| self.row_blocks.get_or_init(|| RowBlocks::new(self.codes)))
    }

    /// `Σ_{i active in b} z[b,i] · w_dec[i]` per row, no bias.
    pub fn decode(&self, w_dec: &[f32], d: usize) -> Vec<f32> {
        if self.blocked {
            tiled_decode(self.codes, w_dec, d)
        } else {
            crate::kernels::sparse_decode(self.codes, w_dec, d, None)
        }
    }

    /// `∂L/∂z` at every entry (see [`crate::kernels::sparse_dz`]).
    pub fn dz<'a>(
        &self,
        w_dec: &[f32],
        d: usize,
        g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
    ) -> Vec<f32> {
        match self.blocks() {
            Some(rb) => rb.dz(self.codes, w_dec, d, g_of),
            None => crate::kernels::sparse_dz(self.codes, w_dec, d, g_of),
        }
    }

    /// Decoder / encoder / bias gradients (see
    /// [`crate::kernels::latent_grads`], also for `overwrite`).
    #[allow(clippy::too_many_arguments)]
    pub fn latent_grads<'a>(
        &self,
        dpre: &[f32],
        xc: &[f32],
        d: usize,
        g_of: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
        d_w_dec: &mut [f32],
        d_w_enc_t: &mut [f32],
        col_sum: &mut [f32],
        overwrite: bool,
    ) {
        match self.blocks() {
            Some(rb) => rb.latent_grads(
                &self.codes.val,
                dpre,
                xc,
                d,
                g_of,
                d_w_dec,
                d_w_enc_t,
                col_sum,
                overwrite,
            ),
            None => crate::kernels::latent_grads(
                &self.codes.to_csc(),
                &self.codes.val,
                dpre,
                xc,
                d,
                g_of,
                d_w_dec,
                d_w_enc_t,
                col_sum,
                overwrite,
            ),
        }
    }
}
