//! The f32 product `y (+)= x·W` with W packed once (per model), by hand on
//! AVX-512 and on AVX2 + FMA.
//!
//! # Why by hand
//!
//! On the 2-core Xeon the FMA units' peak is 440–470 GFLOP/s; MKL reaches
//! 390–440 on the forward pass's shapes and the `gemm` crate 325–410 (less
//! inside a forward pass), packing W again on every call, with sums ordered
//! by its own blocking. Here W is packed once into 48-column panels
//! (`[k][48]`, zero-padded) and an 8 × 48 microkernel keeps the tile in 24
//! zmm accumulators: per k index 3 aligned loads of W, 8 `vbroadcastss` of
//! x (read in place from its rows) and 24 `vfmadd231ps`, two k indices per
//! loop pass. 0.93–1.06× MKL on those shapes (bench/RESULTS.md, session 13).
//!
//! # Numerics
//!
//! Every output is one fused multiply-add chain over k in increasing order,
//! starting from 0 (or from the old `y` when accumulating), then the bias:
//! `y = fma(x[k-1], w[k-1], … fma(x[0], w[0], y0)) + b`. Chunks of k carry
//! the f32 accumulator exactly, and k is never split between tasks, so the
//! bits are those of [`gemm_f32_reference`] (a scalar `mul_add` loop) on
//! every thread count.
//!
//! # Blocking
//!
//! A task owns up to [`MC`] rows of `y` and a range of panels. It walks its
//! panels in column blocks whose W chunk (≤ 768 k rows on AVX-512) fits in
//! L2 (≈ 1 MiB), and within a block the k chunks; per k chunk each
//! 8-row tile of x (≤ 24 KiB, in L1) runs against every panel of the
//! block, which streams from L2. Measured against tasks of 64, 128 and 512
//! rows and blocks of 0.5 and 1.5 MiB (session 13).
//!
//! # Paths
//!
//! [`F32Path::Avx512`] runs the tile in zmm registers (above);
//! [`F32Path::Avx2`] (`avx2` module: CPUs with AVX2 and FMA but no
//! AVX-512, such as Zen 3) runs it as four 4 × 24 quarters in ymm
//! registers, with W blocks of 256 KiB for Zen 3's 512 KiB L2. Both
//! compute the same chain, so the same bits. The packed
//! weights carry the path that runs them ([`PackedF32::path`]: the
//! fastest here, or the one `SAELAB_F32_PATH` names, for tests and
//! comparisons). Without either (not x86_64, or `SAELAB_SIMD=scalar`,
//! or `SAELAB_F32_PATH=gemm`) [`available`] is false and the callers keep
//! the `gemm` crate.

use crate::aligned::Line;
use crate::simd::Width;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Columns per packed panel: three 512-bit vectors.
pub const NR: usize = 48;
/// Rows of x per microkernel tile.
const MR: usize = 8;
/// Rows of y per task: W streams from L3 once per task, so tall tasks.
pub const MC: usize = 256;

/// Which microkernel runs a packed product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Path {
    /// 8 × 48 tile in 24 zmm accumulators (avx512f).
    Avx512,
    /// The tile in four 4 × 24 quarters of 12 ymm accumulators (avx2, fma).
    Avx2,
}

impl F32Path {
    /// Its name (`avx512`, `avx2`), for records of which path ran.
    pub fn name(self) -> &'static str {
        match self {
            F32Path::Avx512 => "avx512",
            F32Path::Avx2 => "avx2",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            F32Path::Avx512 => Width::Avx512.available(),
            #[cfg(target_arch = "x86_64")]
            F32Path::Avx2 => avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            F32Path::Avx2 => false,
        }
    }

    /// Maximum k per chunk and bytes of W per column block.
    fn geometry(self) -> (usize, usize) {
        match self {
            // An 8-row x tile of 24 KiB stays in L1 (K = 768, GPT-2 and the
            // SAE encoder, runs as one chunk); L2 is 2 MiB per core on the
            // Xeon.
            F32Path::Avx512 => (768, 1 << 20),
            // Zen 3 (L2 512 KiB per core): k chunks of 192, 256 and 768
            // ran alike within this VM's noise (bench/RESULTS.md, session
            // 18), so as on AVX-512; blocks of 256 KiB ran ahead of 1 MiB
            // on the down and encoder shapes.
            F32Path::Avx2 => (768, 256 << 10),
        }
    }
}

/// Every path this CPU can run, fastest first.
pub fn f32_paths() -> Vec<F32Path> {
    [F32Path::Avx512, F32Path::Avx2]
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

/// The path new packed weights take: the fastest available, or the one
/// `SAELAB_F32_PATH` names (`avx512`, `avx2`, or `gemm` for none) if it is
/// available (otherwise the fastest, with a warning on stderr once); none
/// under `SAELAB_SIMD=scalar`.
pub fn f32_path() -> Option<F32Path> {
    static PATH: std::sync::OnceLock<Option<F32Path>> = std::sync::OnceLock::new();
    *PATH.get_or_init(|| {
        if std::env::var("SAELAB_SIMD").is_ok_and(|v| v == "scalar") {
            return None;
        }
        let best = f32_paths().first().copied();
        let Ok(want) = std::env::var("SAELAB_F32_PATH") else {
            return best;
        };
        match want.as_str() {
            "gemm" => None,
            "avx512" if F32Path::Avx512.available() => Some(F32Path::Avx512),
            "avx2" if F32Path::Avx2.available() => Some(F32Path::Avx2),
            _ => {
                eprintln!(
                    "warning: SAELAB_F32_PATH={want} is not available here (avx512, avx2, gemm); using {}",
                    best.map_or("gemm", F32Path::name)
                );
                best
            }
        }
    })
}

/// `W` (logical `k × n`, for `y = x·W`) packed in panels of [`NR`]
/// columns: panel `j` holds, for each k index in order, the 48 values
/// `W[p][48j..48j + 48]` (the last panel zero-padded). Panels are 64-byte
/// aligned.
#[derive(Clone)]
pub struct PackedF32 {
    data: Vec<Line>,
    k: usize,
    n: usize,
    panels: usize,
    /// The kernel that runs products with it; none where no path runs.
    path: Option<F32Path>,
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedF32")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedF32 {
    /// From `W` stored `[k][n]` row-major (`[in, out]`).
    pub fn from_in_out(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedF32::from_in_out: W is not {k}×{n}");
        Self::pack(k, n, |panel, c0, cols| {
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                row[..cols].copy_from_slice(&w[p * n + c0..p * n + c0 + cols]);
            }
        })
    }

    /// From `W` stored `[n][k]` row-major (`nn.Linear`'s `[out, in]`).
    pub fn from_out_in(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedF32::from_out_in: W is not {n}×{k}");
        Self::pack(k, n, |panel, c0, cols| {
            for c in 0..cols {
                let col = &w[(c0 + c) * k..][..k];
                for (p, &v) in col.iter().enumerate() {
                    panel[p * NR + c] = v;
                }
            }
        })
    }

    fn pack(k: usize, n: usize, fill: impl Fn(&mut [f32], usize, usize) + Sync) -> Self {
        let panels = n.div_ceil(NR);
        let lines = k * NR / 16;
        let mut data = vec![Line([0.0; 16]); panels * lines];
        if lines > 0 {
            data.par_chunks_mut(lines).enumerate().for_each(|(j, p)| {
                let c0 = j * NR;
                fill(bytemuck::cast_slice_mut(p), c0, NR.min(n - c0));
            });
        }
        PackedF32 {
            data,
            k,
            n,
            panels,
            path: f32_path(),
        }
    }

    /// The same weights run by `path` (tests and comparisons force a
    /// slower one).
    ///
    /// Panics if this CPU cannot run `path`.
    pub fn with_path(mut self, path: F32Path) -> Self {
        assert!(
            path.available(),
            "f32 path {} is not available",
            path.name()
        );
        self.path = Some(path);
        self
    }

    /// The kernel that runs products with these weights.
    pub fn path(&self) -> Option<F32Path> {
        self.path
    }

    /// [`PackedF32::path`], which a product needs.
    ///
    /// Panics where none runs (see [`available`]).
    fn kernel_path(&self) -> F32Path {
        match self.path {
            Some(p) => p,
            None => panic!("gemm_f32: no f32 path runs here (needs avx512f, or avx2 and fma)"),
        }
    }

    /// W back in `[k][n]` row-major (`[in, out]`): the values packed, so
    /// a holder can keep this copy alone and derive others from it.
    pub fn to_in_out(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut w = vec![0.0; k * n];
        for j in 0..self.panels {
            let (c0, panel) = (j * NR, self.chunk(j, 0, k));
            let cols = NR.min(n - c0);
            for (row, packed) in w.chunks_exact_mut(n).zip(panel.chunks_exact(NR)) {
                row[c0..c0 + cols].copy_from_slice(&packed[..cols]);
            }
        }
        w
    }

    /// Inner dimension (rows of W).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// k rows `[p0, p0 + len)` of panel `j`.
    fn chunk(&self, j: usize, p0: usize, len: usize) -> &[f32] {
        let lines = self.k * NR / 16;
        let flat: &[f32] = bytemuck::cast_slice(&self.data[j * lines..(j + 1) * lines]);
        &flat[p0 * NR..(p0 + len) * NR]
    }
}

/// Whether [`gemm_f32`] runs here: a path of [`f32_path`].
pub fn available() -> bool {
    f32_path().is_some()
}

/// `y[m × n] (+)= x[m × k]·W (+ bias)`, row-major, in the order of the
/// module doc; the bias (one per column) is added to each finished sum.
///
/// Panics unless [`available`] and the lengths match.
pub fn gemm_f32(
    m: usize,
    x: &[f32],
    w: &PackedF32,
    bias: Option<&[f32]>,
    y: &mut [f32],
    accumulate: bool,
) {
    if !prologue(m, x, w, bias, y, accumulate) {
        return;
    }
    let row_blocks = m.div_ceil(MC);
    let target = task_target();
    let want_cb = if row_blocks >= target {
        1
    } else {
        target.div_ceil(row_blocks).min(w.panels)
    };
    let per_cb = w.panels.div_ceil(want_cb);
    let col_blocks = w.panels.div_ceil(per_cb);
    let out = OutPtr(y.as_mut_ptr());
    (0..row_blocks * col_blocks).into_par_iter().for_each(|t| {
        let (rb, cb) = (t / col_blocks, t % col_blocks);
        let j0 = cb * per_cb;
        let task = Task::new(
            x,
            w,
            m,
            rb,
            (j0, (j0 + per_cb).min(w.panels)),
            bias,
            accumulate,
        );
        // SAFETY: tasks own disjoint (rows, panels) rectangles of `y`,
        // which is mutably borrowed for the whole parallel loop; the
        // packed path is available (`prologue`).
        unsafe { task.run(out) };
    });
}

/// [`gemm_f32`] on the calling thread alone, for callers that run their
/// own task per block of rows (a product and the activation after it,
/// `saelab_lm::ops::gate_up_swiglu`). Row tasks over every panel, one
/// after another; k is never split, so the bits are [`gemm_f32`]'s.
///
/// Panics unless [`available`] and the lengths match.
pub fn gemm_f32_serial(
    m: usize,
    x: &[f32],
    w: &PackedF32,
    bias: Option<&[f32]>,
    y: &mut [f32],
    accumulate: bool,
) {
    if !prologue(m, x, w, bias, y, accumulate) {
        return;
    }
    let out = OutPtr(y.as_mut_ptr());
    for rb in 0..m.div_ceil(MC) {
        let task = Task::new(x, w, m, rb, (0, w.panels), bias, accumulate);
        // SAFETY: `y` is mutably borrowed for the loop and the tasks run
        // one after another; the packed path is available (`prologue`).
        unsafe { task.run(out) };
    }
}

/// Tasks [`gemm_f32`] aims for on the current rayon pool: four per
/// thread. With fewer row blocks it splits the panels as well.
fn task_target() -> usize {
    4 * rayon::current_num_threads().max(1)
}

/// Whether `m` rows make enough row blocks of [`MC`] for [`gemm_f32`]'s
/// task target, so that it gives each task whole rows (every panel): then a
/// caller can run the same row blocks itself through [`gemm_f32_serial`]
/// without idling threads.
pub fn row_blocks_fill_threads(m: usize) -> bool {
    m.div_ceil(MC) >= task_target()
}

/// Checks the operands of a product and settles the empty ones; true when
/// the tasks still have to run.
fn prologue(
    m: usize,
    x: &[f32],
    w: &PackedF32,
    bias: Option<&[f32]>,
    y: &mut [f32],
    accumulate: bool,
) -> bool {
    w.kernel_path();
    let (k, n) = (w.k, w.n);
    assert_eq!(x.len(), m * k, "gemm_f32: x is not {m}×{k}");
    assert_eq!(y.len(), m * n, "gemm_f32: y is not {m}×{n}");
    assert!(
        bias.is_none_or(|b| b.len() == n),
        "gemm_f32: bias is not {n} long"
    );
    if m == 0 || n == 0 {
        return false;
    }
    if k == 0 {
        if !accumulate {
            y.fill(0.0);
        }
        add_bias(y, n, bias);
        return false;
    }
    true
}

/// The scalar definition of [`gemm_f32`]'s result (`w` stored `[k][n]`):
/// for each output, one `mul_add` chain over k in order, then the bias
/// (the same bits).
pub fn gemm_f32_reference(
    m: usize,
    x: &[f32],
    w: &[f32],
    (k, n): (usize, usize),
    bias: Option<&[f32]>,
    y: &mut [f32],
    accumulate: bool,
) {
    for r in 0..m {
        for c in 0..n {
            let mut acc = if accumulate { y[r * n + c] } else { 0.0 };
            for p in 0..k {
                acc = x[r * k + p].mul_add(w[p * n + c], acc);
            }
            y[r * n + c] = acc;
        }
    }
    add_bias(y, n, bias);
}

/// `y[r][c] += bias[c]`.
fn add_bias(y: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(n) {
            for (o, v) in row.iter_mut().zip(b) {
                *o += v;
            }
        }
    }
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only hands disjoint sub-blocks of one `&mut [f32]` to rayon
// tasks (`gemm_f32`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// One task's rectangle of `y`.
struct Task<'a> {
    x: &'a [f32],
    w: &'a PackedF32,
    m: usize,
    /// First row and row count.
    rows: (usize, usize),
    /// Panel range.
    panels: (usize, usize),
    bias: Option<&'a [f32]>,
    accumulate: bool,
}

impl Task<'_> {
    /// Row block `rb` (rows `[rb·MC, rb·MC + MC)` clipped to `m`) and
    /// panels `[j0, j1)`.
    fn new<'a>(
        x: &'a [f32],
        w: &'a PackedF32,
        m: usize,
        rb: usize,
        panels: (usize, usize),
        bias: Option<&'a [f32]>,
        accumulate: bool,
    ) -> Task<'a> {
        let r0 = rb * MC;
        Task {
            x,
            w,
            m,
            rows: (r0, MC.min(m - r0)),
            panels,
            bias,
            accumulate,
        }
    }

    /// Walks the task's column blocks, k chunks and row tiles (module doc).
    ///
    /// # Safety
    /// No other thread touches this task's rectangle of `out` (an
    /// `m × n` buffer) during the call; the packed path is available.
    unsafe fn run(&self, out: OutPtr) {
        let k = self.w.k;
        let (r0, rows) = self.rows;
        let (j0, j1) = self.panels;
        let path = self.w.kernel_path();
        let (kc_max, w_block_bytes) = path.geometry();
        // Even k chunks of at most kc_max.
        let kc = k.div_ceil(k.div_ceil(kc_max));
        let block = (w_block_bytes / (kc * NR * 4)).max(1);
        let mut pad = Vec::new();
        for jb in (j0..j1).step_by(block) {
            for p0 in (0..k).step_by(kc) {
                let len = kc.min(k - p0);
                for rr in (r0..r0 + rows).step_by(MR) {
                    let (a, lda) = self.row_tile(rr, (p0, len), &mut pad);
                    // SAFETY: the caller's contract.
                    unsafe {
                        self.tile_row(path, a, lda, (rr, p0, len), (jb, (jb + block).min(j1)), out)
                    };
                }
            }
        }
    }

    /// Rows `[rr, rr + 8)` of x, k `[p0, p0 + len)`, and their stride:
    /// read in place, or (a partial last tile) from a zero-padded copy.
    fn row_tile<'p>(
        &'p self,
        rr: usize,
        (p0, len): (usize, usize),
        pad: &'p mut Vec<f32>,
    ) -> (&'p [f32], usize) {
        let k = self.w.k;
        let trows = MR.min(self.m - rr);
        if trows == MR {
            return (&self.x[rr * k + p0..], k);
        }
        pad.clear();
        pad.resize(MR * len, 0.0);
        for r in 0..trows {
            pad[r * len..(r + 1) * len].copy_from_slice(&self.x[(rr + r) * k + p0..][..len]);
        }
        (&pad[..], len)
    }

    /// One row tile (rows `rr..`, k chunk `p0..p0 + len`) against panels
    /// `[ja, jb)`.
    ///
    /// # Safety
    /// As [`Task::run`].
    unsafe fn tile_row(
        &self,
        path: F32Path,
        a: &[f32],
        lda: usize,
        (rr, p0, len): (usize, usize, usize),
        (ja, jb): (usize, usize),
        out: OutPtr,
    ) {
        let n = self.w.n;
        let trows = MR.min(self.m - rr);
        let load = self.accumulate || p0 > 0;
        // The bias joins after the last k chunk.
        let bias = self.bias.filter(|_| p0 + len == self.w.k);
        assert!(a.len() >= (MR - 1) * lda + len);
        for j in ja..jb {
            let b = self.w.chunk(j, p0, len);
            let c0 = j * NR;
            let cols = NR.min(n - c0);
            let c = out.0.wrapping_add(rr * n + c0);
            let bias = bias.map(|v| &v[c0..c0 + cols]);
            // SAFETY: `a` holds MR rows of `len` at stride `lda`
            // (asserted), `b` len·NR values and `bias` 48 (checked
            // slices); the tile at (rr, c0) lies in this task's rectangle
            // (caller's contract); a partial tile goes through a scratch
            // tile.
            unsafe {
                if trows == MR && cols == NR {
                    let bias = bias.map_or(std::ptr::null(), <[f32]>::as_ptr);
                    kernel(path, len, (a.as_ptr(), lda), b.as_ptr(), (c, n), load, bias);
                } else {
                    let a = (a.as_ptr(), lda);
                    edge(path, a, b, (len, trows, cols), (c, n), load, bias);
                }
            }
        }
    }
}

/// A tile past the edge of `y`: through a full-size scratch tile.
///
/// # Safety
/// As [`kernel`] for `a` and `b`; `c` is valid for `trows` rows of `cols`
/// at stride `ldc`.
unsafe fn edge(
    path: F32Path,
    a: (*const f32, usize),
    b: &[f32],
    (len, trows, cols): (usize, usize, usize),
    (c, ldc): (*mut f32, usize),
    load: bool,
    bias: Option<&[f32]>,
) {
    let mut tile = [0f32; MR * NR];
    let mut bias48 = [0f32; NR];
    let bias = bias.map_or(std::ptr::null(), |b| {
        bias48[..cols].copy_from_slice(&b[..cols]);
        bias48.as_ptr()
    });
    for r in 0..trows {
        if load {
            // SAFETY: the caller's contract.
            let src = unsafe { std::slice::from_raw_parts(c.add(r * ldc), cols) };
            tile[r * NR..r * NR + cols].copy_from_slice(src);
        }
    }
    // SAFETY: `tile` is an MR × NR block at stride NR, `bias48` 48 f32.
    unsafe {
        kernel(
            path,
            len,
            a,
            b.as_ptr(),
            (tile.as_mut_ptr(), NR),
            load,
            bias,
        )
    };
    for r in 0..trows {
        // SAFETY: the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), cols) };
        dst.copy_from_slice(&tile[r * NR..r * NR + cols]);
    }
}

/// `c[8 × 48] (+)= a·b (+ bias)` over `kc` k indices (`a`: 8 rows at
/// stride `lda`, `b`: `kc` rows of 48, `c`: stride `ldc`); `load_c` starts
/// from `c`, else from zero; a non-null `bias` is added at the end.
///
/// # Safety
/// As [`avx512::kernel`], with `path` available.
unsafe fn kernel(
    path: F32Path,
    kc: usize,
    a: (*const f32, usize),
    b: *const f32,
    c: (*mut f32, usize),
    load_c: bool,
    bias: *const f32,
) {
    // SAFETY: the caller's contract.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match path {
            F32Path::Avx512 => avx512::kernel(kc, a, b, c, load_c, bias),
            F32Path::Avx2 => avx2::kernel(kc, a, b, c, load_c, bias),
        }
    };
    // SAFETY: the caller's contract.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe {
        let _ = path;
        portable_kernel(kc, a, b, c, load_c, bias)
    };
}

/// The microkernel's arithmetic in scalar code, for targets without the
/// AVX-512 one (never dispatched there: [`available`] is false; it keeps
/// the module building everywhere).
///
/// # Safety
/// As [`avx512::kernel`], without the CPU requirement.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn portable_kernel(
    kc: usize,
    (a, lda): (*const f32, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    load_c: bool,
    bias: *const f32,
) {
    for r in 0..MR {
        for col in 0..NR {
            // SAFETY: the caller's contract.
            unsafe {
                let mut acc = if load_c { *c.add(r * ldc + col) } else { 0.0 };
                for p in 0..kc {
                    acc = (*a.add(r * lda + p)).mul_add(*b.add(p * NR + col), acc);
                }
                if !bias.is_null() {
                    acc += *bias.add(col);
                }
                *c.add(r * ldc + col) = acc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The 8 × 48 microkernel (`asm!`, so it needs no target-feature
    //! attributes; it runs only after [`super::available`]).
    use core::arch::asm;

    /// `c[8 × 48] (+)= a·b` over `kc` k indices: zmm0–23 the accumulators,
    /// zmm24–26 the three W vectors of a k index, zmm27/28 the broadcast x
    /// values (rows from two bases and two scaled strides); the k loop
    /// runs two indices per pass, then the odd one. `load_c` starts from
    /// `c`, else from zero; a non-null `bias` (48 f32) is added to every
    /// row after the last product, before the store. The tile's lines of
    /// `c` are first prefetched for writing (`tile_8x48_prefetchw!`): in
    /// the alternated `cargo bench -p saelab-lm --bench bf16` runs of
    /// session 17 the "f32 packed" column rose in 11 of 14 shape pairs,
    /// ≈ 2 % on average (bench/RESULTS.md).
    ///
    /// # Safety
    /// avx512f is available; `a` holds 8 rows of `kc` f32 at stride `lda`,
    /// `b` holds `kc·48` f32; `c` is valid for an 8 × 48 tile at stride
    /// `ldc` elements; `bias` is null or valid for 48 f32.
    pub(super) unsafe fn kernel(
        kc: usize,
        (a, lda): (*const f32, usize),
        b: *const f32,
        (c, ldc): (*mut f32, usize),
        load_c: bool,
        bias: *const f32,
    ) {
        // SAFETY: the caller's contract covers every address; vector
        // registers are clobbered through `clobber_abi("C")`; general
        // registers are operands; no stack.
        unsafe {
            asm!(
                tile_8x48_prefetchw!(),
                tile_8x48_begin!(),
                "cmp rcx, 2",
                "jb 6f",
                "7:",
                tile_8x48_step!("vbroadcastss", "vfmadd231ps", 0, 64, 128, 0),
                tile_8x48_step!("vbroadcastss", "vfmadd231ps", 192, 256, 320, 4),
                "add rsi, 8; add r9, 8; add rdi, 384",
                "sub rcx, 2",
                "cmp rcx, 2",
                "jae 7b",
                "6:",
                "test rcx, rcx",
                "jz 5f",
                "4:",
                tile_8x48_step!("vbroadcastss", "vfmadd231ps", 0, 64, 128, 0),
                "add rsi, 4; add r9, 4; add rdi, 192",
                "dec rcx",
                "jnz 4b",
                "5:",
                "test {bias}, {bias}",
                "jz 8f",
                "vmovups zmm24, zmmword ptr [{bias}]; vmovups zmm25, zmmword ptr [{bias} + 64]; vmovups zmm26, zmmword ptr [{bias} + 128]",
                "vaddps zmm0, zmm0, zmm24; vaddps zmm1, zmm1, zmm25; vaddps zmm2, zmm2, zmm26",
                "vaddps zmm3, zmm3, zmm24; vaddps zmm4, zmm4, zmm25; vaddps zmm5, zmm5, zmm26",
                "vaddps zmm6, zmm6, zmm24; vaddps zmm7, zmm7, zmm25; vaddps zmm8, zmm8, zmm26",
                "vaddps zmm9, zmm9, zmm24; vaddps zmm10, zmm10, zmm25; vaddps zmm11, zmm11, zmm26",
                "vaddps zmm12, zmm12, zmm24; vaddps zmm13, zmm13, zmm25; vaddps zmm14, zmm14, zmm26",
                "vaddps zmm15, zmm15, zmm24; vaddps zmm16, zmm16, zmm25; vaddps zmm17, zmm17, zmm26",
                "vaddps zmm18, zmm18, zmm24; vaddps zmm19, zmm19, zmm25; vaddps zmm20, zmm20, zmm26",
                "vaddps zmm21, zmm21, zmm24; vaddps zmm22, zmm22, zmm25; vaddps zmm23, zmm23, zmm26",
                "8:",
                tile_8x48_store!(),
                "vzeroupper",
                load = in(reg) usize::from(load_c),
                bias = in(reg) bias,
                c = in(reg) c,
                ldc = in(reg) ldc * 4,
                out("r8") _,
                out("r9") _,
                out("r11") _,
                inout("rcx") kc => _,
                inout("rdx") lda * 4 => _,
                inout("rsi") a => _,
                inout("rdi") b => _,
                clobber_abi("C"),
                options(nostack),
            );
        }
    }
}
