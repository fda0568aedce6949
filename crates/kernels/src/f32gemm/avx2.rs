//! The 8 × 48 microkernel of [`super`] for CPUs with AVX2 and FMA but no
//! AVX-512 (Zen 1–3, Haswell to Alder Lake), in intrinsics: sixteen ymm
//! registers hold a quarter of the tile at a time, so the tile runs as four
//! 4 × 24 quarters, each a full k loop with twelve accumulators, three W
//! vectors and one broadcast x value (all sixteen registers). The two row
//! quarters of a column half run back to back, so the second reads that
//! half of the panel from L1.
//!
//! Every accumulator takes its k indices in increasing order through
//! `vfmadd231ps`, one fused multiply-add per index, then the bias: the
//! same chain, so the same bits, as the AVX-512 kernel and
//! [`super::gemm_f32_reference`].

use super::{MR, NR};
use core::arch::x86_64::*;

/// Rows and columns of one quarter.
const QR: usize = 4;
const QC: usize = 24;
const _: () = assert!(MR == 2 * QR && NR == 2 * QC);

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `c[8 × 48] (+)= a·b (+ bias)`, as [`super::avx512::kernel`].
///
/// # Safety
/// avx2 and fma are available; `a` holds 8 rows of `kc` f32 at stride
/// `lda`, `b` holds `kc·48` f32; `c` is valid for an 8 × 48 tile at stride
/// `ldc` elements; `bias` is null or valid for 48 f32.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel(
    kc: usize,
    (a, lda): (*const f32, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    load_c: bool,
    bias: *const f32,
) {
    for half in 0..2 {
        let col = half * QC;
        let bias = if bias.is_null() {
            bias
        } else {
            bias.wrapping_add(col)
        };
        for quarter in 0..2 {
            let row = quarter * QR;
            // SAFETY: rows [row, row + 4) and columns [col, col + 24) of
            // the caller's tile, operands and bias.
            unsafe {
                quarter_4x24(
                    kc,
                    (a.add(row * lda), lda),
                    b.add(col),
                    (c.add(row * ldc + col), ldc),
                    load_c,
                    bias,
                )
            };
        }
    }
}

/// `c[4 × 24] (+)= a·b (+ bias)`: `b` steps 48 floats per k index.
///
/// # Safety
/// As [`kernel`], for 4 rows of `a` and `c` and 24 columns of `b`, `c`
/// and `bias`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn quarter_4x24(
    kc: usize,
    (a, lda): (*const f32, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    load_c: bool,
    bias: *const f32,
) {
    // SAFETY: every address below lies in the caller's ranges.
    unsafe {
        let start = |r: usize, v: usize| {
            if load_c {
                _mm256_loadu_ps(c.add(r * ldc + 8 * v))
            } else {
                _mm256_setzero_ps()
            }
        };
        let (mut c00, mut c01, mut c02) = (start(0, 0), start(0, 1), start(0, 2));
        let (mut c10, mut c11, mut c12) = (start(1, 0), start(1, 1), start(1, 2));
        let (mut c20, mut c21, mut c22) = (start(2, 0), start(2, 1), start(2, 2));
        let (mut c30, mut c31, mut c32) = (start(3, 0), start(3, 1), start(3, 2));
        let (a0, a1, a2, a3) = (a, a.add(lda), a.add(2 * lda), a.add(3 * lda));
        for p in 0..kc {
            let w = b.add(p * NR);
            let (w0, w1, w2) = (
                _mm256_loadu_ps(w),
                _mm256_loadu_ps(w.add(8)),
                _mm256_loadu_ps(w.add(16)),
            );
            let x = _mm256_broadcast_ss(&*a0.add(p));
            c00 = _mm256_fmadd_ps(x, w0, c00);
            c01 = _mm256_fmadd_ps(x, w1, c01);
            c02 = _mm256_fmadd_ps(x, w2, c02);
            let x = _mm256_broadcast_ss(&*a1.add(p));
            c10 = _mm256_fmadd_ps(x, w0, c10);
            c11 = _mm256_fmadd_ps(x, w1, c11);
            c12 = _mm256_fmadd_ps(x, w2, c12);
            let x = _mm256_broadcast_ss(&*a2.add(p));
            c20 = _mm256_fmadd_ps(x, w0, c20);
            c21 = _mm256_fmadd_ps(x, w1, c21);
            c22 = _mm256_fmadd_ps(x, w2, c22);
            let x = _mm256_broadcast_ss(&*a3.add(p));
            c30 = _mm256_fmadd_ps(x, w0, c30);
            c31 = _mm256_fmadd_ps(x, w1, c31);
            c32 = _mm256_fmadd_ps(x, w2, c32);
        }
        let rows = [
            [c00, c01, c02],
            [c10, c11, c12],
            [c20, c21, c22],
            [c30, c31, c32],
        ];
        for (r, row) in rows.into_iter().enumerate() {
            for (v, mut acc) in row.into_iter().enumerate() {
                if !bias.is_null() {
                    acc = _mm256_add_ps(acc, _mm256_loadu_ps(bias.add(8 * v)));
                }
                _mm256_storeu_ps(c.add(r * ldc + 8 * v), acc);
            }
        }
    }
}
