//! Causal attention for one (sequence, head) at head width 64 with AVX-512
//! by hand, in place of the `gemm` calls of [`crate::ops::causal_attention`]
//! (which it serves, and which stays the path for other widths and CPUs).
//!
//! Why: at seq 128 the `gemm` crate spent a third of attention packing its
//! small operands and another third in per-call setup around a 32-row
//! block (perf, bench/RESULTS.md session 12). Here the keys are transposed
//! once per task into a `kᵀ` panel (64 × keys, zero-padded), and each group
//! of eight query rows runs start to finish while its scores stay in L1:
//! scores `q·kᵀ` (8 rows × 32 keys in 16 zmm accumulators, one broadcast of
//! q per row and column), the softmax of the eight rows in lockstep
//! (`crate::simd`'s, whose chains then overlap), then `p·v` (8 rows × 32
//! output columns, twice, one broadcast of p per row and key). Causality
//! bounds both products: a group reads keys `0..=i` of its last row `i`
//! only (the others' masked scores are zero).
//!
//! Eight rows, not four (session 16): kᵀ and v (32 KB each at seq 128)
//! do not both fit in L1, and eight rows per group read each of their
//! vectors for twice the multiply-adds; the eight softmax chains overlap.
//! Measured 5–8 % faster than four rows at GPT-2's 16 × 12 heads
//! (bench/RESULTS.md, session 16); no performance counters on this VM to
//! say which part gained.
//!
//! Numerics: each score and each output element is one chain of fused
//! multiply-adds in increasing column / key order; the score is then
//! scaled by 1/√64. Group size does not enter (a masked key adds
//! `0 · v`, which leaves the sum as it was), so these are the bits of the
//! four-row kernel before it. The `gemm` path sums in its own blocked
//! order, so the two agree to f32 rounding, not bit for bit (tested
//! against each other and against an f64 reference); each is deterministic
//! and independent of the thread count.

use std::arch::x86_64::*;

/// The head width this kernel serves.
pub const HEAD_DIM: usize = 64;
/// Query rows per group (accumulator rows).
const ROWS: usize = 8;
/// Keys per full score block, and output columns per `p·v` pass (two zmm
/// per row).
const BLOCK: usize = 32;

/// Scratch of one task: the `kᵀ` panel and a group's scores.
#[derive(Default)]
pub struct Scratch {
    kt: Vec<f32>,
    scores: Vec<f32>,
}

/// Where one task reads and writes: query rows `q[i * q_stride ..]`, key
/// and value rows `k[j * kv_stride ..]`, `v[j * kv_stride ..]` (64 values
/// each, already offset to the head), output rows `out[i * out_stride ..]`.
pub struct Task {
    pub q: *const f32,
    pub q_stride: usize,
    pub k: *const f32,
    pub v: *const f32,
    pub kv_stride: usize,
    pub out: *mut f32,
    pub out_stride: usize,
    pub seq: usize,
}

/// Runs one task.
///
/// # Safety
/// The CPU has avx512f; every row named by `task` (`seq` rows of 64 values
/// each for q, k, v, out) is valid, and the output rows are not accessed by
/// anyone else during the call.
#[target_feature(enable = "avx512f")]
pub unsafe fn run(task: &Task, scratch: &mut Scratch) {
    let seq = task.seq;
    let width = seq.next_multiple_of(BLOCK);
    // SAFETY: avx512f (caller); the caller's contract covers the key rows.
    unsafe { transpose_keys(task, width, &mut scratch.kt) };
    scratch.scores.clear();
    scratch.scores.resize(ROWS * width, 0.0);
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    for i0 in (0..seq).step_by(ROWS) {
        let rows = ROWS.min(seq - i0);
        let keys = i0 + rows;
        // Rows past the end repeat the last one; their results are dropped.
        let q =
            std::array::from_fn(|r| task.q.wrapping_add((i0 + r.min(rows - 1)) * task.q_stride));
        let s = &mut scratch.scores;
        // SAFETY: the query rows are valid (caller); kᵀ and the scores hold
        // `width` ≥ `keys` columns.
        unsafe { scores(q, &scratch.kt, width, keys, scale, s) };
        let live = std::array::from_fn(|r| if r < rows { i0 + r + 1 } else { 0 });
        // SAFETY: row r of the scores holds `width` ≥ live[r] values.
        unsafe { crate::simd::softmax_rows_avx512::<ROWS>(s.as_mut_ptr(), width, live) };
        for (r, row) in s.chunks_exact_mut(width).enumerate() {
            row[live[r]..keys].fill(0.0);
        }
        let out = std::array::from_fn(|r| task.out.wrapping_add((i0 + r) * task.out_stride));
        // SAFETY: value rows `0..keys` are valid (caller); output rows
        // `i0..i0 + rows` are this task's.
        unsafe { weighted_values(s, width, keys, task.v, task.kv_stride, out, rows) };
    }
}

/// `kt[c * width + j] = k[j][c]` for `j < seq`, zero for `seq ≤ j < width`,
/// 16 × 16 blocks at a time through registers ([`transpose16`]).
///
/// # Safety
/// avx512f; the `seq` key rows of `task` are valid.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_keys(task: &Task, width: usize, kt: &mut Vec<f32>) {
    kt.clear();
    kt.resize(HEAD_DIM * width, 0.0);
    for j0 in (0..task.seq).step_by(16) {
        for c0 in (0..HEAD_DIM).step_by(16) {
            let rows = std::array::from_fn(|jj| {
                if j0 + jj < task.seq {
                    // SAFETY: key row j0 + jj holds 64 values (caller).
                    unsafe { _mm512_loadu_ps(task.k.add((j0 + jj) * task.kv_stride + c0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            for (cc, col) in transpose16(rows).iter().enumerate() {
                // SAFETY: c0 + cc < 64 and j0 + 16 ≤ width: inside kt.
                unsafe { _mm512_storeu_ps(kt.as_mut_ptr().add((c0 + cc) * width + j0), *col) };
            }
        }
    }
}

/// The transpose of a 16 × 16 block held as 16 rows: element `c` of
/// output `j` is element `j` of input `c`. Unpacks pair the rows'
/// elements, 64-bit shuffles gather each column of four rows in one
/// 128-bit lane (`u[4g + m]`, lane L: column 4L + m of rows 4g..4g + 4),
/// and two rounds of 128-bit lane shuffles put the four quads side by side.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (lo01, hi01, lo23, hi23) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(lo01, lo23);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(hi01, hi23);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let va = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let vb = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
        let wa = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let wb = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
        out[m] = _mm512_shuffle_f32x4::<0x88>(va, wa);
        out[4 + m] = _mm512_shuffle_f32x4::<0x88>(vb, wb);
        out[8 + m] = _mm512_shuffle_f32x4::<0xDD>(va, wa);
        out[12 + m] = _mm512_shuffle_f32x4::<0xDD>(vb, wb);
    }
    out
}

/// `s[r * width + j] = scale · Σ_c q[r][c] · kt[c * width + j]` for the eight
/// rows and every `j` below `keys` rounded up to 16 (the padding of kᵀ is
/// zero).
///
/// # Safety
/// avx512f; each `q[r]` holds 64 values; `kt` holds 64 × `width` and `s`
/// 8 × `width` values, `width` a multiple of 32 and ≥ `keys`.
#[target_feature(enable = "avx512f")]
unsafe fn scores(
    q: [*const f32; ROWS],
    kt: &[f32],
    width: usize,
    keys: usize,
    scale: f32,
    s: &mut [f32],
) {
    debug_assert!(kt.len() >= HEAD_DIM * width && s.len() >= ROWS * width && keys <= width);
    let full = keys / BLOCK * BLOCK;
    for j0 in (0..full).step_by(BLOCK) {
        // SAFETY: as the function's contract; j0 + 32 ≤ width.
        unsafe { score_block::<2>(q, kt, width, j0, scale, s) };
    }
    // The rest (under 32 keys) in one block of one or two vectors.
    // SAFETY: as above; full + 16·NV ≤ full + 32 ≤ width.
    unsafe {
        match (keys - full).div_ceil(16) {
            0 => {}
            1 => score_block::<1>(q, kt, width, full, scale, s),
            _ => score_block::<2>(q, kt, width, full, scale, s),
        }
    }
}

/// [`scores`] for keys `j0 .. j0 + 16·NV`.
///
/// # Safety
/// As [`scores`], with `j0 + 16·NV ≤ width`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn score_block<const NV: usize>(
    q: [*const f32; ROWS],
    kt: &[f32],
    width: usize,
    j0: usize,
    scale: f32,
    s: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
    let ktp = kt.as_ptr();
    for c in 0..HEAD_DIM {
        let mut kv = [_mm512_setzero_ps(); NV];
        for (v, kvv) in kv.iter_mut().enumerate() {
            // SAFETY: c < 64 and j0 + 16v + 16 ≤ width: inside kt.
            *kvv = unsafe { _mm512_loadu_ps(ktp.add(c * width + j0 + 16 * v)) };
        }
        for r in 0..ROWS {
            // SAFETY: q[r] holds 64 values.
            let qb = _mm512_set1_ps(unsafe { *q[r].add(c) });
            for v in 0..NV {
                acc[r][v] = _mm512_fmadd_ps(qb, kv[v], acc[r][v]);
            }
        }
    }
    let sc = _mm512_set1_ps(scale);
    for (r, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            // SAFETY: r < 8 and j0 + 16v + 16 ≤ width: inside s.
            unsafe {
                _mm512_storeu_ps(
                    s.as_mut_ptr().add(r * width + j0 + 16 * v),
                    _mm512_mul_ps(*a, sc),
                )
            };
        }
    }
}

/// `out[r][c] = Σ_{j < keys} p[r * width + j] · v[j][c]` for the first
/// `rows` of the eight rows, in two passes of 32 output columns.
///
/// # Safety
/// avx512f; value rows `0..keys` (at `kv_stride`) hold 64 values each;
/// `out[r]` for `r < rows` is writable for 64 values; `p` holds 8 × `width`
/// values, `keys ≤ width`.
#[target_feature(enable = "avx512f")]
unsafe fn weighted_values(
    p: &[f32],
    width: usize,
    keys: usize,
    v: *const f32,
    kv_stride: usize,
    out: [*mut f32; ROWS],
    rows: usize,
) {
    debug_assert!(p.len() >= ROWS * width && keys <= width);
    let pp = p.as_ptr();
    for c0 in (0..HEAD_DIM).step_by(BLOCK) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        for j in 0..keys {
            // SAFETY: value row j holds 64 values; c0 + 32 ≤ 64.
            let vr = unsafe { v.add(j * kv_stride + c0) };
            // SAFETY: as above, 2 × 16 values.
            let vv = [0, 1].map(|c| unsafe { _mm512_loadu_ps(vr.add(16 * c)) });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: r < 8 and j < keys ≤ width: inside p.
                let pb = _mm512_set1_ps(unsafe { *pp.add(r * width + j) });
                for c in 0..2 {
                    acc_r[c] = _mm512_fmadd_ps(pb, vv[c], acc_r[c]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (c, a) in row.iter().enumerate() {
                // SAFETY: out[r] (r < rows) holds 64 writable values.
                unsafe { _mm512_storeu_ps(out[r].add(c0 + 16 * c), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !crate::simd::Width::Avx512.available() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut got = vec![0.0f32; 256];
        // SAFETY: avx512f is available (checked); 256-value buffers.
        unsafe {
            let rows = std::array::from_fn(|r| _mm512_loadu_ps(m.as_ptr().add(16 * r)));
            for (c, v) in transpose16(rows).iter().enumerate() {
                _mm512_storeu_ps(got.as_mut_ptr().add(16 * c), *v);
            }
        }
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(got[c * 16 + r], m[r * 16 + c], "row {r} column {c}");
            }
        }
    }
}
