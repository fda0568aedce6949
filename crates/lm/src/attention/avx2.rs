//! The AVX2 + FMA forms of the attention kernel's steps ([`super`]), for
//! CPUs without AVX-512 (Zen 3). Sixteen ymm registers against
//! AVX-512's 32 zmm: the eight rows of a group go as two halves of four.
//! Scores take 4 rows × 16 keys (eight accumulators, two kᵀ vectors, one
//! broadcast of q); `p·v` takes 4 rows × 16 output columns in four passes
//! over the 64. Every score and output element is the same chain of fused
//! multiply-adds as in [`super::avx512`], so the same bits.

use super::{Kernels, Task, HEAD_DIM, ROWS};
use std::arch::x86_64::*;

/// Rows per half-group.
const HALF: usize = ROWS / 2;
/// Keys per score block and output columns per `p·v` pass: two ymm.
const SPAN: usize = 16;

/// The AVX2 steps.
pub(super) struct Avx2;

impl Kernels for Avx2 {
    /// `kt[c * width + j] = k[j][c]` for `j < seq`, zero for `seq ≤ j < width`,
    /// 8 × 8 blocks at a time through registers ([`transpose8`]).
    ///
    /// # Safety
    /// avx2; the `seq` key rows of `task` are valid; `width` is a multiple of
    /// 8 and ≥ `seq`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_keys(task: &Task, width: usize, kt: &mut Vec<f32>) {
        kt.clear();
        kt.resize(HEAD_DIM * width, 0.0);
        for j0 in (0..task.seq).step_by(8) {
            for c0 in (0..HEAD_DIM).step_by(8) {
                let rows = std::array::from_fn(|jj| {
                    if j0 + jj < task.seq {
                        // SAFETY: key row j0 + jj holds 64 values (caller).
                        unsafe { _mm256_loadu_ps(task.k.add((j0 + jj) * task.kv_stride + c0)) }
                    } else {
                        _mm256_setzero_ps()
                    }
                });
                for (cc, col) in transpose8(rows).iter().enumerate() {
                    // SAFETY: c0 + cc < 64 and j0 + 8 ≤ width: inside kt.
                    unsafe { _mm256_storeu_ps(kt.as_mut_ptr().add((c0 + cc) * width + j0), *col) };
                }
            }
        }
    }

    /// `s[r * width + j] = scale · Σ_c q[r][c] · kt[c * width + j]` for the
    /// eight rows and every `j` below `keys` rounded up to 8 (the padding of kᵀ
    /// is zero).
    ///
    /// # Safety
    /// avx2 and fma; each `q[r]` holds 64 values; `kt` holds 64 × `width` and
    /// `s` 8 × `width` values, `width` a multiple of 16 and ≥ `keys`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores(
        q: [*const f32; ROWS],
        kt: &[f32],
        width: usize,
        keys: usize,
        scale: f32,
        s: &mut [f32],
    ) {
        debug_assert!(kt.len() >= HEAD_DIM * width && s.len() >= ROWS * width && keys <= width);
        let full = keys / SPAN * SPAN;
        for half in 0..2 {
            let q: [*const f32; HALF] = std::array::from_fn(|r| q[HALF * half + r]);
            let s = &mut s[HALF * half * width..];
            for j0 in (0..full).step_by(SPAN) {
                // SAFETY: as the function's contract; j0 + 16 ≤ width.
                unsafe { score_block::<2>(q, kt, width, j0, scale, s) };
            }
            // The rest (under 16 keys) in one block of one or two vectors.
            // SAFETY: as above; full + 8·NV ≤ full + 16 ≤ width.
            unsafe {
                match (keys - full).div_ceil(8) {
                    0 => {}
                    1 => score_block::<1>(q, kt, width, full, scale, s),
                    _ => score_block::<2>(q, kt, width, full, scale, s),
                }
            }
        }
    }

    /// [`Kernels::softmax_rows`]: `crate::simd`'s form for this set.
    ///
    /// # Safety
    /// avx2 and fma; row r of `s` holds `live[r]` values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn softmax_rows(s: *mut f32, width: usize, live: [usize; ROWS]) {
        // SAFETY: the caller's contract.
        unsafe { crate::simd::softmax_rows_avx2::<ROWS>(s, width, live) }
    }

    /// `out[r][c] = Σ_{j < keys} p[r * width + j] · v[j][c]` for the first
    /// `rows` of the eight rows: each half of four rows in four passes of 16
    /// output columns.
    ///
    /// # Safety
    /// avx2 and fma; value rows `0..keys` (at `kv_stride`) hold 64 values each;
    /// `out[r]` for `r < rows` is writable for 64 values; `p` holds 8 × `width`
    /// values, `keys ≤ width`.
    #[target_feature(enable = "avx2,fma")]
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
        for half in 0..rows.div_ceil(HALF) {
            let pp = p[HALF * half * width..].as_ptr();
            let live = (rows - HALF * half).min(HALF);
            for c0 in (0..HEAD_DIM).step_by(SPAN) {
                let mut acc = [[_mm256_setzero_ps(); 2]; HALF];
                for j in 0..keys {
                    // SAFETY: value row j holds 64 values; c0 + 16 ≤ 64.
                    let vr = unsafe { v.add(j * kv_stride + c0) };
                    // SAFETY: as above, 2 × 8 values.
                    let vv = [0, 1].map(|c| unsafe { _mm256_loadu_ps(vr.add(8 * c)) });
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: r < 4 and j < keys ≤ width: inside this half's
                        // rows of p.
                        let pb = _mm256_set1_ps(unsafe { *pp.add(r * width + j) });
                        for c in 0..2 {
                            acc_r[c] = _mm256_fmadd_ps(pb, vv[c], acc_r[c]);
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate().take(live) {
                    let o = out[HALF * half + r];
                    for (c, a) in row.iter().enumerate() {
                        // SAFETY: out[r] (r < rows) holds 64 writable values.
                        unsafe { _mm256_storeu_ps(o.add(c0 + 8 * c), *a) };
                    }
                }
            }
        }
    }
}

/// The transpose of an 8 × 8 block held as 8 rows: element `c` of output
/// `j` is element `j` of input `c`. Unpacks pair two rows' elements,
/// shuffles gather each column of four rows in a 128-bit lane (column `m`
/// low, column `m + 4` high), and 128-bit permutes join rows 0–3 and 4–7.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let mut t = [_mm256_setzero_ps(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // u[4g + m]: column m (low lane) and m + 4 (high lane) of rows 4g..4g + 4.
    let mut u = [_mm256_setzero_ps(); 8];
    for g in 0..2 {
        let (lo01, hi01, lo23, hi23) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm256_shuffle_ps::<0x44>(lo01, lo23);
        u[4 * g + 1] = _mm256_shuffle_ps::<0xEE>(lo01, lo23);
        u[4 * g + 2] = _mm256_shuffle_ps::<0x44>(hi01, hi23);
        u[4 * g + 3] = _mm256_shuffle_ps::<0xEE>(hi01, hi23);
    }
    let mut out = [_mm256_setzero_ps(); 8];
    for m in 0..4 {
        out[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
        out[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
    }
    out
}

/// [`scores`] for four rows and keys `j0 .. j0 + 8·NV`.
///
/// # Safety
/// As [`scores`] for four rows, with `j0 + 8·NV ≤ width`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn score_block<const NV: usize>(
    q: [*const f32; HALF],
    kt: &[f32],
    width: usize,
    j0: usize,
    scale: f32,
    s: &mut [f32],
) {
    let mut acc = [[_mm256_setzero_ps(); NV]; HALF];
    let ktp = kt.as_ptr();
    for c in 0..HEAD_DIM {
        let mut kv = [_mm256_setzero_ps(); NV];
        for (v, kvv) in kv.iter_mut().enumerate() {
            // SAFETY: c < 64 and j0 + 8v + 8 ≤ width: inside kt.
            *kvv = unsafe { _mm256_loadu_ps(ktp.add(c * width + j0 + 8 * v)) };
        }
        for r in 0..HALF {
            // SAFETY: q[r] holds 64 values.
            let qb = _mm256_set1_ps(unsafe { *q[r].add(c) });
            for v in 0..NV {
                acc[r][v] = _mm256_fmadd_ps(qb, kv[v], acc[r][v]);
            }
        }
    }
    let sc = _mm256_set1_ps(scale);
    for (r, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            // SAFETY: r < 4 and j0 + 8v + 8 ≤ width: inside s.
            unsafe {
                _mm256_storeu_ps(
                    s.as_mut_ptr().add(r * width + j0 + 8 * v),
                    _mm256_mul_ps(*a, sc),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose8_transposes() {
        if !super::super::Isa::Avx2.available() {
            return;
        }
        let m: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let mut got = vec![0.0f32; 64];
        // SAFETY: avx2 is available (checked); 64-value buffers.
        unsafe {
            let rows = std::array::from_fn(|r| _mm256_loadu_ps(m.as_ptr().add(8 * r)));
            for (c, v) in transpose8(rows).iter().enumerate() {
                _mm256_storeu_ps(got.as_mut_ptr().add(8 * c), *v);
            }
        }
        for r in 0..8 {
            for c in 0..8 {
                assert_eq!(got[c * 8 + r], m[r * 8 + c], "row {r} column {c}");
            }
        }
    }
}
