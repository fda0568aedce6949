//! AVX-512 forms of the forward pass's element-wise functions: GELU
//! (`gelu_new`), SwiGLU, softmax and its `exp(s − max)`, 16 lanes at a
//! time.
//!
//! Why by hand: LLVM tunes Intel server CPUs for 256-bit vectors, so with
//! `target-cpu=native` the compiler's own vectorization of these loops
//! stays on ymm (the tuning flag that lifts it, `-prefer-256-bit`, is not
//! one rustc accepts without a warning on every crate). On the AMX Xeon the
//! zmm forms ran GELU ≈ 20 % faster (bench/RESULTS.md, session 10).
//!
//! Every lane runs the scalar function's operations in the scalar order
//! (no fused multiply-adds; Rust never contracts the scalar ones either),
//! so both forms give the same bits; the tests check it on every input
//! class. The AVX-512 form runs only where the CPU has avx512f
//! ([`Width::best`], shared with the other crates through
//! `saelab_kernels::simd`); `SAELAB_SIMD=scalar` forces the scalar loops.

use crate::ops::{fast_exp, gelu_new_one, swiglu_one};

pub use saelab_kernels::simd::Width;

/// `dst[i] = gelu_new_one(src[i])`.
///
/// Panics if the lengths differ.
pub fn gelu_new_into(width: Width, src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "gelu_new_into: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        unsafe { avx512::gelu_new_into(src, dst) };
        return;
    }
    let _ = width;
    for (o, &u) in dst.iter_mut().zip(src) {
        *o = gelu_new_one(u);
    }
}

/// `x[i] = gelu_new_one(x[i])`.
pub fn gelu_new_in_place(width: Width, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        unsafe { avx512::gelu_new_in_place(x) };
        return;
    }
    let _ = width;
    for v in x.iter_mut() {
        *v = gelu_new_one(*v);
    }
}

/// `out[i] = swiglu_one(gate[i], up[i])`.
///
/// Panics if the lengths differ.
pub fn swiglu_into(width: Width, gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(
        gate.len() == out.len() && up.len() == out.len(),
        "swiglu_into: lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        unsafe { avx512::swiglu_into(gate, up, out) };
        return;
    }
    let _ = width;
    for ((o, &a), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = swiglu_one(a, u);
    }
}

/// `x[i] = fast_exp(x[i] − m)` (softmax's numerators).
pub fn exp_sub_in_place(width: Width, x: &mut [f32], m: f32) {
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        unsafe { avx512::exp_sub_in_place(x, m) };
        return;
    }
    let _ = width;
    for s in x.iter_mut() {
        *s = fast_exp(*s - m);
    }
}

/// Softmax of one row in place, in a fixed order on every width: element
/// `j` goes to lane `j % 16`; the maximum (by `>`, so NaN is passed over)
/// and the sum of `fast_exp(x − max)` run per lane in increasing `j`, then
/// over the lanes as a halving tree (lane i takes lane i + h for h = 8, 4,
/// 2, 1); each value is then multiplied by 1 / sum. A single running
/// maximum or sum is a serial chain the compiler keeps scalar; 16 lanes let
/// the AVX-512 form run the row, tail included (masked), as whole vectors.
pub fn softmax_in_place(width: Width, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if width == Width::Avx512 && width.available() {
        // SAFETY: avx512f is available (checked).
        unsafe { avx512::softmax_in_place(x) };
        return;
    }
    let _ = width;
    let mut mx = [f32::NEG_INFINITY; 16];
    for (j, &v) in x.iter().enumerate() {
        if v > mx[j % 16] {
            mx[j % 16] = v;
        }
    }
    let m = max_of_lanes(&mx);
    let mut sums = [0.0f32; 16];
    for (j, v) in x.iter_mut().enumerate() {
        *v = fast_exp(*v - m);
        sums[j % 16] += *v;
    }
    let inv = 1.0 / sum_of_lanes(&sums);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// [`softmax_in_place`] on `N` rows at once (row r at `x + r·stride`,
/// `lens[r]` values, 0 for none), interleaved for the AVX-512 attention
/// kernel: the same bits as one call per row.
///
/// # Safety
/// avx512f is available; every row with `lens[r] > 0` is valid for
/// `lens[r]` reads and writes, and no other reference to it is live.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn softmax_rows_avx512<const N: usize>(
    x: *mut f32,
    stride: usize,
    lens: [usize; N],
) {
    // SAFETY: the caller's contract.
    unsafe { avx512::softmax_rows_in_place(x, stride, lens) };
}

/// [`softmax_rows_avx512`] with AVX2 + FMA: each row's 16 lanes as two
/// ymm, the same operations in the same order, so the same bits (for the
/// AVX2 attention kernel).
///
/// # Safety
/// avx2 and fma are available; as [`softmax_rows_avx512`] otherwise.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn softmax_rows_avx2<const N: usize>(
    x: *mut f32,
    stride: usize,
    lens: [usize; N],
) {
    // SAFETY: the caller's contract.
    unsafe { avx2::softmax_rows_in_place(x, stride, lens) };
}

/// The lanes' maximum as a halving tree: lane `i` takes lane `i + h` when
/// that is greater (`>`), for h = 8, 4, 2, 1; the answer is lane 0.
fn max_of_lanes(lanes: &[f32; 16]) -> f32 {
    let mut s = *lanes;
    for h in [8, 4, 2, 1] {
        for i in 0..h {
            if s[i + h] > s[i] {
                s[i] = s[i + h];
            }
        }
    }
    s[0]
}

/// The lanes' sum as a halving tree: lane `i` += lane `i + h` for h = 8,
/// 4, 2, 1; the answer is lane 0 (the AVX-512 form's shuffles, in scalar).
fn sum_of_lanes(lanes: &[f32; 16]) -> f32 {
    let mut s = *lanes;
    for h in [8, 4, 2, 1] {
        for i in 0..h {
            s[i] += s[i + h];
        }
    }
    s[0]
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The 16-lane loops; each lane repeats the scalar function's
    //! operations in order (`crate::ops::fast_exp` and the callers).
    use crate::ops::{fast_exp, gelu_new_one, swiglu_one, FAST_EXP};
    use std::arch::x86_64::*;

    /// [`super::softmax_in_place`]: whole vectors, the tail masked.
    #[target_feature(enable = "avx512f")]
    pub(super) fn softmax_in_place(x: &mut [f32]) {
        let whole = x.len() / 16 * 16;
        let tail: __mmask16 = ((1u32 << (x.len() - whole)) - 1) as __mmask16;
        let p = x.as_mut_ptr();
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut mx = neg_inf;
        for j in (0..whole).step_by(16) {
            // SAFETY: j + 16 ≤ len.
            let v = unsafe { _mm512_loadu_ps(p.add(j)) };
            mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx), v);
        }
        // SAFETY: only the tail's lanes are read (masked load).
        let v = unsafe { _mm512_mask_loadu_ps(neg_inf, tail, p.add(whole)) };
        mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx), v);
        let m = max_tree(mx);
        let mut sums = _mm512_setzero_ps();
        for j in (0..whole).step_by(16) {
            // SAFETY: j + 16 ≤ len.
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(j)), m));
                _mm512_storeu_ps(p.add(j), e);
                sums = _mm512_add_ps(sums, e);
            }
        }
        // SAFETY: only the tail's lanes are read and written (masked).
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p.add(whole)), m));
            _mm512_mask_storeu_ps(p.add(whole), tail, e);
            sums = _mm512_mask_add_ps(sums, tail, sums, e);
        }
        let inv = _mm512_div_ps(_mm512_set1_ps(1.0), sum_tree(sums));
        for j in (0..whole).step_by(16) {
            // SAFETY: j + 16 ≤ len.
            unsafe { _mm512_storeu_ps(p.add(j), _mm512_mul_ps(_mm512_loadu_ps(p.add(j)), inv)) };
        }
        // SAFETY: masked to the tail.
        unsafe {
            let v = _mm512_maskz_loadu_ps(tail, p.add(whole));
            _mm512_mask_storeu_ps(p.add(whole), tail, _mm512_mul_ps(v, inv));
        }
    }

    /// [`super::softmax_in_place`] on `N` rows at once: row r at
    /// `x + r·stride`, `lens[r]` values (0: left alone). Each row runs the
    /// single-row form's operations in its order (so the same bits); the
    /// rows go in lockstep so that their dependency chains (the running
    /// maximum, the trees, the division) overlap instead of queueing.
    ///
    /// # Safety
    /// avx512f; each row with `lens[r] > 0` is valid for `lens[r]` reads
    /// and writes and no other reference to it is live.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn softmax_rows_in_place<const N: usize>(
        x: *mut f32,
        stride: usize,
        lens: [usize; N],
    ) {
        let whole = lens.map(|l| l / 16);
        let tail = lens.map(|l| ((1u32 << (l % 16)) - 1) as __mmask16);
        let last = (0..N).filter(|&r| lens[r] > 0).map(|r| whole[r]).max();
        let Some(last) = last else { return };
        let row = |r: usize, t: usize| x.wrapping_add(r * stride + 16 * t);
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut mx = [neg_inf; N];
        for t in 0..=last {
            for r in (0..N).filter(|&r| lens[r] > 0) {
                // SAFETY: a whole vector (t < whole) or the masked tail
                // (t == whole) of a live row.
                let v = match t.cmp(&whole[r]) {
                    std::cmp::Ordering::Less => unsafe { _mm512_loadu_ps(row(r, t)) },
                    std::cmp::Ordering::Equal => unsafe {
                        _mm512_mask_loadu_ps(neg_inf, tail[r], row(r, t))
                    },
                    std::cmp::Ordering::Greater => continue,
                };
                mx[r] = _mm512_mask_mov_ps(mx[r], _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, mx[r]), v);
            }
        }
        let m = mx.map(|v| max_tree(v));
        let mut sums = [_mm512_setzero_ps(); N];
        for t in 0..=last {
            for r in (0..N).filter(|&r| lens[r] > 0) {
                // SAFETY: as above; the tail is read and written masked.
                unsafe {
                    match t.cmp(&whole[r]) {
                        std::cmp::Ordering::Less => {
                            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row(r, t)), m[r]));
                            _mm512_storeu_ps(row(r, t), e);
                            sums[r] = _mm512_add_ps(sums[r], e);
                        }
                        std::cmp::Ordering::Equal => {
                            let v = _mm512_maskz_loadu_ps(tail[r], row(r, t));
                            let e = exp16(_mm512_sub_ps(v, m[r]));
                            _mm512_mask_storeu_ps(row(r, t), tail[r], e);
                            sums[r] = _mm512_mask_add_ps(sums[r], tail[r], sums[r], e);
                        }
                        std::cmp::Ordering::Greater => {}
                    }
                }
            }
        }
        let inv = sums.map(|s| _mm512_div_ps(_mm512_set1_ps(1.0), sum_tree(s)));
        for t in 0..=last {
            for r in (0..N).filter(|&r| lens[r] > 0) {
                // SAFETY: as above.
                unsafe {
                    match t.cmp(&whole[r]) {
                        std::cmp::Ordering::Less => {
                            let v = _mm512_loadu_ps(row(r, t));
                            _mm512_storeu_ps(row(r, t), _mm512_mul_ps(v, inv[r]));
                        }
                        std::cmp::Ordering::Equal => {
                            let v = _mm512_maskz_loadu_ps(tail[r], row(r, t));
                            _mm512_mask_storeu_ps(row(r, t), tail[r], _mm512_mul_ps(v, inv[r]));
                        }
                        std::cmp::Ordering::Greater => {}
                    }
                }
            }
        }
    }

    /// [`super::max_of_lanes`] in registers, broadcast to every lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn max_tree(v: __m512) -> __m512 {
        let pick =
            |a: __m512, b: __m512| _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, a), b);
        let v = pick(v, _mm512_shuffle_f32x4::<0b01_00_11_10>(v, v));
        let v = pick(v, _mm512_shuffle_f32x4::<0b10_11_00_01>(v, v));
        let v = pick(v, _mm512_permute_ps::<0b01_00_11_10>(v));
        let v = pick(v, _mm512_permute_ps::<0b10_11_00_01>(v));
        _mm512_permutexvar_ps(_mm512_setzero_si512(), v)
    }

    /// [`super::sum_of_lanes`] in registers, broadcast to every lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sum_tree(v: __m512) -> __m512 {
        let v = _mm512_add_ps(v, _mm512_shuffle_f32x4::<0b01_00_11_10>(v, v));
        let v = _mm512_add_ps(v, _mm512_shuffle_f32x4::<0b10_11_00_01>(v, v));
        let v = _mm512_add_ps(v, _mm512_permute_ps::<0b01_00_11_10>(v));
        let v = _mm512_add_ps(v, _mm512_permute_ps::<0b10_11_00_01>(v));
        _mm512_permutexvar_ps(_mm512_setzero_si512(), v)
    }

    /// `fast_exp` on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let k = FAST_EXP;
        let c = _mm512_set1_ps;
        // clamp: max(lo, x) then min(hi, ·) keeps a NaN x (the second
        // operand is returned when one is NaN), as f32::clamp does.
        let x = _mm512_min_ps(c(k.hi), _mm512_max_ps(c(k.lo), x));
        let t = _mm512_add_ps(_mm512_mul_ps(x, c(k.log2e)), c(k.shift));
        let n = _mm512_sub_ps(t, c(k.shift));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(x, _mm512_mul_ps(n, c(k.ln2_hi))),
            _mm512_mul_ps(n, c(k.ln2_lo)),
        );
        let mut p = c(k.poly[0]);
        for &q in &k.poly[1..] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), c(q));
        }
        let e = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
            c(1.0),
        );
        let ni = _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(k.shift.to_bits() as i32),
        );
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(ni, _mm512_set1_epi32(127)));
        _mm512_mul_ps(e, _mm512_castsi512_ps(bits))
    }

    /// `gelu_new_one` on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn gelu16(u: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        let cube = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c(0.044715), u), u), u);
        let arg = _mm512_mul_ps(c(crate::ops::GELU_C), _mm512_add_ps(u, cube));
        // fast_tanh(a) = 1 − 2 / (fast_exp(2a) + 1)
        let e = exp16(_mm512_mul_ps(c(2.0), arg));
        let tanh = _mm512_sub_ps(c(1.0), _mm512_div_ps(c(2.0), _mm512_add_ps(e, c(1.0))));
        _mm512_mul_ps(_mm512_mul_ps(c(0.5), u), _mm512_add_ps(c(1.0), tanh))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_new_into(src: &[f32], dst: &mut [f32]) {
        let whole = src.len() / 16 * 16;
        for (s, d) in src[..whole]
            .chunks_exact(16)
            .zip(dst[..whole].chunks_exact_mut(16))
        {
            // SAFETY: 16 f32 each (chunks_exact); unaligned loads/stores.
            unsafe { _mm512_storeu_ps(d.as_mut_ptr(), gelu16(_mm512_loadu_ps(s.as_ptr()))) };
        }
        for (o, &u) in dst[whole..].iter_mut().zip(&src[whole..]) {
            *o = gelu_new_one(u);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_new_in_place(x: &mut [f32]) {
        let whole = x.len() / 16 * 16;
        for ch in x[..whole].chunks_exact_mut(16) {
            // SAFETY: 16 f32 (chunks_exact).
            unsafe { _mm512_storeu_ps(ch.as_mut_ptr(), gelu16(_mm512_loadu_ps(ch.as_ptr()))) };
        }
        for v in x[whole..].iter_mut() {
            *v = gelu_new_one(*v);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn swiglu_into(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let whole = out.len() / 16 * 16;
        let c = _mm512_set1_ps;
        for ((g, u), o) in gate[..whole]
            .chunks_exact(16)
            .zip(up[..whole].chunks_exact(16))
            .zip(out[..whole].chunks_exact_mut(16))
        {
            // SAFETY: 16 f32 each (chunks_exact).
            unsafe {
                let a = _mm512_loadu_ps(g.as_ptr());
                // a / (1 + fast_exp(−a)) · u; −a flips the sign bit.
                let neg = _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(a),
                    _mm512_set1_epi32(i32::MIN),
                ));
                let s = _mm512_div_ps(a, _mm512_add_ps(c(1.0), exp16(neg)));
                _mm512_storeu_ps(
                    o.as_mut_ptr(),
                    _mm512_mul_ps(s, _mm512_loadu_ps(u.as_ptr())),
                );
            }
        }
        for ((o, &a), &u) in out[whole..]
            .iter_mut()
            .zip(&gate[whole..])
            .zip(&up[whole..])
        {
            *o = swiglu_one(a, u);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn exp_sub_in_place(x: &mut [f32], m: f32) {
        let whole = x.len() / 16 * 16;
        let mv = _mm512_set1_ps(m);
        for ch in x[..whole].chunks_exact_mut(16) {
            // SAFETY: 16 f32 (chunks_exact).
            unsafe {
                let v = _mm512_sub_ps(_mm512_loadu_ps(ch.as_ptr()), mv);
                _mm512_storeu_ps(ch.as_mut_ptr(), exp16(v));
            }
        }
        for s in x[whole..].iter_mut() {
            *s = fast_exp(*s - m);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The 16-lane softmax of the attention kernel on AVX2: lanes 0–7 of
    //! each 16-lane vector in one ymm, lanes 8–15 in another; every lane
    //! runs the scalar form's operations in its order (as `super::avx512`).
    use crate::ops::FAST_EXP;
    use std::arch::x86_64::*;

    /// A 16-lane vector as two halves.
    #[derive(Clone, Copy)]
    struct V16 {
        lo: __m256,
        hi: __m256,
    }

    /// Which lanes of a row's last (partial) vector are live: all for a
    /// whole vector (`tail` = 16), the first `tail` otherwise.
    #[derive(Clone, Copy)]
    struct Mask {
        lo: __m256i,
        hi: __m256i,
    }

    impl Mask {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn first(tail: usize) -> Mask {
            let t = _mm256_set1_epi32(tail as i32);
            Mask {
                lo: _mm256_cmpgt_epi32(t, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                hi: _mm256_cmpgt_epi32(t, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)),
            }
        }
    }

    /// Loads 16 values, `fill` in the lanes `m` leaves out.
    ///
    /// # Safety
    /// avx2; the live lanes of `p` are readable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32, m: Mask, fill: __m256) -> V16 {
        // SAFETY: maskload reads only the live lanes (caller).
        let (lo, hi) = unsafe {
            (
                _mm256_maskload_ps(p, m.lo),
                _mm256_maskload_ps(p.add(8), m.hi),
            )
        };
        V16 {
            lo: _mm256_blendv_ps(fill, lo, _mm256_castsi256_ps(m.lo)),
            hi: _mm256_blendv_ps(fill, hi, _mm256_castsi256_ps(m.hi)),
        }
    }

    /// Stores the live lanes of `v`.
    ///
    /// # Safety
    /// avx2; the live lanes of `p` are writable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(p: *mut f32, m: Mask, v: V16) {
        // SAFETY: maskstore writes only the live lanes (caller).
        unsafe {
            _mm256_maskstore_ps(p, m.lo, v.lo);
            _mm256_maskstore_ps(p.add(8), m.hi, v.hi);
        }
    }

    /// `super::avx512::softmax_rows_in_place` on two ymm per vector.
    ///
    /// # Safety
    /// avx2 and fma; each row with `lens[r] > 0` is valid for `lens[r]`
    /// reads and writes and no other reference to it is live.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_rows_in_place<const N: usize>(
        x: *mut f32,
        stride: usize,
        lens: [usize; N],
    ) {
        // Vector t of row r covers values 16t..16t + 16; the last one of a
        // row with a tail is partial. `count[r]` vectors in all.
        let count = lens.map(|l| l.div_ceil(16));
        let Some(last) = count.iter().copied().max().filter(|&c| c > 0) else {
            return;
        };
        let mask = |r: usize, t: usize| Mask::first((lens[r] - 16 * t).min(16));
        let row = |r: usize, t: usize| x.wrapping_add(r * stride + 16 * t);
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut mx = [V16 {
            lo: neg_inf,
            hi: neg_inf,
        }; N];
        for t in 0..last {
            for r in (0..N).filter(|&r| t < count[r]) {
                // SAFETY: the live lanes of vector t of a live row.
                let v = unsafe { load(row(r, t), mask(r, t), neg_inf) };
                // (v > mx) ? v : mx, as the AVX-512 form's masked move.
                mx[r] = V16 {
                    lo: _mm256_max_ps(v.lo, mx[r].lo),
                    hi: _mm256_max_ps(v.hi, mx[r].hi),
                };
            }
        }
        let m = mx.map(|v| max_tree(v));
        let zero = _mm256_setzero_ps();
        let mut sums = [V16 { lo: zero, hi: zero }; N];
        for t in 0..last {
            for r in (0..N).filter(|&r| t < count[r]) {
                let k = mask(r, t);
                // SAFETY: as above; dead lanes read as zero, as the
                // AVX-512 form's zero-masked load, and are not stored.
                unsafe {
                    let v = load(row(r, t), k, zero);
                    let e = V16 {
                        lo: exp8(_mm256_sub_ps(v.lo, m[r])),
                        hi: exp8(_mm256_sub_ps(v.hi, m[r])),
                    };
                    store(row(r, t), k, e);
                    // The masked add: dead lanes keep their sum.
                    let s = sums[r];
                    sums[r] = V16 {
                        lo: _mm256_blendv_ps(
                            s.lo,
                            _mm256_add_ps(s.lo, e.lo),
                            _mm256_castsi256_ps(k.lo),
                        ),
                        hi: _mm256_blendv_ps(
                            s.hi,
                            _mm256_add_ps(s.hi, e.hi),
                            _mm256_castsi256_ps(k.hi),
                        ),
                    };
                }
            }
        }
        let inv = sums.map(|s| _mm256_div_ps(_mm256_set1_ps(1.0), sum_tree(s)));
        for t in 0..last {
            for r in (0..N).filter(|&r| t < count[r]) {
                let k = mask(r, t);
                // SAFETY: as above.
                unsafe {
                    let v = load(row(r, t), k, zero);
                    let p = V16 {
                        lo: _mm256_mul_ps(v.lo, inv[r]),
                        hi: _mm256_mul_ps(v.hi, inv[r]),
                    };
                    store(row(r, t), k, p);
                }
            }
        }
    }

    /// `(b > a) ? b : a`: lane i takes lane i + h when that is greater.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn pick(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(b, a)
    }

    /// [`super::max_of_lanes`] (h = 8, 4, 2, 1), broadcast to every lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn max_tree(v: V16) -> __m256 {
        let w = pick(v.lo, v.hi);
        let w = pick(w, _mm256_permute2f128_ps::<0x01>(w, w));
        let w = pick(w, _mm256_permute_ps::<0b01_00_11_10>(w));
        let w = pick(w, _mm256_permute_ps::<0b10_11_00_01>(w));
        _mm256_permutevar8x32_ps(w, _mm256_setzero_si256())
    }

    /// [`super::sum_of_lanes`] (h = 8, 4, 2, 1), broadcast to every lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum_tree(v: V16) -> __m256 {
        let w = _mm256_add_ps(v.lo, v.hi);
        let w = _mm256_add_ps(w, _mm256_permute2f128_ps::<0x01>(w, w));
        let w = _mm256_add_ps(w, _mm256_permute_ps::<0b01_00_11_10>(w));
        let w = _mm256_add_ps(w, _mm256_permute_ps::<0b10_11_00_01>(w));
        _mm256_permutevar8x32_ps(w, _mm256_setzero_si256())
    }

    /// `fast_exp` on 8 lanes (`super::avx512`'s `exp16`, op for op).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let k = FAST_EXP;
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(c(k.hi), _mm256_max_ps(c(k.lo), x));
        let t = _mm256_add_ps(_mm256_mul_ps(x, c(k.log2e)), c(k.shift));
        let n = _mm256_sub_ps(t, c(k.shift));
        let r = _mm256_sub_ps(
            _mm256_sub_ps(x, _mm256_mul_ps(n, c(k.ln2_hi))),
            _mm256_mul_ps(n, c(k.ln2_lo)),
        );
        let mut p = c(k.poly[0]);
        for &q in &k.poly[1..] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), c(q));
        }
        let e = _mm256_add_ps(
            _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r),
            c(1.0),
        );
        let ni = _mm256_sub_epi32(
            _mm256_castps_si256(t),
            _mm256_set1_epi32(k.shift.to_bits() as i32),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(ni, _mm256_set1_epi32(127)));
        _mm256_mul_ps(e, _mm256_castsi256_ps(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Inputs of every class: wide and narrow normals, both clamp edges
    /// of `fast_exp` and beyond, signed zeros, subnormals, infinities,
    /// NaN; 1003 values, so every loop has a tail.
    pub(super) fn inputs() -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut v: Vec<f32> = (0..960)
            .map(|i| {
                let scale = [0.1f32, 1.0, 5.0, 30.0, 100.0][i % 5];
                (rng.random::<f32>() * 2.0 - 1.0) * scale
            })
            .collect();
        v.extend([
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            87.3,
            -87.3,
            88.3,
            -88.3,
            1000.0,
            -1000.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
        ]);
        v.extend((0..27).map(|i| i as f32 * 0.37 - 5.0));
        v
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// The widths to compare against the scalar loops (only those here).
    fn widths() -> Vec<Width> {
        [Width::Avx512]
            .into_iter()
            .filter(|w| w.available())
            .collect()
    }

    #[test]
    fn every_width_gives_the_scalar_bits() {
        let x = inputs();
        let up: Vec<f32> = x.iter().rev().copied().collect();
        let run = |w: Width| {
            let mut gelu = vec![0.0; x.len()];
            gelu_new_into(w, &x, &mut gelu);
            let mut in_place = x.clone();
            gelu_new_in_place(w, &mut in_place);
            let mut swiglu = vec![0.0; x.len()];
            swiglu_into(w, &x, &up, &mut swiglu);
            let mut exp = x.clone();
            exp_sub_in_place(w, &mut exp, 1.5);
            // Rows of every length up to 40 (each tail), over finite
            // inputs, and one over everything (NaN, infinities).
            let mut soft: Vec<f32> = x.iter().map(|v| v.clamp(-50.0, 50.0)).collect();
            let mut at = 0;
            for len in 0..41 {
                softmax_in_place(w, &mut soft[at..at + len]);
                at += len;
            }
            softmax_in_place(w, &mut soft[at..]);
            [gelu, in_place, swiglu, exp, soft]
        };
        let want = run(Width::Scalar);
        // The scalar loops are the scalar functions.
        assert!(same_bits(
            &want[0],
            &x.iter().map(|&u| gelu_new_one(u)).collect::<Vec<_>>()
        ));
        assert!(same_bits(&want[0], &want[1]));
        for w in widths() {
            for (name, (g, e)) in [
                "gelu_new_into",
                "gelu_new_in_place",
                "swiglu_into",
                "exp_sub_in_place",
                "softmax_in_place",
            ]
            .iter()
            .zip(run(w).iter().zip(&want))
            {
                let bad = g
                    .iter()
                    .zip(e)
                    .position(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()));
                assert!(
                    bad.is_none(),
                    "{w:?} {name}: input {:?} gives {:?}, scalar {:?}",
                    bad.map(|i| x[i]),
                    bad.map(|i| g[i]),
                    bad.map(|i| e[i])
                );
            }
        }
    }
}

#[cfg(test)]
mod softmax_rows_tests {
    use super::*;

    /// The AVX2 rows softmax over the same inputs as
    /// `every_width_gives_the_scalar_bits` (rows of every length up to 40
    /// over finite values, then one row over everything: NaN, infinities,
    /// subnormals, the clamp edges), one row per call: the scalar bits
    /// (NaN for NaN).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_rows_give_the_scalar_bits_on_every_input_class() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let x = tests::inputs();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let finite: Vec<f32> = x.iter().map(|v| v.clamp(-50.0, 50.0)).collect();
        let mut at = 0;
        for len in 0..41 {
            rows.push(finite[at..at + len].to_vec());
            at += len;
        }
        rows.push(finite[at..].to_vec());
        rows.push(x.clone());
        for row in rows {
            let mut want = row.clone();
            softmax_in_place(Width::Scalar, &mut want);
            let mut got = row.clone();
            // SAFETY: avx2 and fma (checked); one row of `got.len()` values.
            unsafe { softmax_rows_avx2::<1>(got.as_mut_ptr(), got.len(), [got.len()]) };
            let bad = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()));
            assert!(bad.is_none(), "length {}: index {bad:?}", row.len());
        }
    }
}

#[cfg(test)]
mod softmax_tests {
    use super::*;

    /// Against an f64 softmax, on rows of several lengths and scales.
    #[test]
    fn softmax_matches_f64() {
        for len in [1usize, 2, 15, 16, 17, 33, 100, 128] {
            for scale in [0.1f32, 3.0, 30.0] {
                let x: Vec<f32> = (0..len)
                    .map(|j| ((j * 37 % 23) as f32 / 11.0 - 1.0) * scale)
                    .collect();
                let m = x.iter().fold(f64::MIN, |a, &b| a.max(b as f64));
                let z: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
                for w in [Width::Scalar, Width::Avx512] {
                    if !w.available() {
                        continue;
                    }
                    let mut got = x.clone();
                    softmax_in_place(w, &mut got);
                    for (g, &v) in got.iter().zip(&x) {
                        let want = (v as f64 - m).exp() / z;
                        assert!(
                            (*g as f64 - want).abs() < 1e-6,
                            "{w:?} len {len} scale {scale}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The eight-row lockstep softmax gives each row the bits of the
    /// one-row form (the scalar form's, by the tests above), rows of
    /// different lengths (whole vectors, tails, none) side by side, and
    /// leaves every value past a row's length alone.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn softmax_rows_match_one_row_at_a_time() {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if !Width::Avx512.available() && !avx2 {
            return;
        }
        let stride = 70;
        for lens in [
            [1, 2, 3, 4, 5, 6, 7, 8],
            [16, 17, 31, 32, 33, 0, 48, 64],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [64, 63, 0, 15, 1, 47, 49, 70],
        ] {
            let x: Vec<f32> = (0..8 * stride)
                .map(|i| ((i * 37 % 101) as f32 / 13.0 - 4.0) * if i % 9 == 0 { 20.0 } else { 1.0 })
                .collect();
            // The scalar form's bits, which the one-row AVX-512 form has
            // (tested above).
            let mut want = x.clone();
            for (r, &l) in lens.iter().enumerate() {
                softmax_in_place(Width::Scalar, &mut want[r * stride..r * stride + l]);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            if Width::Avx512.available() {
                let mut got = x.clone();
                // SAFETY: avx512f (checked); each row of `got` holds
                // `stride` ≥ lens[r] values.
                unsafe { softmax_rows_avx512(got.as_mut_ptr(), stride, lens) };
                assert_eq!(bits(&got), bits(&want), "avx512, lengths {lens:?}");
            }
            if avx2 {
                let mut got = x.clone();
                // SAFETY: avx2 and fma (checked); as above.
                unsafe { softmax_rows_avx2(got.as_mut_ptr(), stride, lens) };
                assert_eq!(bits(&got), bits(&want), "avx2, lengths {lens:?}");
            }
        }
    }
}
