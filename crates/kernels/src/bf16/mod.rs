//! Opt-in bf16 fast path for the dense products of the forward pass.
//!
//! `y[m, n] (+)= x[m, k]·W[k, n]` with the constant weight matrix `W`
//! converted to bf16 and packed ONCE ([`PackedBf16`], at model load), and the
//! activations `x` rounded to bf16 while they are packed on each call
//! ([`gemm_bf16`]). On CPUs with AVX512_BF16 (Zen 4, Sapphire Rapids and
//! later) the microkernel uses `vdpbf16ps`, which does 32 bf16
//! multiply-accumulates into f32 per 512-bit instruction: about twice the
//! f32 FMA rate. It is hand-written because no stable Rust crate offers a
//! CPU bf16 GEMM with pre-packed weights: the `gemm` crate (used for the f32
//! path, `ops::matmul`) has f32/f64/f16 kernels but none for bf16, and it
//! packs both operands on every call from strided views.
//!
//! # Numerics
//!
//! * Both inputs are rounded to bf16 (8 significant bits) with
//!   round-to-nearest-even ([`f32_to_bf16_rne`]); NaN stays NaN, finite
//!   values above the bf16 range round to ±inf as IEEE RNE prescribes.
//! * Products of two bf16 values are exact in f32; they are accumulated in
//!   f32 in a fixed order per output element (increasing k; within a pair of
//!   k indices the odd one first, as `vdpbf16ps` defines), so the result does
//!   not depend on the number of threads or on the cache blocking.
//! * `vdpbf16ps` treats bf16 subnormal inputs as zero and flushes subnormal
//!   results (|v| < 1.2e-38); the portable path treats subnormal inputs as
//!   zero as well.
//! * The error is dominated by the input rounding: each input carries a
//!   relative error ≤ 2⁻⁸ ≈ 0.4 % (8 significant bits), so against the exact
//!   product of the f32 inputs the result has a relative (Frobenius) error
//!   of ≈ 0.23 % on N(0, 1) data at k 768 (`tests/bf16.rs`), against
//!   ≈ 1e-7·√k for the f32 path; the f32 accumulation itself adds at most
//!   (k + 2)·2⁻²⁴·Σ|x̃ᵢw̃ᵢ| (the tests' bound). This is why the path is
//!   opt-in: f32 stays the research default.
//!
//! # Paths
//!
//! [`gemm_bf16`] runs the fastest path the CPU has ([`bf16_path`], chosen at
//! run time; `SAELAB_BF16_PATH=amx|avx512|avx2|portable` or [`gemm_bf16_with`]
//! forces a slower one):
//! * **AMX-BF16** (Sapphire Rapids and later, Linux): `tdpbf16ps` on 16 × 16
//!   f32 tiles, 32 rows × 32 columns per microkernel call, with its own
//!   task loop (module `amx`); several times the f32 rate (bench/RESULTS.md,
//!   "AMX", "session 9"). The hardware
//!   sums inside a tile in its own order, so its results agree with
//!   the other paths to f32 rounding, not bit for bit.
//! * **AVX512_BF16** (Zen 4, Cooper Lake, Sapphire Rapids and later):
//!   `vdpbf16ps` (below).
//! * **AVX2** (CPUs with AVX2 and FMA but no bf16 instructions, Zen 3
//!   among them): the rounded operands widened to f32, in the portable
//!   kernel's order, on the f32 AVX2 kernel (module `widened`): the
//!   portable kernel's bits at the f32 rate.
//! * **portable**: the same packed data and the same accumulation order as
//!   the AVX512_BF16 kernel, scalar (slowly; [`gemm_bf16_portable`] forces
//!   it). On Zen 4 and on the Xeon both give bit-identical results.
//!
//! Each path is deterministic and independent of the thread count (k is
//! never split between tasks).
//!
//! # Structure
//!
//! Rayon tasks own blocks of 64 rows of `y` (256 for AMX; and, when there
//! are too few row blocks, ranges of column panels). A task walks k in
//! blocks of ≤ 512 pairs (≤ 384 in whole 16-pair tiles for AMX); per block
//! it rounds its rows of `x` into bf16 pairs once (`[row][pair]`, per tile
//! of 8 rows, 16 for AMX) and reuses them for every 48-column panel of W. The AVX-512 microkernel keeps
//! an 8 × 48 tile of `y` in 24 zmm accumulators and per k pair does 3 loads
//! of W, 8 `vpbroadcastd` of x pairs and 24 `vdpbf16ps`; on 2 Zen 4 cores
//! it reaches 87–95 % of the `vdpbf16ps` peak, 2.0–2.3× the f32
//! `ops::matmul` rate. The AMX microkernel computes a 32 × 32 block
//! (module `amx`, which also says how its task loop blocks for the caches). Rates per machine: `benches/bf16.rs`, bench/RESULTS.md. Both
//! kernels are `asm!`: the AMX intrinsics are unstable, and `asm!` keeps
//! the AVX-512 kernel independent of target-feature attributes.

use rayon::prelude::*;

/// Columns per packed panel of W: three 512-bit vectors of 16 f32 lanes.
/// (8 × 48 measured a few % faster than 6 × 64 and 12 × 32 on Zen 4; 48
/// divides every GPT-2 / SmolLM2 width.)
const NR: usize = 48;
/// 512-bit vectors per panel row.
const NV: usize = NR / 16;
/// Rows of x per microkernel tile (`MR × NV` accumulators + `NV` W vectors
/// of the 32 zmm registers).
const MR: usize = 8;
/// k pairs per AMX tile step (16 rows of 64 bytes).
const AMX_PAIRS: usize = 16;

/// Maximum k pairs per cache block: the W chunk (`KC·NR·4` = 96 KiB) and
/// the packed x block (`MC·KC·4` = 128 KiB) stay in L2 (1 MiB on Zen 4)
/// while all row tiles of a task reuse the chunk. 512 measured faster than
/// 256 on Zen 4 (one block for k ≤ 1024).
const KC_MAX: usize = 512;
/// Maximum k pairs per cache block on the AMX path. The microkernel's two
/// x tiles (32 rows × KC pairs × 4 B) stay in L1 (48 KiB) while W streams
/// past them up to ≈ 256 pairs; 384 lets K = 768 (GPT-2, the SAE encoder)
/// run as one k block, which stores each output tile once instead of
/// storing, reloading and storing it again: the encoder shape ran 4–14 %
/// faster in four alternated comparisons, the others within the noise
/// (bench/RESULTS.md, session 10). The k split does not change the bits:
/// the accumulators carry f32 across blocks exactly.
const KC_MAX_AMX: usize = 384;
/// Rows of x per task on the AMX path (a multiple of 32): W streams
/// from L3 once per task, so AMX, which consumes it 6× faster than
/// AVX-512, needs taller tasks. On the 2-core Xeon, 256 rows ran 1.2–1.4×
/// the rate of 64 with the session-7 kernel (bench/RESULTS.md, "AMX"); with
/// the 2 × 2 kernel 512 was slower (session 9), but once the k sub-blocks
/// kept x in L1 (session 14) 512 ran 2–12 % faster than 256 on six of the
/// seven bench shapes (three alternated rounds; 1024 and 2048 help the
/// wide shapes and slow the narrow ones).
const MC_AMX: usize = 512;
/// Rows of x per task (a multiple of `MR`).
const MC: usize = 64;

/// Two values as one packed bf16 pair (`lo | hi << 16`).
#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(f32_to_bf16_rne(lo)) | (u32::from(f32_to_bf16_rne(hi)) << 16)
}

/// Round `x` to the nearest bf16, ties to even. NaN stays NaN (quieted);
/// values beyond the largest bf16 round to ±inf; subnormals are rounded, not
/// flushed.
#[inline]
pub fn f32_to_bf16_rne(x: f32) -> u16 {
    let b = x.to_bits();
    // Adding 0x7FFF plus the lowest kept bit rounds the 16 dropped bits to
    // nearest, ties to even; a carry into the exponent is the correct
    // result (including rounding up to inf). No overflow for non-NaN: the
    // largest such pattern is 0xFF80_0000 (NaN patterns may wrap, and are
    // replaced). Both results are computed and one selected, with no
    // branch, so loops over this vectorize.
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((b >> 16) as u16) | 0x0040;
    if x.is_nan() {
        quiet_nan
    } else {
        rounded
    }
}

/// The f32 value of a bf16 bit pattern (exact; NaN stays NaN).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Whether this CPU can run the AVX512_BF16 kernel (see [`bf16_path`] for
/// the path [`gemm_bf16`] takes).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(avx::detect)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A 64-byte aligned run of 16 packed bf16 pairs (one 512-bit vector).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

// SAFETY: `repr(C)` around `[u32; 16]`: 64 bytes at alignment 64, so no
// padding, and every bit pattern is a valid value (the lines are viewed
// as one run of u32 through `bytemuck`).
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above.
unsafe impl bytemuck::Pod for Line {}

/// A weight matrix `W` (logical shape `k × n`, for `y = x·W`) converted to
/// bf16 and packed for the microkernel.
///
/// Layout: `n` is cut into panels of `NR` = 48 columns (the last one padded
/// with zeros); each panel stores, for each pair `p` of k indices
/// (`k` padded to even with a zero row), the `NR` values
/// `bf16(W[2p][c]) | bf16(W[2p+1][c]) << 16` as `u32`, so one 512-bit load
/// feeds `vdpbf16ps` with 16 columns. Panels are 64-byte aligned.
#[derive(Clone)]
pub struct PackedBf16 {
    data: Vec<Line>,
    k: usize,
    n: usize,
    /// `k.div_ceil(2)`: pairs of W.
    kp: usize,
    /// `kp` rounded up to whole AMX tiles (16 pairs): pairs stored per
    /// panel, the padding rows zero.
    kp_pad: usize,
    /// `n.div_ceil(NR)`.
    panels: usize,
    /// The widened copy the [`Bf16Path::Avx2`] path runs on, made on its
    /// first use.
    widened: std::sync::OnceLock<crate::f32gemm::PackedF32>,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedBf16")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PackedBf16 {
    /// From `W` stored `[k][n]` row-major (HF GPT-2 `Conv1D`: `[in, out]`).
    ///
    /// Panics if `w.len() != k·n`.
    pub fn from_in_out(w: &[f32], k: usize, n: usize) -> Self {
        check_len("PackedBf16::from_in_out: w", w.len(), k, n);
        // Row pair (2p, 2p + 1) of W, columns c0.., is contiguous.
        Self::pack(k, n, |flat, c0, cols| {
            for (p, out) in flat.chunks_exact_mut(NR).take(k.div_ceil(2)).enumerate() {
                let lo = &w[2 * p * n + c0..][..cols];
                let hi = (2 * p + 1 < k).then(|| &w[(2 * p + 1) * n + c0..][..cols]);
                for (c, o) in out[..cols].iter_mut().enumerate() {
                    *o = pair(lo[c], hi.map_or(0.0, |h| h[c]));
                }
            }
        })
    }

    /// From `W` stored `[n][k]` row-major (`nn.Linear` / GGUF: `[out, in]`).
    ///
    /// Panics if `w.len() != k·n`.
    pub fn from_out_in(w: &[f32], k: usize, n: usize) -> Self {
        check_len("PackedBf16::from_out_in: w", w.len(), k, n);
        Self::pack(k, n, out_in_filler(w, k))
    }

    /// [`PackedBf16::from_out_in`] into `slot`, reusing its storage when it
    /// already holds a packing of the same shape (the SAE encoder repacks
    /// W_enc every bf16 step: 19 MB at n 12288, whose fresh pages would
    /// otherwise be faulted in every time). Same bits as a fresh packing:
    /// the fill writes every data element and the padding stays zero.
    ///
    /// Panics if `w.len() != k·n`.
    pub fn repack_out_in<'s>(
        slot: &'s mut Option<Self>,
        w: &[f32],
        k: usize,
        n: usize,
    ) -> &'s Self {
        check_len("PackedBf16::repack_out_in: w", w.len(), k, n);
        match slot {
            Some(p) if p.k == k && p.n == n => {}
            _ => return slot.insert(Self::pack(k, n, out_in_filler(w, k))),
        }
        // Some and of this shape (checked above); the closure never runs.
        let p = slot.get_or_insert_with(|| Self::pack(k, n, out_in_filler(w, k)));
        let panel_lines = p.kp_pad * NV;
        fill_panels(&mut p.data, panel_lines, n, out_in_filler(w, k));
        p.widened = std::sync::OnceLock::new();
        p
    }

    /// Packs W panel by panel (in parallel): `fill(flat, c0, cols)` writes
    /// the `[pair][NR]` u32 pairs of columns `c0..c0 + cols` into the
    /// zeroed panel `flat` (`kp_pad·NR` u32; padding stays zero).
    fn pack(k: usize, n: usize, fill: impl Fn(&mut [u32], usize, usize) + Sync) -> Self {
        let kp = k.div_ceil(2);
        let kp_pad = kp.div_ceil(AMX_PAIRS) * AMX_PAIRS;
        let panels = n.div_ceil(NR);
        // Panel size in lines: kp_pad·NR u32 = kp_pad·NV lines.
        let panel_lines = kp_pad * NV;
        let mut data = vec![Line([0; 16]); panels * panel_lines];
        fill_panels(&mut data, panel_lines, n, fill);
        PackedBf16 {
            data,
            k,
            n,
            kp,
            kp_pad,
            panels,
            widened: std::sync::OnceLock::new(),
        }
    }

    /// Inner dimension (rows of `W`, columns of `x`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output dimension (columns of `W` and `y`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The widened copy for [`Bf16Path::Avx2`], made on first use.
    fn widened(&self) -> &crate::f32gemm::PackedF32 {
        self.widened.get_or_init(|| widened::widen_w(self))
    }

    /// Heap bytes of the packed matrix (≈ `2·k·n`, plus padding; a widened
    /// copy for the AVX2 path, ≈ `4·k·n`, not counted).
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice())
    }

    /// The packed pairs of panel `j`, k pairs `[p0, p0 + len)`.
    fn chunk(&self, j: usize, p0: usize, len: usize) -> &[u32] {
        let all: &[Line] = &self.data[j * self.kp_pad * NV..(j + 1) * self.kp_pad * NV];
        let flat: &[u32] = bytemuck::cast_slice(all);
        &flat[p0 * NR..(p0 + len) * NR]
    }
}

fn check_len(what: &str, len: usize, rows: usize, cols: usize) {
    let want = rows.checked_mul(cols);
    assert!(
        want == Some(len),
        "{what}: length {len} does not match {rows}×{cols}"
    );
}

/// Which microkernel runs the tiles: the fastest the CPU has, unless the
/// environment variable `SAELAB_BF16_PATH` (`amx`, `avx512`, `avx2`,
/// `portable`)
/// asks for a slower one (forced fallbacks, for tests and comparisons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Path {
    /// AMX-BF16 tiles (`tdpbf16ps`): Sapphire Rapids and later.
    Amx,
    /// AVX512_BF16 (`vdpbf16ps`): Zen 4, Cooper Lake, Sapphire Rapids and later.
    Avx512,
    /// The rounded operands widened to f32 on the AVX2/FMA f32 kernel
    /// (module `widened`): CPUs with AVX2 and FMA but no bf16 instructions.
    Avx2,
    /// Scalar code with `vdpbf16ps` semantics: any CPU.
    Portable,
}

impl Bf16Path {
    /// Its name (`amx`, `avx512_bf16`, `portable`), for records of which
    /// path ran.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "amx",
            Bf16Path::Avx512 => "avx512_bf16",
            Bf16Path::Avx2 => "avx2",
            Bf16Path::Portable => "portable",
        }
    }

    /// Whether this CPU (and, for AMX, the OS) can run it.
    pub fn available(self) -> bool {
        match self {
            Bf16Path::Amx => amx_available(),
            Bf16Path::Avx512 => bf16_available(),
            Bf16Path::Avx2 => crate::f32gemm::F32Path::Avx2.available(),
            Bf16Path::Portable => true,
        }
    }
}

/// Every path this machine can run, fastest first.
pub fn bf16_paths() -> Vec<Bf16Path> {
    [
        Bf16Path::Amx,
        Bf16Path::Avx512,
        Bf16Path::Avx2,
        Bf16Path::Portable,
    ]
    .into_iter()
    .filter(|p| p.available())
    .collect()
}

/// The path [`gemm_bf16`] takes: the fastest available, or the one
/// `SAELAB_BF16_PATH` names if it is available (an unknown or unavailable
/// name falls back to the fastest, with a warning on stderr once).
pub fn bf16_path() -> Bf16Path {
    static PATH: std::sync::OnceLock<Bf16Path> = std::sync::OnceLock::new();
    *PATH.get_or_init(|| {
        let best = bf16_paths()[0];
        let Ok(want) = std::env::var("SAELAB_BF16_PATH") else {
            return best;
        };
        let asked = match want.as_str() {
            "amx" => Some(Bf16Path::Amx),
            "avx512" | "avx512_bf16" => Some(Bf16Path::Avx512),
            "avx2" => Some(Bf16Path::Avx2),
            "portable" => Some(Bf16Path::Portable),
            _ => None,
        };
        match asked {
            Some(p) if p.available() => p,
            _ => {
                eprintln!(
                    "warning: SAELAB_BF16_PATH={want} is not available here (amx, avx512, avx2, portable); using {}",
                    best.name()
                );
                best
            }
        }
    })
}

/// What a user asking for bf16 products should know about [`bf16_path`]
/// here, if anything: no bf16 hardware makes them no faster than f32
/// (AVX2) or several times slower (portable).
pub fn bf16_path_note() -> Option<&'static str> {
    match bf16_path() {
        Bf16Path::Amx | Bf16Path::Avx512 => None,
        Bf16Path::Avx2 => Some(
            "runs at the f32 rate here (no AMX or AVX512_BF16: rounded operands on the AVX2 \
             f32 kernel)",
        ),
        Bf16Path::Portable => Some(
            "runs on the slow portable kernel (no AMX, AVX512_BF16 or AVX2 here, or \
             SAELAB_BF16_PATH=portable)",
        ),
    }
}

/// Whether the AMX-BF16 path can run: the CPU has AMX-TILE and AMX-BF16
/// and Linux granted this process the tile state (`arch_prctl`).
pub fn amx_available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(amx::detect)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// `y[m, n] = x[m, k]·W` (or `y += x·W` when `accumulate`), `x` and `y`
/// row-major, with `x` rounded to bf16 and f32 accumulation (module docs),
/// on [`bf16_path`]. Runs on the current rayon pool; the result does not
/// depend on its size. On the AMX path a `y` that starts 64-byte aligned
/// (e.g. [`crate::aligned::AlignedF32`]) runs markedly faster: its output
/// tiles are loaded and stored row by row, and rows that straddle cache
/// lines cost several times more (any alignment gives the same result).
///
/// Panics if `x.len() != m·k` or `y.len() != m·n` (`k`, `n` from `w`).
pub fn gemm_bf16(m: usize, x: &[f32], w: &PackedBf16, y: &mut [f32], accumulate: bool) {
    run(bf16_path(), m, XIn::F32(x), w, y, accumulate)
}

/// [`gemm_bf16`] with the portable kernel whatever the CPU: the reference
/// for the AVX-512 path (same rounding, same accumulation order), and slow.
pub fn gemm_bf16_portable(m: usize, x: &[f32], w: &PackedBf16, y: &mut [f32], accumulate: bool) {
    run(Bf16Path::Portable, m, XIn::F32(x), w, y, accumulate)
}

/// [`gemm_bf16`] on a chosen path.
///
/// Panics as [`gemm_bf16`], and if `path` is not available here.
pub fn gemm_bf16_with(
    path: Bf16Path,
    m: usize,
    x: &[f32],
    w: &PackedBf16,
    y: &mut [f32],
    accumulate: bool,
) {
    assert!(
        path.available(),
        "bf16 path {} is not available",
        path.name()
    );
    run(path, m, XIn::F32(x), w, y, accumulate)
}

/// [`gemm_bf16`] with `x` already rounded ([`Bf16Rows`]; `m` = its rows):
/// the same bits as `gemm_bf16` on the f32 rows it was filled from.
///
/// Panics if `x` is not `m × w.k()` or `y.len() != m·n`.
pub fn gemm_bf16_rows(x: &Bf16Rows, w: &PackedBf16, y: &mut [f32], accumulate: bool) {
    run(bf16_path(), x.rows, XIn::Bf16(x), w, y, accumulate)
}

/// [`gemm_bf16_rows`] on a chosen path.
///
/// Panics as [`gemm_bf16_rows`], and if `path` is not available here.
pub fn gemm_bf16_rows_with(
    path: Bf16Path,
    x: &Bf16Rows,
    w: &PackedBf16,
    y: &mut [f32],
    accumulate: bool,
) {
    assert!(
        path.available(),
        "bf16 path {} is not available",
        path.name()
    );
    run(path, x.rows, XIn::Bf16(x), w, y, accumulate)
}

/// The x operand of a product: f32 rows (rounded while packed), or rows
/// already rounded to bf16 pairs by their producer ([`Bf16Rows`]).
#[derive(Clone, Copy)]
enum XIn<'a> {
    F32(&'a [f32]),
    Bf16(&'a Bf16Rows),
}

/// Activations already rounded to bf16 pairs, row-major, for
/// [`gemm_bf16_rows`]: what a norm or an activation function writes when
/// its only readers are bf16 products, so the product need not read the
/// f32 rows back and round them (`pack_x` was ≈ 8 % of a bf16 SmolLM2
/// forward, most of it waiting on memory; bench/RESULTS.md, session 9).
///
/// Row r holds the pairs `bf16(x[r][2p]) | bf16(x[r][2p + 1]) << 16` at
/// `[r·stride, r·stride + kp)`, `stride` = `kp` rounded up to 16 pairs (64
/// bytes, an AMX tile row); the padding pairs and the rows past `rows`
/// (up to a multiple of 16) are zero, and the block starts 64-byte
/// aligned, so the AMX path loads its x tiles in place. The values are
/// the ones `gemm_bf16` would round from the same f32 rows: both products
/// give the same bits.
#[derive(Clone, Default)]
pub struct Bf16Rows {
    data: Vec<Line>,
    rows: usize,
    k: usize,
    stride: usize,
}

impl std::fmt::Debug for Bf16Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bf16Rows")
            .field("rows", &self.rows)
            .field("k", &self.k)
            .finish()
    }
}

impl Bf16Rows {
    /// `rows` zero rows of `k` values.
    pub fn zeros(rows: usize, k: usize) -> Self {
        let stride = k.div_ceil(2).div_ceil(AMX_PAIRS) * AMX_PAIRS;
        let lines = rows.div_ceil(AMX_PAIRS) * AMX_PAIRS * stride / 16;
        Bf16Rows {
            data: vec![Line([0; 16]); lines],
            rows,
            k,
            stride,
        }
    }

    /// `rows × k` from this thread's pool ([`crate::pool`]; contents stale,
    /// padding zero), else [`Bf16Rows::zeros`]; give it back with
    /// [`crate::pool::give`].
    pub fn take(rows: usize, k: usize) -> Self {
        crate::pool::take(|b: &Bf16Rows| b.rows == rows && b.k == k)
            .unwrap_or_else(|| Self::zeros(rows, k))
    }

    /// `x` (`rows × k`, row-major) rounded (tests and one-off callers).
    ///
    /// Panics if `x.len() != rows·k`.
    pub fn from_f32(x: &[f32], rows: usize, k: usize) -> Self {
        check_len("Bf16Rows::from_f32: x", x.len(), rows, k);
        let mut out = Self::zeros(rows, k);
        out.fill_par(|r, row| row.copy_from_slice(&x[r * k..(r + 1) * k]));
        out
    }

    /// Rows of values.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Sets every row in parallel: `f(r, row)` writes row r's `k` f32
    /// values into `row` (a scratch row, old contents unspecified), which
    /// are then rounded into the pairs. Deterministic: each row is
    /// computed by one call, whatever the thread count.
    pub fn fill_par(&mut self, f: impl Fn(usize, &mut [f32]) + Sync) {
        let (k, stride, rows) = (self.k, self.stride, self.rows);
        if rows == 0 || stride == 0 {
            return;
        }
        let kp = k.div_ceil(2);
        let pairs = self.pairs_mut();
        pairs[..rows * stride]
            .par_chunks_mut(stride * FILL_ROWS)
            .enumerate()
            .for_each_init(
                || vec![0f32; k],
                |scratch, (i, chunk)| {
                    for (j, dst) in chunk.chunks_exact_mut(stride).enumerate() {
                        f(i * FILL_ROWS + j, scratch);
                        pack_pairs(scratch, &mut dst[..kp]);
                    }
                },
            );
    }

    /// All pairs, rows at `stride` (padding included).
    fn pairs(&self) -> &[u32] {
        bytemuck::cast_slice(&self.data)
    }

    fn pairs_mut(&mut self) -> &mut [u32] {
        bytemuck::cast_slice_mut(&mut self.data)
    }
}

/// Rows per task of [`Bf16Rows::fill_par`].
const FILL_ROWS: usize = 16;

thread_local! {
    /// Each thread's packed block of x, kept across calls: a fresh
    /// ≈ 0.3 MB buffer per rayon split was `mmap`ed and its pages zeroed
    /// on every product (≈ 9 % of a bf16 forward in `clear_page_erms`;
    /// bench/RESULTS.md, session 9). `pack_x` grows it as needed.
    static PACKED_X: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used to hand disjoint sub-blocks of one `&mut [f32]` to
// rayon tasks (see `run`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

fn run(kernel: Bf16Path, m: usize, x: XIn<'_>, w: &PackedBf16, y: &mut [f32], accumulate: bool) {
    let (k, n) = (w.k, w.n);
    match x {
        XIn::F32(x) => check_len("gemm_bf16: x", x.len(), m, k),
        XIn::Bf16(x) => assert!(
            x.rows == m && x.k == k,
            "gemm_bf16_rows: x is {}×{}, W wants {m}×{k}",
            x.rows,
            x.k
        ),
    }
    check_len("gemm_bf16: y", y.len(), m, n);
    if m == 0 || n == 0 {
        return;
    }
    if w.kp == 0 {
        if !accumulate {
            y.fill(0.0);
        }
        return;
    }
    if kernel == Bf16Path::Avx2 {
        widened::run(m, x, w, y, accumulate);
        return;
    }
    // Task grid: row blocks of mc rows × column blocks of whole panels.
    // Column blocks only when there are too few row blocks to balance.
    let mc = match kernel {
        Bf16Path::Amx => MC_AMX,
        _ => MC,
    };
    let row_blocks = m.div_ceil(mc);
    let target = 4 * rayon::current_num_threads().max(1);
    let want_cb = if row_blocks >= target {
        1
    } else {
        target.div_ceil(row_blocks).min(w.panels)
    };
    let panels_per_cb = w.panels.div_ceil(want_cb);
    let col_blocks = w.panels.div_ceil(panels_per_cb);
    // Even k blocks of at most KC_MAX pairs (whole AMX tiles for AMX).
    let kc = match kernel {
        Bf16Path::Amx => w.kp.div_ceil(w.kp.div_ceil(KC_MAX_AMX)).div_ceil(AMX_PAIRS) * AMX_PAIRS,
        _ => w.kp.div_ceil(w.kp.div_ceil(KC_MAX)),
    };

    let out = OutPtr(y.as_mut_ptr());
    (0..row_blocks * col_blocks).into_par_iter().for_each(|t| {
        PACKED_X.with_borrow_mut(|xa| {
            let (rb, cb) = (t / col_blocks, t % col_blocks);
            let r0 = rb * mc;
            let rows = mc.min(m - r0);
            let j0 = cb * panels_per_cb;
            let j1 = (j0 + panels_per_cb).min(w.panels);
            // SAFETY: tasks cover disjoint (row block, panel range)
            // rectangles of `y`, which `run` borrows mutably for the
            // whole parallel loop; a task writes only inside its own.
            // AMX runs only after `amx_available()` (every entry point).
            match kernel {
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                Bf16Path::Amx => unsafe {
                    amx::task(x, w, out, m, (r0, rows), (j0, j1), kc, accumulate, xa)
                },
                _ => unsafe { task(kernel, x, w, out, m, r0, rows, j0, j1, kc, accumulate, xa) },
            }
        })
    });
}

/// One task: rows `[r0, r0 + rows)` of `y`, column panels `[j0, j1)`.
///
/// # Safety
/// `out` points to the `m × w.n` output, and no other thread accesses this
/// task's rectangle during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn task(
    kernel: Bf16Path,
    x: XIn<'_>,
    w: &PackedBf16,
    out: OutPtr,
    m: usize,
    r0: usize,
    rows: usize,
    j0: usize,
    j1: usize,
    kc: usize,
    accumulate: bool,
    xa: &mut Vec<u32>,
) {
    let (k, n) = (w.k, w.n);
    let mr = MR;
    let tiles = rows.div_ceil(mr);
    let mut tile = [0f32; MR * NR];
    let mut pk0 = 0;
    while pk0 < w.kp {
        let kcur = kc.min(w.kp - pk0);
        let kpad = kcur;
        let xa = pack_x(x, k, (r0, rows, mr), (pk0, kcur, kpad), xa);
        let load_c = accumulate || pk0 > 0;
        for j in j0..j1 {
            let b = w.chunk(j, pk0, kpad);
            let c0 = j * NR;
            let cols = NR.min(n - c0);
            for t in 0..tiles {
                let rr = r0 + t * mr;
                let trows = mr.min(m - rr);
                let a = &xa[t * kpad * mr..(t + 1) * kpad * mr];
                if trows == mr && cols == NR {
                    // SAFETY: the mr × NR tile at (rr, c0) lies inside `y`
                    // (rr + mr ≤ m, c0 + NR ≤ n) and in this task's
                    // rectangle (caller's contract).
                    unsafe { microkernel(kernel, kpad, a, b, out.0.add(rr * n + c0), n, load_c) };
                } else {
                    // Edge tile: through a full-size scratch tile.
                    if load_c {
                        for r in 0..trows {
                            // SAFETY: row rr + r < m, columns c0..c0 + cols ≤ n.
                            let src = unsafe {
                                std::slice::from_raw_parts(out.0.add((rr + r) * n + c0), cols)
                            };
                            tile[r * NR..r * NR + cols].copy_from_slice(src);
                        }
                    }
                    // SAFETY: `tile` holds an mr × NR block with row stride NR.
                    unsafe { microkernel(kernel, kpad, a, b, tile.as_mut_ptr(), NR, load_c) };
                    for r in 0..trows {
                        // SAFETY: as for the read above; this task owns it.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.0.add((rr + r) * n + c0), cols)
                        };
                        dst.copy_from_slice(&tile[r * NR..r * NR + cols]);
                    }
                }
            }
        }
        pk0 += kcur;
    }
}

/// Pack rows `[r0, r0 + rows)`, k pairs `[pk0, pk0 + kcur)` of `x` as bf16
/// pairs, per tile of `mr` rows `[row][pair]` with `kpad ≥ kcur` pairs per
/// row (rows past `rows` and pairs past `kcur` zero): each row is one
/// contiguous (vectorized) conversion. Returns the packed block, which
/// starts 64-byte aligned: an AMX tile load whose rows straddle cache
/// lines runs about 6× slower (2.4 vs 16 ns per 1 KiB tile on the Xeon;
/// bench/RESULTS.md, session 9).
fn pack_x<'a>(
    x: XIn<'_>,
    k: usize,
    (r0, rows, mr): (usize, usize, usize),
    (pk0, kcur, kpad): (usize, usize, usize),
    xa: &'a mut Vec<u32>,
) -> &'a [u32] {
    let len = rows.div_ceil(mr) * mr * kpad;
    // Room for the aligned start (16 u32 = 64 bytes).
    if xa.len() < len + 16 {
        xa.resize(len + 16, 0);
    }
    let start = xa.as_ptr().align_offset(64).min(16);
    let xa = &mut xa[start..start + len];
    // Padding rows of the last tile.
    xa[rows * kpad..].fill(0);
    let k_lo = 2 * pk0;
    let k_hi = (2 * (pk0 + kcur)).min(k);
    for (r, dst) in xa.chunks_exact_mut(kpad).take(rows).enumerate() {
        match x {
            XIn::F32(x) => {
                pack_pairs(
                    &x[(r0 + r) * k + k_lo..(r0 + r) * k + k_hi],
                    &mut dst[..kcur],
                );
            }
            XIn::Bf16(x) => {
                let row = (r0 + r) * x.stride + pk0;
                dst[..kcur].copy_from_slice(&x.pairs()[row..row + kcur]);
            }
        }
        dst[kcur..].fill(0);
    }
    xa
}

/// `dst[j] = bf16(src[2j]) | bf16(src[2j + 1]) << 16`, the odd tail's
/// high half zero. On little-endian targets that is `src` rounded into
/// the u16 view of `dst`: a plain narrowing loop that vectorizes (the
/// pairwise form did not, and cost 5 % of a bf16 forward).
fn pack_pairs(src: &[f32], dst: &mut [u32]) {
    #[cfg(target_endian = "little")]
    {
        let halves: &mut [u16] = bytemuck::cast_slice_mut(dst);
        for (o, &v) in halves.iter_mut().zip(src) {
            *o = f32_to_bf16_rne(v);
        }
        halves[src.len()..].fill(0);
    }
    #[cfg(not(target_endian = "little"))]
    {
        let whole = src.chunks_exact(2);
        if let [last] = whole.remainder() {
            dst[src.len() / 2] = u32::from(f32_to_bf16_rne(*last));
        }
        for (o, v) in dst.iter_mut().zip(whole) {
            *o = u32::from(f32_to_bf16_rne(v[0])) | (u32::from(f32_to_bf16_rne(v[1])) << 16);
        }
    }
}

/// The fill of [`PackedBf16::from_out_in`]: column c of W is the
/// contiguous row c of `w`; read it once and scatter its pairs down the
/// panel.
fn out_in_filler(w: &[f32], k: usize) -> impl Fn(&mut [u32], usize, usize) + Sync + '_ {
    move |flat, c0, cols| {
        for c in 0..cols {
            let row = &w[(c0 + c) * k..][..k];
            let mut pairs = row.chunks_exact(2);
            for (p, v) in (&mut pairs).enumerate() {
                flat[p * NR + c] = pair(v[0], v[1]);
            }
            if let [last] = pairs.remainder() {
                flat[(k / 2) * NR + c] = pair(*last, 0.0);
            }
        }
    }
}

/// Runs `fill(flat, c0, cols)` on every panel of `data` (in parallel).
fn fill_panels(
    data: &mut [Line],
    panel_lines: usize,
    n: usize,
    fill: impl Fn(&mut [u32], usize, usize) + Sync,
) {
    if panel_lines == 0 {
        return;
    }
    data.par_chunks_mut(panel_lines)
        .enumerate()
        .for_each(|(j, panel)| {
            let flat: &mut [u32] = bytemuck::cast_slice_mut(panel);
            let c0 = j * NR;
            fill(flat, c0, NR.min(n - c0));
        });
}

/// `c[MR × NR] (+)= a·b` over `kc` pairs: `a` is
/// `[mr][kc]` packed x pairs, `b` is `[kc][NR]` packed W pairs, `c` has row
/// stride `ldc`; when `!load_c` the old contents of `c` are ignored (the
/// AMX path has its own kernel and task loop, module `amx`).
///
/// # Safety
/// `c` must be valid for reads and writes of an mr × NR tile with row
/// stride `ldc`; `kernel` must be available.
unsafe fn microkernel(
    kernel: Bf16Path,
    kc: usize,
    a: &[u32],
    b: &[u32],
    c: *mut f32,
    ldc: usize,
    load_c: bool,
) {
    // The kernels read exactly these extents (cheap next to kc·24 dot
    // products; guards the asm against a slicing bug).
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract; Avx512 is only run after
        // `bf16_available()`.
        Bf16Path::Avx512 => unsafe { avx::kernel(kc, a.as_ptr(), kc, b.as_ptr(), c, ldc, load_c) },
        // SAFETY: forwarded contract.
        Bf16Path::Portable => unsafe { portable_kernel(kc, a, b, c, ldc, load_c) },
        #[allow(unreachable_patterns)]
        _ => unreachable!("bf16 path {} on a CPU without it", kernel.name()),
    }
}

/// A bf16 value as f32 with subnormals treated as zero (as `vdpbf16ps`).
#[inline]
fn bf16_daz(h: u32) -> f32 {
    let h = h & 0xFFFF;
    if h & 0x7F80 == 0 {
        0.0
    } else {
        f32::from_bits(h << 16)
    }
}

/// The scalar microkernel: `vdpbf16ps` semantics lane by lane.
///
/// # Safety
/// As [`microkernel`].
unsafe fn portable_kernel(kc: usize, a: &[u32], b: &[u32], c: *mut f32, ldc: usize, load_c: bool) {
    let mut acc = [[0f32; NR]; MR];
    if load_c {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: row r of the tile (caller's contract).
            row.copy_from_slice(unsafe { std::slice::from_raw_parts(c.add(r * ldc), NR) });
        }
    }
    for p in 0..kc {
        let bp = &b[p * NR..(p + 1) * NR];
        for (r, row) in acc.iter_mut().enumerate() {
            let av = a[r * kc + p];
            let (a_lo, a_hi) = (bf16_daz(av), bf16_daz(av >> 16));
            for (o, &bv) in row.iter_mut().zip(bp) {
                // Odd element first, then even, each product exact.
                *o += a_hi * bf16_daz(bv >> 16);
                *o += a_lo * bf16_daz(bv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r of the tile (caller's contract).
        unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) }.copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    //! The AVX512_BF16 microkernel, in `asm!` (written when the AVX-512
    //! intrinsics were not yet stable; it needs no target-feature
    //! attributes): the instructions run only after runtime detection
    //! (`super::bf16_available`).
    use super::{MR, NR};
    use core::arch::asm;

    // The register allocation below is written for 8 rows × 3 vectors.
    const _: () = assert!(MR == 8 && NR == 48);

    /// Runtime check of avx512f (with OS support for the zmm state) and
    /// AVX512_BF16 (CPUID leaf 7 sub-leaf 1, EAX bit 5; read directly because
    /// `is_x86_feature_detected!("avx512bf16")` is unstable before 1.89).
    // `__cpuid_count` / `__get_cpuid_max` are unsafe before Rust 1.94 and
    // safe after: keep the blocks for the MSRV.
    #[allow(unused_unsafe)]
    pub(super) fn detect() -> bool {
        use core::arch::x86_64::{__cpuid_count, __get_cpuid_max};
        if !is_x86_feature_detected!("avx512f") {
            return false;
        }
        // SAFETY: CPUID exists on every x86_64 CPU.
        let (max_leaf, _) = unsafe { __get_cpuid_max(0) };
        if max_leaf < 7 {
            return false;
        }
        // SAFETY: as above; leaf 7 is supported (checked).
        let max_sub = unsafe { __cpuid_count(7, 0) }.eax;
        // SAFETY: as above; sub-leaf 1 is supported (checked).
        max_sub >= 1 && unsafe { __cpuid_count(7, 1) }.eax & (1 << 5) != 0
    }

    /// `c[8 × 48] (+)= a·b` over `kc` pairs: zmm0–23 hold the 8 × 3
    /// accumulators, zmm24–26 the three W vectors of a k pair, zmm27/28 the
    /// broadcast x pairs (`vpbroadcastd`, rows addressed from two bases and
    /// two scaled strides); one `vdpbf16ps` per accumulator and k pair.
    /// `load_c` selects loading `c` or starting from zero.
    ///
    /// # Safety
    /// The CPU supports avx512f and avx512bf16 (`detect`); `a` holds MR rows
    /// of `kc` u32 with row stride `lda`, `b` holds `kc·NR` u32; `c` is
    /// valid for reads and writes of an MR × NR f32 tile with row stride
    /// `ldc` elements.
    pub(super) unsafe fn kernel(
        kc: usize,
        a: *const u32,
        lda: usize,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        load_c: bool,
    ) {
        // SAFETY: the caller's contract covers every address read or
        // written; all vector registers are declared clobbered through
        // `clobber_abi("C")` (zmm16–31 only exist for the compiler when it
        // targets avx512f, and then they are in that set), the general
        // registers used are operands (rsi = row 0 of a, r9 = row 1,
        // rdx / r11 = 1 / 3 row strides of a in bytes, rdi = b, rcx = k
        // pairs left, r8 = row pointer into c), no stack is used; `vzeroupper`
        // leaves the upper state clean for SSE code.
        unsafe {
            asm!(
                tile_8x48_begin!(),
                "test rcx, rcx",
                "jz 5f",
                "4:",
                tile_8x48_step!("vpbroadcastd", "vdpbf16ps", 0, 64, 128, 0),
                "add rsi, 4; add r9, 4; add rdi, 192",
                "dec rcx",
                "jnz 4b",
                "5:",
                tile_8x48_store!(),
                "vzeroupper",
                load = in(reg) usize::from(load_c),
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

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx;
mod widened;

/// The AMX microkernel's pieces, for `benches/amx_probe.rs` alone (it
/// times the real loop in isolation); not an API.
#[doc(hidden)]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod amx_probe {
    /// The tile configuration, loaded on this thread while it lives.
    pub struct Tiles(#[allow(dead_code)] super::amx::Configured);

    impl Tiles {
        /// None where the AMX path is not available.
        pub fn new() -> Option<Tiles> {
            super::amx_available().then(|| Tiles(super::amx::Configured::new()))
        }

        /// The microkernel's loop: `steps` × 16 k pairs of the 2 × 2
        /// tile products (x tiles `a0`, `a1` at `lda` bytes; W tiles
        /// `b0`, `b1` in 48-column panels).
        ///
        /// # Safety
        /// Every operand is valid for the reads of `steps` steps; `steps ≥ 1`.
        pub unsafe fn product_2x2(
            &self,
            steps: usize,
            (a0, a1, lda): (*const u32, *const u32, usize),
            (b0, b1): (*const u32, *const u32),
        ) {
            // SAFETY: the caller's contract; tiles configured (self).
            unsafe { super::amx::product_2x2(steps, a0, a1, lda, b0, b1) }
        }

        /// Stores the four accumulators as a 32 × 32 f32 block at `y`
        /// (row stride `ys` bytes).
        ///
        /// # Safety
        /// `y` is valid for writes of the block.
        pub unsafe fn store(&self, y: *mut f32, ys: usize) {
            let at = |i: usize| y.wrapping_byte_add((i / 2) * 16 * ys + (i % 2) * 64);
            for i in 0..4 {
                // SAFETY: the caller's contract; tiles configured (self).
                unsafe { super::amx::store_acc(i, at(i), ys) };
            }
        }
    }
}
