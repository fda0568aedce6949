//! Which vector width the hand-written element-wise loops run at, chosen
//! once per process from the CPU, and the loops shared by several crates.
//!
//! Why by hand: LLVM tunes Intel server CPUs for 256-bit vectors, so with
//! `target-cpu=native` the compiler's own vectorization of simple loops
//! stays on ymm, and some (a sum of squares into f64 lanes) come out as
//! 128-bit shuffles. Every AVX-512 form here runs the scalar form's
//! operations in the scalar order, so both give the same bits (tested).
//! `SAELAB_SIMD=scalar` forces the scalar loops.

/// Which loop runs the element-wise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// The scalar functions (the compiler vectorizes them as it tunes).
    Scalar,
    /// 16 lanes of zmm (avx512f).
    Avx512,
}

impl Width {
    /// AVX-512 where the CPU has it, unless `SAELAB_SIMD=scalar`.
    pub fn best() -> Width {
        static BEST: std::sync::OnceLock<Width> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("SAELAB_SIMD").is_ok_and(|v| v == "scalar");
            if !forced && Width::Avx512.available() {
                Width::Avx512
            } else {
                Width::Scalar
            }
        })
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Width::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Width::Avx512 => false,
        }
    }
}

/// Σ c[i]² in f64: eight lanes (lane l takes c[8j + l] in j order),
/// summed in a fixed tree, then the tail in order.
pub fn sum_sq_lanes(width: Width, c: &[f32]) -> f64 {
    let full = c.len() / 8 * 8;
    let acc = lanes_of_squares(width, &c[..full]);
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in &c[full..] {
        s += (v as f64) * (v as f64);
    }
    s
}

/// The eight lanes of [`sum_sq_lanes`] over `c` (a multiple of 8 long).
fn lanes_of_squares(width: Width, c: &[f32]) -> [f64; 8] {
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        return unsafe { avx512::lanes_of_squares(c) };
    }
    let _ = width;
    let mut acc = [0.0f64; 8];
    for x in c.chunks_exact(8) {
        for l in 0..8 {
            acc[l] += (x[l] as f64) * (x[l] as f64);
        }
    }
    acc
}

/// Bit j set iff `chunk[j] > t` (false for NaN, as the comparison), for a
/// chunk of at most 64 values.
///
/// Panics if the chunk is longer.
pub fn above_mask(width: Width, chunk: &[f32], t: f32) -> u64 {
    assert!(
        chunk.len() <= 64,
        "above_mask: chunk of {} > 64",
        chunk.len()
    );
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        return unsafe { avx512::above_mask(chunk, t) };
    }
    let _ = width;
    let mut m = 0u64;
    for (j, &v) in chunk.iter().enumerate() {
        m |= ((v > t) as u64) << j;
    }
    m
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::above_mask`], 16 comparisons per instruction.
    #[target_feature(enable = "avx512f")]
    pub(super) fn above_mask(chunk: &[f32], t: f32) -> u64 {
        let tv = _mm512_set1_ps(t);
        let mut m = 0u64;
        let whole = chunk.chunks_exact(16);
        let tail = whole.remainder();
        let mut shift = 0;
        for x in whole {
            // SAFETY: `x` holds 16 floats (64 bytes), read unaligned.
            let v = unsafe { _mm512_loadu_ps(x.as_ptr()) };
            // Ordered and non-signalling: false for NaN, as `v > t`.
            let k = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, tv);
            m |= (k as u64) << shift;
            shift += 16;
        }
        for (j, &v) in tail.iter().enumerate() {
            m |= ((v > t) as u64) << (shift + j);
        }
        m
    }

    /// [`super::lanes_of_squares`] with the eight lanes in one zmm.
    #[target_feature(enable = "avx512f")]
    pub(super) fn lanes_of_squares(c: &[f32]) -> [f64; 8] {
        let mut acc = _mm512_setzero_pd();
        for x in c.chunks_exact(8) {
            // SAFETY: `x` holds 8 floats (32 bytes), read unaligned.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr()) };
            let d = _mm512_cvtps_pd(v);
            acc = _mm512_add_pd(acc, _mm512_mul_pd(d, d));
        }
        let mut out = [0.0f64; 8];
        // SAFETY: `out` holds 8 doubles (64 bytes), written unaligned.
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), acc) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_gives_the_scalar_bits() {
        // Values whose squares and sums round, subnormals, ±0, a tail.
        let c: Vec<f32> = (0..1003)
            .map(|i| match i % 7 {
                0 => -0.0,
                1 => 1e-40 * i as f32,
                _ => ((i * 7919) % 1000) as f32 / 3.7 - 120.0,
            })
            .collect();
        let want = sum_sq_lanes(Width::Scalar, &c);
        for w in [Width::Avx512] {
            if w.available() {
                assert_eq!(sum_sq_lanes(w, &c).to_bits(), want.to_bits(), "{w:?}");
            }
        }
        // The lanes are kept apart: one running sum gives other bits.
        let serial: f64 = c.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert_ne!(serial.to_bits(), want.to_bits());
    }

    #[test]
    fn above_masks_agree_with_the_comparison() {
        let vals = [
            0.5f32,
            -0.0,
            0.0,
            f32::NAN,
            1.0,
            0.25,
            f32::INFINITY,
            -1.0,
            0.5000001,
        ];
        for len in [0usize, 1, 15, 16, 17, 40, 64] {
            let chunk: Vec<f32> = (0..len).map(|j| vals[(j * 5) % vals.len()]).collect();
            for t in [0.5f32, 0.0, -0.0, f32::NEG_INFINITY, f32::NAN] {
                let want: u64 = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| ((v > t) as u64) << j)
                    .sum();
                for w in [Width::Scalar, Width::Avx512] {
                    if w.available() {
                        assert_eq!(above_mask(w, &chunk, t), want, "{w:?}, len {len}, t {t}");
                    }
                }
            }
        }
    }
}
