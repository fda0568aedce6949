//! The AVX-512 forms of the attention kernel's steps ([`super`]): 8 query
//! rows × 32 keys of scores in 16 zmm accumulators, the softmax of
//! `crate::simd`, 8 rows × 32 output columns of `p·v` per pass.

use super::{Kernels, Task, BLOCK, HEAD_DIM, ROWS};
use std::arch::x86_64::*;

/// The AVX-512 steps.
pub(super) struct Avx512;

impl Kernels for Avx512 {
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

    /// [`Kernels::softmax_rows`]: `crate::simd`'s form for this set.
    ///
    /// # Safety
    /// avx512f; row r of `s` holds `live[r]` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn softmax_rows(s: *mut f32, width: usize, live: [usize; ROWS]) {
        // SAFETY: the caller's contract.
        unsafe { crate::simd::softmax_rows_avx512::<ROWS>(s, width, live) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !saelab_kernels::simd::Width::Avx512.available() {
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
