//! Numerical kernels of the forward pass on plain row-major `f32` slices.
//!
//! The blocks' f32 dense products ([`Linear`]) run on the packed kernel
//! of `saelab_kernels::f32gemm` where the CPU has avx512f or avx2 + fma (W
//! packed once per model; 4–23 % faster than the `gemm` crate on the
//! forward's shapes in `bench/gemm.sh` on the Xeon, session 13, 1–28 % on
//! Zen 3, session 18; bench/RESULTS.md), elsewhere (and for the other
//! products, [`matmul`]) through the `gemm` crate (runtime-dispatched SIMD). The
//! element-wise loops (norms, GELU, SiLU, softmax, RoPE) are hand-written so
//! they fuse and auto-vectorize: they use a branch-free polynomial `exp`
//! (`fast_exp`, ≈ 2 ulp) instead of libm, which the compiler cannot vectorize
//! and which would otherwise cost a third of a GPT-2 forward pass. On
//! AVX-512 CPUs GELU, SwiGLU and softmax's exponentials run through
//! [`crate::simd`] (zmm by hand, the same bits), since the compiler keeps
//! Intel server CPUs on 256-bit vectors. Causal attention at head width 64
//! runs a hand-written kernel on AVX-512 or AVX2 + FMA ([`AttnPath`]).

use crate::bf16::{gemm_bf16, gemm_bf16_rows, Bf16Rows, PackedBf16};
use crate::simd::{self, Width};
use gemm::Parallelism;
use rayon::prelude::*;
use saelab_kernels::f32gemm::{self, PackedF32};

/// Rows of the activation matrix per rayon task in element-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// Layout of a weight matrix used as the right operand of `y = x·W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Stored `[in, out]` row-major (HF GPT-2 `Conv1D`).
    InOut,
    /// Stored `[out, in]` row-major (`nn.Linear`, GGUF).
    OutIn,
}

/// Arithmetic of the dense products of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere (the default for research runs).
    #[default]
    F32,
    /// Weight matrices and their inputs rounded to bf16, products
    /// accumulated in f32 (AVX512_BF16 when available); norms, attention
    /// scores, softmax and the residual stream stay f32. See [`crate::bf16`].
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// A dense affine map `y = x·W + b`.
///
/// The f32 weights are held once: packed for [`f32gemm::gemm_f32`] where
/// that kernel runs (avx512f, or avx2 + fma), else as loaded, for the
/// `gemm` crate. In
/// bf16 precision a bf16 copy packed for [`crate::bf16::gemm_bf16`] is
/// made from them and the products run on it; the f32 weights stay, so
/// [`Linear::set_precision`] can switch back.
#[derive(Debug, Clone)]
pub struct Linear {
    w: F32Weights,
    b: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
    /// bf16 copy of the weights, set in bf16 precision.
    packed: Option<PackedBf16>,
}

/// A [`Linear`]'s f32 weights, in one form.
#[derive(Debug, Clone)]
enum F32Weights {
    /// As loaded, in `layout`: the `gemm` crate's operand.
    Plain { w: Vec<f32>, layout: Layout },
    /// Packed for [`f32gemm::gemm_f32`].
    Packed(PackedF32),
}

impl Linear {
    /// A map with f32 weights `w` stored in `layout`.
    pub fn new(
        w: Vec<f32>,
        b: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
        layout: Layout,
    ) -> Self {
        let (k, n) = (in_dim, out_dim);
        let w = if f32gemm::available() {
            F32Weights::Packed(match layout {
                Layout::InOut => PackedF32::from_in_out(&w, k, n),
                Layout::OutIn => PackedF32::from_out_in(&w, k, n),
            })
        } else {
            F32Weights::Plain { w, layout }
        };
        Linear {
            w,
            b,
            in_dim,
            out_dim,
            packed: None,
        }
    }

    /// Switches the products to `precision`: bf16 packs a bf16 copy of
    /// the f32 weights, f32 drops it.
    pub fn set_precision(&mut self, precision: Precision) {
        let (k, n) = (self.in_dim, self.out_dim);
        self.packed = match precision {
            Precision::F32 => None,
            Precision::Bf16 => Some(match &self.w {
                F32Weights::Plain {
                    w,
                    layout: Layout::InOut,
                } => PackedBf16::from_in_out(w, k, n),
                F32Weights::Plain {
                    w,
                    layout: Layout::OutIn,
                } => PackedBf16::from_out_in(w, k, n),
                F32Weights::Packed(p) => PackedBf16::from_in_out(&p.to_in_out(), k, n),
            }),
        };
    }

    /// `y[n, out] = x[n, in]·W (+ b)`; when `accumulate`, adds to `y` instead.
    pub fn forward_into(&self, x: &[f32], n: usize, y: &mut [f32], accumulate: bool) {
        debug_assert_eq!(x.len(), n * self.in_dim);
        debug_assert_eq!(y.len(), n * self.out_dim);
        if let Some(p) = &self.packed {
            gemm_bf16(n, x, p, y, accumulate);
            self.add_bias(y);
            return;
        }
        match &self.w {
            F32Weights::Packed(p) => {
                // The bias joins in the kernel's last store: the same bits
                // as the separate pass, without reading `y` again.
                f32gemm::gemm_f32(n, x, p, self.b.as_deref(), y, accumulate);
            }
            F32Weights::Plain { w, layout } => {
                let (rs, cs) = match layout {
                    Layout::InOut => (self.out_dim as isize, 1),
                    Layout::OutIn => (1, self.in_dim as isize),
                };
                matmul(
                    n,
                    self.out_dim,
                    self.in_dim,
                    MatRef::new(x, self.in_dim as isize, 1),
                    MatRef::new(w, rs, cs),
                    y,
                    accumulate,
                    true,
                );
                self.add_bias(y);
            }
        }
    }

    /// [`Linear::forward_into`] from rows already rounded to bf16 (by a
    /// norm or an activation that wrote [`Bf16Rows`]): the same bits as
    /// `forward_into` on the f32 rows they were rounded from, without
    /// reading those back.
    ///
    /// Panics unless the map runs in bf16 ([`Linear::set_precision`]).
    pub fn forward_rows_into(&self, x: &Bf16Rows, y: &mut [f32], accumulate: bool) {
        let p = self
            .packed
            .as_ref()
            .expect("forward_rows_into needs bf16 precision");
        gemm_bf16_rows(x, p, y, accumulate);
        self.add_bias(y);
    }

    /// Whether [`Linear::forward_serial_into`] runs: f32 products on
    /// weights packed for [`f32gemm`].
    pub fn runs_serial(&self) -> bool {
        self.packed.is_none() && matches!(self.w, F32Weights::Packed(_))
    }

    /// [`Linear::forward_into`] on the calling thread (for a caller that
    /// runs its own tasks over blocks of rows): the same bits.
    ///
    /// Panics unless [`Linear::runs_serial`].
    pub fn forward_serial_into(&self, x: &[f32], n: usize, y: &mut [f32], accumulate: bool) {
        match (&self.w, &self.packed) {
            (F32Weights::Packed(p), None) => {
                f32gemm::gemm_f32_serial(n, x, p, self.b.as_deref(), y, accumulate)
            }
            _ => panic!("forward_serial_into needs f32 products on packed weights"),
        }
    }

    /// Whether the products run in bf16 (a packed copy is set).
    pub fn is_bf16(&self) -> bool {
        self.packed.is_some()
    }

    fn add_bias(&self, y: &mut [f32]) {
        // The bias goes in a separate pass: `gemm` is markedly slower when
        // it must read the destination for short inner dimensions.
        if let Some(b) = &self.b {
            y.par_chunks_mut(self.out_dim * ROWS_PER_TASK)
                .for_each(|rows| {
                    for row in rows.chunks_exact_mut(self.out_dim) {
                        for (o, bb) in row.iter_mut().zip(b) {
                            *o += bb;
                        }
                    }
                });
        }
    }

    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * self.out_dim];
        self.forward_into(x, n, &mut y, false);
        y
    }
}

/// A strided view of a matrix: element (i, j) at `data[i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: isize,
    pub cs: isize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rs: isize, cs: isize) -> Self {
        MatRef { data, rs, cs }
    }
}

/// `c[m, n] (+)= a[m, k]·b[k, n]` with `c` row-major, contiguous.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    assert!(c.len() >= m * n, "matmul: output too small");
    check_extent(a, m, k);
    check_extent(b, k, n);
    #[cfg(feature = "openblas")]
    if parallel {
        if let Some(()) = blas::sgemm(m, n, k, a, b, c, accumulate) {
            return;
        }
    }
    let par = if parallel && m * n * k > 64 * 64 * 64 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: extents checked above; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(feature = "openblas")]
mod blas {
    //! `cblas_sgemm` from the system OpenBLAS, for views with one unit stride.
    use super::MatRef;
    const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;
    #[link(name = "openblas")]
    extern "C" {
        #[allow(clippy::too_many_arguments)]
        fn cblas_sgemm(
            order: i32,
            ta: i32,
            tb: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
    }
    fn op(x: MatRef<'_>) -> Option<(i32, i32)> {
        if x.cs == 1 {
            Some((NO_TRANS, x.rs as i32))
        } else if x.rs == 1 {
            Some((TRANS, x.cs as i32))
        } else {
            None
        }
    }
    /// None when a view has no unit stride (the caller falls back).
    pub fn sgemm(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<'_>,
        b: MatRef<'_>,
        c: &mut [f32],
        acc: bool,
    ) -> Option<()> {
        let (ta, lda) = op(a)?;
        let (tb, ldb) = op(b)?;
        if m.max(n).max(k) > i32::MAX as usize / 2 {
            return None;
        }
        // SAFETY: extents were checked by the caller; c is exclusively borrowed.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                ta,
                tb,
                m as i32,
                n as i32,
                k as i32,
                1.0,
                a.data.as_ptr(),
                lda.max(1),
                b.data.as_ptr(),
                ldb.max(1),
                if acc { 1.0 } else { 0.0 },
                c.as_mut_ptr(),
                n.max(1) as i32,
            );
        }
        Some(())
    }
}

fn check_extent(a: MatRef<'_>, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows as isize - 1) * a.rs + (cols as isize - 1) * a.cs;
    assert!(
        a.rs >= 0 && a.cs >= 0 && (last as usize) < a.data.len(),
        "matmul: operand view out of bounds"
    );
}

/// Raw `gemm` into a strided destination, single-threaded (for use inside
/// rayon tasks). `c(i,j)` at `c[i*c_rs + j]`.
///
/// # Safety
/// All views must be in bounds for the given extents and `c` must not alias
/// `a` or `b` or be written concurrently in the touched region.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
    c: *mut f32,
    c_rs: isize,
    alpha_scale: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        c_rs,
        false,
        a,
        a_cs,
        a_rs,
        b,
        b_cs,
        b_rs,
        0.0,
        alpha_scale,
        false,
        false,
        false,
        Parallelism::None,
    );
}

/// exp(x) for f32, branch-free so loops over it vectorize. Relative error
/// below 3e-7 on [-87, 88]; saturates outside.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let k = FAST_EXP;
    let x = x.clamp(k.lo, k.hi);
    // Adding 1.5·2^23 rounds x·log2(e) to an integer (ties to even) that
    // then sits in the low mantissa bits: no `round` and no float-to-int
    // conversion, which kept this loop scalar (both are vector-friendly
    // this way; |x·log2(e)| ≤ 128 is far inside the trick's range).
    let t = x * k.log2e + k.shift;
    let n = t - k.shift;
    let r = x - n * k.ln2_hi - n * k.ln2_lo;
    // Cephes expf polynomial on |r| <= ln2/2.
    let mut p = k.poly[0];
    for &q in &k.poly[1..] {
        p = p * r + q;
    }
    let e = p * r * r + r + 1.0;
    let ni = (t.to_bits() as i32).wrapping_sub(k.shift.to_bits() as i32);
    let bits = ((ni + 127) as u32) << 23;
    e * f32::from_bits(bits)
}

/// The constants of [`fast_exp`], shared with its AVX-512 form
/// ([`crate::simd`]), which repeats its operations lane by lane.
#[derive(Clone, Copy)]
pub(crate) struct FastExp {
    pub(crate) lo: f32,
    pub(crate) hi: f32,
    pub(crate) log2e: f32,
    pub(crate) ln2_hi: f32,
    pub(crate) ln2_lo: f32,
    /// 1.5·2^23: adding it rounds to an integer (see `fast_exp`).
    pub(crate) shift: f32,
    /// Cephes expf coefficients, highest degree first.
    pub(crate) poly: [f32; 6],
}

pub(crate) const FAST_EXP: FastExp = FastExp {
    lo: -87.3,
    hi: 88.3,
    log2e: std::f32::consts::LOG2_E,
    ln2_hi: 0.693_359_4,
    ln2_lo: -2.121_944_4e-4,
    shift: 12_582_912.0,
    poly: [
        1.987_569_1e-4,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ],
};

/// tanh via exp, branch-free.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * x) + 1.0)
}

/// GPT-2's `gelu_new` (tanh approximation), in place.
pub fn gelu_new(x: &mut [f32]) {
    let width = Width::best();
    x.par_chunks_mut(4096)
        .for_each(|ch| simd::gelu_new_in_place(width, ch));
}

/// √(2/π), `gelu_new`'s constant.
pub(crate) const GELU_C: f32 = 0.797_884_6;

/// `gelu_new` of one value.
#[inline(always)]
pub fn gelu_new_one(u: f32) -> f32 {
    0.5 * u * (1.0 + fast_tanh(GELU_C * (u + 0.044715 * u * u * u)))
}

/// [`gelu_new`] of the rows of `x` (width `out.k()`), rounded into `out`
/// for a bf16 product: the values `gelu_new` computes, then rounded.
pub fn gelu_new_bf16(x: &[f32], out: &mut Bf16Rows) {
    let (f, width) = (out.k(), Width::best());
    out.fill_par(|r, row| simd::gelu_new_into(width, &x[r * f..(r + 1) * f], row));
}

/// SwiGLU: `h[r, j] = silu(gu[r, j]) * gu[r, f + j]` for rows of `gu`
/// holding gate then up (width `2f`).
pub fn swiglu_rows(gu: &[f32], f: usize, h: &mut [f32]) {
    h.par_chunks_mut(f)
        .zip(gu.par_chunks(2 * f))
        .for_each(|(hr, g)| swiglu_row(g, hr));
}

/// `h = swiglu(x·W)` for a `gate_up` map (gate columns, then up; `gu`
/// receives `x·W`), with the activation per block of rows where
/// [`runs_per_block`] says (the same bits either way).
pub fn gate_up_swiglu(gate_up: &Linear, x: &[f32], n: usize, gu: &mut [f32], h: &mut [f32]) {
    let (d, f2) = (gate_up.in_dim, gate_up.out_dim);
    let f = f2 / 2;
    if !runs_per_block(gate_up, n) {
        gate_up.forward_into(x, n, gu, false);
        swiglu_rows(gu, f, h);
        return;
    }
    x.par_chunks(ROW_BLOCK * d)
        .zip(gu.par_chunks_mut(ROW_BLOCK * f2))
        .zip(h.par_chunks_mut(ROW_BLOCK * f))
        .for_each(|((xb, gub), hb)| {
            gate_up.forward_serial_into(xb, xb.len() / d, gub, false);
            swiglu_rows_serial(gub, f, hb);
        });
}

/// `y = gelu_new(x·W + b)` (GPT-2's `c_fc` and its activation), per block
/// of rows where [`runs_per_block`] says (the same bits either way).
pub fn linear_gelu(lin: &Linear, x: &[f32], n: usize, y: &mut [f32]) {
    if !runs_per_block(lin, n) {
        lin.forward_into(x, n, y, false);
        gelu_new(y);
        return;
    }
    let width = Width::best();
    x.par_chunks(ROW_BLOCK * lin.in_dim)
        .zip(y.par_chunks_mut(ROW_BLOCK * lin.out_dim))
        .for_each(|(xb, yb)| {
            lin.forward_serial_into(xb, xb.len() / lin.in_dim, yb, false);
            simd::gelu_new_in_place(width, yb);
        });
}

/// Whether a product and the activation after it run per block of
/// [`ROW_BLOCK`] rows on one thread, so that each block's product rows
/// are still in that core's caches when the activation reads them
/// (bench/RESULTS.md, session 16): f32 products on packed weights, and
/// enough blocks for the product's own task count (fewer would idle
/// threads).
fn runs_per_block(lin: &Linear, n: usize) -> bool {
    lin.runs_serial() && f32gemm::row_blocks_fill_threads(n)
}

/// Rows per task of [`runs_per_block`]: the f32 products' row task.
const ROW_BLOCK: usize = f32gemm::MC;

/// [`swiglu_rows`] on the calling thread.
fn swiglu_rows_serial(gu: &[f32], f: usize, h: &mut [f32]) {
    for (hr, g) in h.chunks_exact_mut(f).zip(gu.chunks_exact(2 * f)) {
        swiglu_row(g, hr);
    }
}

/// SwiGLU of one gate value `a` and its up value `u`: `silu(a)·u`.
#[inline(always)]
pub fn swiglu_one(a: f32, u: f32) -> f32 {
    a / (1.0 + fast_exp(-a)) * u
}

/// One row of [`swiglu_rows`]: `g` is gate then up.
#[inline(always)]
fn swiglu_row(g: &[f32], out: &mut [f32]) {
    let (gate, up) = g.split_at(out.len());
    simd::swiglu_into(Width::best(), gate, up, out);
}

/// [`swiglu_rows`] rounded into `out` (width `f = out.k()`) for a bf16
/// product: the same f32 values, then rounded.
pub fn swiglu_rows_bf16(gu: &[f32], out: &mut Bf16Rows) {
    let f = out.k();
    out.fill_par(|r, row| swiglu_row(&gu[r * 2 * f..(r + 1) * 2 * f], row));
}

/// LayerNorm over rows of width `d` (biased variance), into `out`.
pub fn layer_norm(x: &[f32], d: usize, w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_exact_mut(d).zip(xi.chunks_exact(d)) {
                layer_norm_row(xrow, w, b, eps, orow);
            }
        });
}

/// `Σ f(x)` in 16 lanes (lane l sums the elements ≡ l mod 16 in order,
/// then the lanes and the tail are added in order): one dependent add per
/// 16 elements, so the loop vectorizes. A plain `iter().sum()` is one
/// dependent add per element and held LayerNorm / RMSNorm at ≈ 0.8 ns per
/// element (bench/RESULTS.md, session 9).
#[inline(always)]
fn sum_lanes(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let whole = x.chunks_exact(L);
    let tail: f32 = whole.remainder().iter().map(|&v| f(v)).sum();
    for c in whole {
        for l in 0..L {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn layer_norm_row(xrow: &[f32], w: &[f32], b: &[f32], eps: f32, orow: &mut [f32]) {
    let d = xrow.len();
    let mean = sum_lanes(xrow, |v| v) / d as f32;
    let var = sum_lanes(xrow, |v| (v - mean) * (v - mean)) / d as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for j in 0..d {
        orow[j] = (xrow[j] - mean) * inv * w[j] + b[j];
    }
}

/// [`layer_norm`] rounded into `out` (width `d = out.k()`) for a bf16
/// product: the same f32 values, then rounded.
pub fn layer_norm_bf16(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut Bf16Rows) {
    let d = out.k();
    out.fill_par(|r, row| layer_norm_row(&x[r * d..(r + 1) * d], w, b, eps, row));
}

/// RMSNorm over rows of width `d`, into `out`.
pub fn rms_norm(x: &[f32], d: usize, w: &[f32], eps: f32, out: &mut [f32]) {
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(o, xi)| {
            for (orow, xrow) in o.chunks_exact_mut(d).zip(xi.chunks_exact(d)) {
                rms_norm_row(xrow, w, eps, orow);
            }
        });
}

#[inline(always)]
fn rms_norm_row(xrow: &[f32], w: &[f32], eps: f32, orow: &mut [f32]) {
    let d = xrow.len();
    let ms = sum_lanes(xrow, |v| v * v) / d as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for j in 0..d {
        orow[j] = xrow[j] * inv * w[j];
    }
}

/// [`rms_norm`] rounded into `out` (width `d = out.k()`) for a bf16
/// product: the same f32 values, then rounded.
pub fn rms_norm_bf16(x: &[f32], w: &[f32], eps: f32, out: &mut Bf16Rows) {
    let d = out.k();
    out.fill_par(|r, row| rms_norm_row(&x[r * d..(r + 1) * d], w, eps, row));
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(8192)
        .zip(y.par_chunks(8192))
        .for_each(|(a, b)| {
            for (u, v) in a.iter_mut().zip(b) {
                *u += v;
            }
        });
}

/// How rotary position embedding pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): GGUF's permuted q/k rows (llama.cpp "norm" mode).
    Interleaved,
    /// Pairs (i, i + hd/2): HF `rotate_half`.
    Half,
}

/// Rotary tables: `cos[p*half + i]`, `sin[...]` for the given position ids.
pub fn rope_tables(positions: &[usize], head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = vec![0.0; positions.len() * half];
    let mut sin = vec![0.0; positions.len() * half];
    for (t, &p) in positions.iter().enumerate() {
        for i in 0..half {
            // Computed in f64 as the references do with f32 inv_freq, then
            // cast: keeps large positions accurate.
            let inv = 1.0 / (theta as f64).powf((2 * i) as f64 / head_dim as f64);
            let inv = inv as f32 as f64;
            let ang = p as f64 * inv;
            cos[t * half + i] = ang.cos() as f32;
            sin[t * half + i] = ang.sin() as f32;
        }
    }
    (cos, sin)
}

/// Applies RoPE in place to `x` = [batch*seq, n_heads*head_dim] (row stride
/// `stride`), position of row r = r % seq.
#[allow(clippy::too_many_arguments)]
pub fn apply_rope(
    x: &mut [f32],
    stride: usize,
    seq: usize,
    n_heads: usize,
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) {
    let half = head_dim / 2;
    // Rows in tasks of ROWS_PER_TASK, and zipped iterators in place of
    // indices: without bounds checks the rotations vectorize (the same
    // operations per element, so the same bits).
    x.par_chunks_mut(stride * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            for (i, row) in rows.chunks_mut(stride).enumerate() {
                let t = (task * ROWS_PER_TASK + i) % seq;
                let c = &cos[t * half..(t + 1) * half];
                let s = &sin[t * half..(t + 1) * half];
                for hv in row[..n_heads * head_dim].chunks_exact_mut(head_dim) {
                    rotate(hv, c, s, style);
                }
            }
        });
}

/// One head's rotation by the angles whose cosines and sines are `c`, `s`.
#[inline(always)]
fn rotate(hv: &mut [f32], c: &[f32], s: &[f32], style: RopeStyle) {
    match style {
        RopeStyle::Interleaved => {
            for ((p, &c), &s) in hv.chunks_exact_mut(2).zip(c).zip(s) {
                let (a, b) = (p[0], p[1]);
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
        RopeStyle::Half => {
            let (lo, hi) = hv.split_at_mut(c.len());
            for (((a, b), &c), &s) in lo.iter_mut().zip(hi.iter_mut()).zip(c).zip(s) {
                let (x, y) = (*a, *b);
                *a = x * c - y * s;
                *b = x * s + y * c;
            }
        }
    }
}

/// Shape of a causal multi-head attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    /// Tasks of an attention call: one per (sequence, head).
    fn tasks(&self) -> usize {
        self.batch * self.n_heads
    }

    /// Where task `t` (sequence `t / n_heads`, head `t % n_heads`) starts:
    /// its first query value, key / value value (its kv head under GQA)
    /// and output value.
    fn task_starts(&self, args: &AttnArgs, t: usize) -> (usize, usize, usize) {
        let (b, h) = (t / self.n_heads, t % self.n_heads);
        let kvh = h / (self.n_heads / self.n_kv_heads);
        let row0 = b * self.seq;
        (
            row0 * args.q_stride + h * self.head_dim,
            row0 * args.kv_stride + kvh * self.head_dim,
            row0 * args.out_stride + h * self.head_dim,
        )
    }
}

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Softmax of one row in place ([`simd::softmax_in_place`] on the best
/// width).
fn softmax_in_place(live: &mut [f32]) {
    simd::softmax_in_place(Width::best(), live);
}

/// Query rows per causal block of [`causal_attention`] (a hand-written
/// kernel in place of these `gemm` calls was tried in session 9 and ran
/// 7.2 ms against 5.6 ms for GPT-2's 16 × 12 heads: the kᵀ transpose and
/// register pressure ate the gain).
const ATTN_ROWS: usize = 32;

/// Causal softmax attention. Row r (= b*seq + t) of `q` holds head h at
/// `q[r*q_stride + h*hd ..]`; likewise `k`, `v` with `kv_stride` and kv head
/// `h / (n_heads / n_kv_heads)` (GQA). Writes `out[r*out_stride + h*hd ..]`.
///
/// At head width 64 each (sequence, head) runs the hand-written kernel of
/// `lm::attention` (private) where [`AttnPath::best`] names one; otherwise
/// the `gemm` crate's products in causal blocks.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    v: &[f32],
    kv_stride: usize,
    shape: AttnShape,
    out: &mut [f32],
    out_stride: usize,
) {
    let args = AttnArgs {
        q,
        q_stride,
        k,
        v,
        kv_stride,
        out_stride,
    };
    causal_attention_with(AttnPath::best(), &args, shape, out);
}

/// Which code runs [`causal_attention`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPath {
    /// The hand-written kernel on avx512f (head width 64 only).
    Avx512,
    /// The hand-written kernel on avx2 + fma (head width 64 only): the
    /// AVX-512 kernel's bits.
    Avx2,
    /// The `gemm` crate's products in causal blocks (any width).
    Gemm,
}

impl AttnPath {
    /// AVX-512 where [`Width::best`] is; otherwise AVX2 where the model's
    /// f32 products run the packed AVX2 kernel ([`f32gemm::f32_path`]), so
    /// that `SAELAB_SIMD=scalar` and `SAELAB_F32_PATH=gemm` give the `gemm`
    /// path here too; otherwise `gemm`.
    pub fn best() -> AttnPath {
        if Width::best() == Width::Avx512 {
            AttnPath::Avx512
        } else if f32gemm::f32_path() == Some(f32gemm::F32Path::Avx2) && AttnPath::Avx2.available()
        {
            AttnPath::Avx2
        } else {
            AttnPath::Gemm
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            AttnPath::Avx512 => crate::attention::Isa::Avx512.available(),
            AttnPath::Avx2 => crate::attention::Isa::Avx2.available(),
            AttnPath::Gemm => true,
        }
    }

    /// The hand-written kernel's instruction set, if this path has one.
    fn isa(self) -> Option<crate::attention::Isa> {
        match self {
            AttnPath::Avx512 => Some(crate::attention::Isa::Avx512),
            AttnPath::Avx2 => Some(crate::attention::Isa::Avx2),
            AttnPath::Gemm => None,
        }
    }
}

/// The inputs of [`causal_attention`] besides the shape and the output.
pub struct AttnArgs<'a> {
    pub q: &'a [f32],
    pub q_stride: usize,
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub kv_stride: usize,
    pub out_stride: usize,
}

/// [`causal_attention`] on `path` (the tests run every one); the `gemm`
/// path where `path` is not available or the head width is not 64.
pub fn causal_attention_with(path: AttnPath, args: &AttnArgs, shape: AttnShape, out: &mut [f32]) {
    check_attention(args, shape, out);
    match path.isa() {
        Some(isa) if path.available() && shape.head_dim == crate::attention::HEAD_DIM => {
            attention_kernel(isa, args, shape, out)
        }
        _ => attention_gemm(args, shape, out),
    }
}

/// Panics unless every row the shape names lies inside its slice.
fn check_attention(args: &AttnArgs, shape: AttnShape, out: &[f32]) {
    let AttnShape {
        batch,
        seq,
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    assert!(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    let rows = batch * seq;
    if rows == 0 {
        return;
    }
    assert!(args.q.len() >= (rows - 1) * args.q_stride + n_heads * hd);
    assert!(args.k.len() >= (rows - 1) * args.kv_stride + n_kv_heads * hd);
    assert!(args.v.len() >= (rows - 1) * args.kv_stride + n_kv_heads * hd);
    assert!(out.len() >= (rows - 1) * args.out_stride + n_heads * hd);
}

/// [`causal_attention`] through [`crate::attention`] on `isa`, one task
/// per (sequence, head).
fn attention_kernel(
    isa: crate::attention::Isa,
    args: &AttnArgs,
    shape: AttnShape,
    out: &mut [f32],
) {
    use crate::attention::{run, Scratch, Task};
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_ref = &out_ptr;
    (0..shape.tasks())
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, t| {
            let (q0, k0, o0) = shape.task_starts(args, t);
            let task = Task {
                q: args.q[q0..].as_ptr(),
                q_stride: args.q_stride,
                k: args.k[k0..].as_ptr(),
                v: args.v[k0..].as_ptr(),
                kv_stride: args.kv_stride,
                out: out_ref.0.wrapping_add(o0),
                out_stride: args.out_stride,
                seq: shape.seq,
            };
            // SAFETY: `isa` is available (checked by the caller); the rows
            // lie inside the slices (`check_attention`); each task writes its
            // own (sequence, head) block of `out`, disjoint from the others.
            unsafe { run(isa, &task, scratch) };
        });
}

/// [`causal_attention`] through the `gemm` crate, in causal blocks of
/// [`ATTN_ROWS`] query rows.
fn attention_gemm(args: &AttnArgs, shape: AttnShape, out: &mut [f32]) {
    let AttnArgs {
        q,
        q_stride,
        k,
        v,
        kv_stride,
        out_stride,
    } = *args;
    let (seq, hd) = (shape.seq, shape.head_dim);
    let scale = 1.0 / (hd as f32).sqrt();
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_ref = &out_ptr;
    (0..shape.tasks()).into_par_iter().for_each_init(
        || vec![0.0f32; seq * seq],
        |scores, task| {
            let (q0, k0, o0) = shape.task_starts(args, task);
            // Causal blocks: queries [r0, r1) see keys [0, r1) only, so
            // the products skip the masked upper blocks (10/16 of the full
            // work at seq 128).
            for r0 in (0..seq).step_by(ATTN_ROWS) {
                let r1 = (r0 + ATTN_ROWS).min(seq);
                let block = &mut scores[r0 * seq..r1 * seq];
                // SAFETY: bounds asserted above; each task writes its own
                // (batch, head) block of `out`, disjoint from every other.
                unsafe {
                    gemm_raw(
                        r1 - r0,
                        r1,
                        hd,
                        q.as_ptr().add(q0 + r0 * q_stride),
                        q_stride as isize,
                        1,
                        k.as_ptr().add(k0),
                        1,
                        kv_stride as isize,
                        block.as_mut_ptr(),
                        seq as isize,
                        scale,
                    );
                }
                for (i, row) in (r0..r1).zip(block.chunks_exact_mut(seq)) {
                    let (live, masked) = row[..r1].split_at_mut(i + 1);
                    softmax_in_place(live);
                    masked.fill(0.0);
                }
                // SAFETY: as above.
                unsafe {
                    gemm_raw(
                        r1 - r0,
                        hd,
                        r1,
                        block.as_ptr(),
                        seq as isize,
                        1,
                        v.as_ptr().add(k0),
                        kv_stride as isize,
                        1,
                        out_ref.0.add(o0 + r0 * out_stride),
                        out_stride as isize,
                        1.0,
                    );
                }
            }
        },
    );
}

/// Logits `[n, vocab]` = `h[n, d]·Wᵀ` for an unembedding `W` stored
/// `[vocab, d]` (tied embeddings included).
pub fn unembed(h: &[f32], w: &[f32], n: usize, d: usize, vocab: usize) -> Vec<f32> {
    let mut lg = vec![0.0f32; n * vocab];
    matmul(
        n,
        vocab,
        d,
        MatRef::new(h, d as isize, 1),
        MatRef::new(w, 1, d as isize),
        &mut lg,
        false,
        true,
    );
    lg
}

/// Per-token next-token cross entropy from logits `[batch*seq, vocab]`:
/// entry (b, t) for t < seq-1 is `logsumexp(logits[b,t]) - logits[b,t,tok[b,t+1]]`.
/// Computed in f64 so it can serve as the reference for spliced runs.
pub fn next_token_ce(
    logits: &[f32],
    tokens: &[u32],
    batch: usize,
    seq: usize,
    vocab: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; batch * (seq.saturating_sub(1))];
    out.par_chunks_mut(seq.saturating_sub(1).max(1))
        .enumerate()
        .for_each(|(b, o)| {
            for t in 0..seq.saturating_sub(1) {
                let row = &logits[(b * seq + t) * vocab..(b * seq + t + 1) * vocab];
                let lse = logsumexp(row);
                let target = tokens[b * seq + t + 1] as usize;
                o[t] = (lse - row[target] as f64) as f32;
            }
        });
    out
}

/// log Σ exp(row), in f64.
pub fn logsumexp(row: &[f32]) -> f64 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
    m + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let r = (fast_exp(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(r);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.3));
        assert!(fast_exp(1000.0).is_finite());
    }

    #[test]
    fn fast_tanh_matches_libm() {
        let mut x = -20.0f32;
        while x < 20.0 {
            assert!((fast_tanh(x) - x.tanh()).abs() < 3e-7, "x={x}");
            x += 0.0071;
        }
    }

    fn naive_mm(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    /// x (`m × k`), W `[k][n]` and W `[n][k]` (the same map) for the
    /// `Linear` tests.
    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let a = (0..m * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 97) as f32 / 48.0 - 1.0)
            .collect();
        let wt = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
        (a, w, wt)
    }

    #[test]
    fn linear_layouts_agree_with_naive_product() {
        let (m, k, n) = (37, 70, 53);
        let (a, w, wt) = operands(m, k, n);
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let mut want = naive_mm(&a, &w, m, k, n);
        for r in want.chunks_mut(n) {
            for (x, b) in r.iter_mut().zip(&bias) {
                *x += b;
            }
        }
        let inout = Linear::new(w.clone(), Some(bias.clone()), k, n, Layout::InOut);
        let outin = Linear::new(wt, Some(bias), k, n, Layout::OutIn);
        for lin in [inout, outin] {
            let got = lin.forward(&a, m);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-4 * (1.0 + e.abs()));
            }
        }
    }

    /// Whichever form the f32 weights are held in, bf16 precision runs on
    /// the bf16 packing of the weights as given (built here from them
    /// directly), and switching back to f32 gives the f32 bits again.
    #[test]
    fn precision_round_trip_keeps_the_weights() {
        let (m, k, n) = (19, 70, 53);
        let (a, w, wt) = operands(m, k, n);
        let want_bf16 = {
            let mut y = vec![0.0; m * n];
            gemm_bf16(m, &a, &PackedBf16::from_in_out(&w, k, n), &mut y, false);
            y
        };
        for mut lin in [
            Linear::new(w.clone(), None, k, n, Layout::InOut),
            Linear::new(wt, None, k, n, Layout::OutIn),
        ] {
            let f32_bits = lin.forward(&a, m);
            lin.set_precision(Precision::Bf16);
            assert!(lin.is_bf16());
            assert_eq!(lin.forward(&a, m), want_bf16);
            lin.set_precision(Precision::F32);
            assert!(!lin.is_bf16());
            assert_eq!(lin.forward(&a, m), f32_bits);
        }
    }

    /// `gate_up_swiglu` and `linear_gelu` give the bits of the product
    /// then the activation, with row blocks per thread (2100 rows: nine
    /// blocks, a short last one), with too few rows for that, and in bf16.
    #[test]
    fn product_then_activation_per_block_keeps_the_bits() {
        let (k, f) = (40, 3 * 48 + 5);
        let (_, w, _) = operands(1, k, 2 * f);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (m, precision) in [
            (2100, Precision::F32),
            (300, Precision::F32),
            (2100, Precision::Bf16),
        ] {
            let (a, _, _) = operands(m, k, 1);
            let mut lin = Linear::new(w.clone(), None, k, 2 * f, Layout::InOut);
            lin.set_precision(precision);
            let gu_want = lin.forward(&a, m);
            let mut h_want = vec![0.0; m * f];
            swiglu_rows(&gu_want, f, &mut h_want);
            let (mut gu, mut h) = (vec![f32::NAN; m * 2 * f], vec![f32::NAN; m * f]);
            pool.install(|| gate_up_swiglu(&lin, &a, m, &mut gu, &mut h));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&gu), bits(&gu_want), "{m} rows, {precision}: gu");
            assert_eq!(bits(&h), bits(&h_want), "{m} rows, {precision}: h");
            let bias: Vec<f32> = (0..2 * f).map(|i| i as f32 * 0.01 - 1.0).collect();
            let mut fc = Linear::new(w.clone(), Some(bias), k, 2 * f, Layout::InOut);
            fc.set_precision(precision);
            let mut want = fc.forward(&a, m);
            gelu_new(&mut want);
            let mut got = vec![f32::NAN; m * 2 * f];
            pool.install(|| linear_gelu(&fc, &a, m, &mut got));
            assert_eq!(bits(&got), bits(&want), "{m} rows, {precision}: gelu");
        }
    }

    /// RoPE against the rotation written with plain indices (the same
    /// operations, so the same bits), both styles, a row stride wider than
    /// the heads and a suffix slice as the K half of a fused QKV row is.
    #[test]
    fn rope_matches_indexed_rotation_bit_for_bit() {
        let (batch, seq, heads, hd, stride) = (2, 37, 3, 8, 40);
        let positions: Vec<usize> = (0..seq).collect();
        let (cos, sin) = rope_tables(&positions, hd, 10000.0);
        for style in [RopeStyle::Interleaved, RopeStyle::Half] {
            let x0: Vec<f32> = (0..batch * seq * stride)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let mut got = x0.clone();
            apply_rope(&mut got[3..], stride, seq, heads, hd, &cos, &sin, style);
            let mut want = x0.clone();
            let half = hd / 2;
            for r in 0..batch * seq {
                let t = r % seq;
                for h in 0..heads {
                    let o = 3 + r * stride + h * hd;
                    for i in 0..half {
                        let (ia, ib) = match style {
                            RopeStyle::Interleaved => (o + 2 * i, o + 2 * i + 1),
                            RopeStyle::Half => (o + i, o + i + half),
                        };
                        let (a, b, c, s) =
                            (want[ia], want[ib], cos[t * half + i], sin[t * half + i]);
                        want[ia] = a * c - b * s;
                        want[ib] = a * s + b * c;
                    }
                }
            }
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{style:?}"
            );
            assert!(got != x0, "{style:?}: nothing rotated");
        }
    }

    #[test]
    fn attention_matches_naive() {
        // Short rows (one causal block), rows over several 32-row blocks
        // with a partial last one, and GQA in both.
        // Head width 64 (the AVX-512 kernel's) with 1, 4, 70 and 131
        // rows: partial row groups, a partial 64-key chunk, more than 128.
        for (batch, seq, n_heads, n_kv, hd) in [
            (2, 5, 4, 2, 3),
            (2, 70, 4, 2, 64),
            (1, 128, 3, 1, 16),
            (3, 1, 2, 1, 64),
            (1, 4, 1, 1, 64),
            (1, 131, 2, 2, 64),
        ] {
            for path in [AttnPath::Gemm, AttnPath::Avx512, AttnPath::Avx2] {
                if path.available() {
                    attention_case(
                        path,
                        AttnShape {
                            batch,
                            seq,
                            n_heads,
                            n_kv_heads: n_kv,
                            head_dim: hd,
                        },
                    );
                }
            }
        }
    }

    /// The hand-written kernels (AVX-512, AVX2) against a scalar model of
    /// their arithmetic: each score one `mul_add` chain over the columns
    /// then × 1/√64, the scalar softmax of the live scores, each output one
    /// `mul_add` chain over the keys. Bit for bit, so the two kernels give
    /// each other's bits too.
    #[test]
    fn hand_kernels_give_the_bits_of_a_scalar_model() {
        for (batch, seq, n_heads, n_kv) in
            [(1, 1, 1, 1), (2, 70, 4, 2), (1, 131, 2, 2), (1, 16, 3, 1)]
        {
            let hd = crate::attention::HEAD_DIM;
            let shape = AttnShape {
                batch,
                seq,
                n_heads,
                n_kv_heads: n_kv,
                head_dim: hd,
            };
            let (rows, qs, kvs) = (batch * seq, n_heads * hd, n_kv * hd);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seq as u64);
            let mut randv =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect() };
            let (q, k, v) = (randv(rows * qs), randv(rows * kvs), randv(rows * kvs));
            let args = AttnArgs {
                q: &q,
                q_stride: qs,
                k: &k,
                v: &v,
                kv_stride: kvs,
                out_stride: qs,
            };
            let scale = 1.0 / (hd as f32).sqrt();
            let mut want = vec![0.0f32; rows * qs];
            for (b, h, i) in (0..batch)
                .flat_map(|b| (0..n_heads).flat_map(move |h| (0..seq).map(move |i| (b, h, i))))
            {
                let kh = h / (n_heads / n_kv);
                let (r, row) = (b * seq + i, |j: usize| b * seq + j);
                let mut sc: Vec<f32> = (0..=i)
                    .map(|j| {
                        let dot = (0..hd).fold(0.0f32, |a, c| {
                            q[r * qs + h * hd + c].mul_add(k[row(j) * kvs + kh * hd + c], a)
                        });
                        dot * scale
                    })
                    .collect();
                simd::softmax_in_place(Width::Scalar, &mut sc);
                for c in 0..hd {
                    want[r * qs + h * hd + c] = (0..=i).fold(0.0f32, |a, j| {
                        sc[j].mul_add(v[row(j) * kvs + kh * hd + c], a)
                    });
                }
            }
            for path in [AttnPath::Avx512, AttnPath::Avx2] {
                if !path.available() {
                    continue;
                }
                let mut got = vec![f32::NAN; rows * qs];
                causal_attention_with(path, &args, shape, &mut got);
                let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{path:?} {shape:?}");
            }
        }
    }

    fn attention_case(path: AttnPath, shape: AttnShape) {
        let AttnShape {
            batch,
            seq,
            n_heads,
            n_kv_heads,
            head_dim: hd,
        } = shape;
        let rows = batch * seq;
        let qs = n_heads * hd;
        let kvs = n_kv_heads * hd;
        let group = n_heads / n_kv_heads;
        let q: Vec<f32> = (0..rows * qs)
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let k: Vec<f32> = (0..rows * kvs)
            .map(|i| ((i * 13) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let v: Vec<f32> = (0..rows * kvs)
            .map(|i| ((i * 7) % 19) as f32 / 9.0 - 1.0)
            .collect();
        let mut out = vec![f32::NAN; rows * qs];
        let args = AttnArgs {
            q: &q,
            q_stride: qs,
            k: &k,
            v: &v,
            kv_stride: kvs,
            out_stride: qs,
        };
        causal_attention_with(path, &args, shape, &mut out);
        for b in 0..batch {
            for h in 0..n_heads {
                let kh = h / group;
                for i in 0..seq {
                    let r = b * seq + i;
                    let s: Vec<f64> = (0..=i)
                        .map(|j| {
                            let rj = b * seq + j;
                            (0..hd)
                                .map(|d| {
                                    q[r * qs + h * hd + d] as f64 * k[rj * kvs + kh * hd + d] as f64
                                })
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    for d in 0..hd {
                        let want: f64 = (0..=i)
                            .map(|j| {
                                (s[j] - m).exp() / z * v[(b * seq + j) * kvs + kh * hd + d] as f64
                            })
                            .sum();
                        let got = out[r * qs + h * hd + d] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{path:?} {shape:?} b{b} h{h} i{i} d{d}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
