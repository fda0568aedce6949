//! The bf16 product on CPUs with AVX2 and FMA but no bf16 instructions
//! (Zen 1–3, Haswell to Alder Lake): the rounded operands widened back to
//! f32 and multiplied by the packed f32 kernel (`crate::f32gemm`, its AVX2
//! path), instead of the scalar portable kernel (≈ ¼ of the f32 rate on
//! Zen 3). Without bf16 hardware a bf16 product cannot beat f32, so this
//! path aims at the f32 rate with bf16's numbers.
//!
//! Same bits as the portable kernel: a bf16 × bf16 product is exact in
//! f32, so one fused multiply-add per product rounds where the portable
//! kernel's add does; k runs in the portable order (per pair, the odd index
//! first) because both operands are widened with each pair's halves
//! swapped (row `2p` of the widened W holds `W[2p + 1]`, row `2p + 1`
//! holds `W[2p]`, and likewise the columns of x); subnormal bf16 inputs
//! become zero in the widening, as in the portable kernel. (A product
//! below the f32 normal range, |x̃w̃| < 1.2e-38, would round twice there
//! and once here.)
//!
//! W is widened once per packing, on first use (`PackedBf16::widened`);
//! x on every call, into a buffer of `m × 2·⌈k/2⌉` f32.

use super::{bf16_daz, PackedBf16, XIn, NR};
use crate::f32gemm::{gemm_f32, F32Path, PackedF32};
use rayon::prelude::*;

/// Rows of x widened per rayon task.
const ROWS_PER_TASK: usize = 64;

/// `y (+)= x̃·W̃` through the widened operands (module doc).
pub(super) fn run(m: usize, x: XIn<'_>, w: &PackedBf16, y: &mut [f32], accumulate: bool) {
    let kk = 2 * w.kp;
    let mut xs = vec![0f32; m * kk];
    let k = w.k;
    xs.par_chunks_mut(kk * ROWS_PER_TASK)
        .enumerate()
        .for_each_init(
            || vec![0u32; w.kp],
            |pairs, (i, chunk)| {
                for (j, row) in chunk.chunks_exact_mut(kk).enumerate() {
                    let r = i * ROWS_PER_TASK + j;
                    let src: &[u32] = match x {
                        XIn::F32(x) => {
                            super::pack_pairs(&x[r * k..(r + 1) * k], pairs);
                            pairs
                        }
                        XIn::Bf16(rows) => &rows.pairs()[r * rows.stride..][..w.kp],
                    };
                    widen_swapped(src, row);
                }
            },
        );
    gemm_f32(m, &xs, w.widened(), None, y, accumulate);
}

/// Pairs `lo | hi << 16` into `[hi, lo]` f32 values, subnormals as zero.
fn widen_swapped(pairs: &[u32], out: &mut [f32]) {
    for (o, &p) in out.chunks_exact_mut(2).zip(pairs) {
        o[0] = bf16_daz(p >> 16);
        o[1] = bf16_daz(p);
    }
}

/// W̃ widened with each pair's halves swapped, `[2·kp][n]`, packed for the
/// AVX2 f32 kernel.
pub(super) fn widen_w(w: &PackedBf16) -> PackedF32 {
    let (n, kk) = (w.n, 2 * w.kp);
    let mut wide = vec![0f32; kk * n];
    wide.par_chunks_mut(2 * n)
        .enumerate()
        .for_each(|(p, rows)| {
            let (hi, lo) = rows.split_at_mut(n);
            for j in 0..w.panels {
                let c0 = j * NR;
                let cols = NR.min(n - c0);
                for (c, &v) in w.chunk(j, p, 1)[..cols].iter().enumerate() {
                    hi[c0 + c] = bf16_daz(v >> 16);
                    lo[c0 + c] = bf16_daz(v);
                }
            }
        });
    PackedF32::from_in_out(&wide, kk, n).with_path(F32Path::Avx2)
}
