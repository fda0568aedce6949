//! Causal attention for one (sequence, head) at head width 64 by hand, with
//! AVX-512 ([`avx512`]) or AVX2 + FMA ([`avx2`]), in place of the `gemm`
//! calls of [`crate::ops::causal_attention`] (which it serves, and which
//! stays the path for other widths and CPUs).
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
//! four-row kernel before it. The softmax is `crate::simd`'s, whose forms
//! all give the scalar form's bits. So the AVX-512 and the AVX2 kernels
//! give the same bits (both tested against a scalar model of these
//! operations, `mul_add` chains and the scalar softmax, bit for bit). The
//! `gemm` path sums in its own blocked order, so it agrees with them to
//! f32 rounding, not bit for bit (tested against an f64 reference); each
//! is deterministic and independent of the thread count.
//!
//! The AVX2 form (session 19, for Zen 3, where this attention on the
//! `gemm` path was ≈ 9 % of a SmolLM2 pass) has 16 registers where
//! AVX-512 has 32: its steps take the eight rows as two halves of four
//! (scores 4 rows × 16 keys, `p·v` 4 rows × 16 columns, eight ymm
//! accumulators each), and its softmax keeps each 16-lane vector of the
//! scalar form as two ymm.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// The head width this kernel serves.
pub const HEAD_DIM: usize = 64;
/// Query rows per group (accumulator rows).
const ROWS: usize = 8;
/// Keys per full score block, and output columns per `p·v` pass (two zmm
/// per row on AVX-512).
const BLOCK: usize = 32;

/// Which instruction set runs the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// avx512f.
    Avx512,
    /// avx2 and fma.
    Avx2,
}

impl Isa {
    /// Whether this CPU can run it (the detection the element-wise loops
    /// and the packed f32 kernel already use).
    pub fn available(self) -> bool {
        match self {
            Isa::Avx512 => saelab_kernels::simd::Width::Avx512.available(),
            Isa::Avx2 => saelab_kernels::f32gemm::F32Path::Avx2.available(),
        }
    }
}

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

/// The four steps of [`run`], one implementation per instruction set.
/// Each is `unsafe`: the CPU must have the set, and the pointers must be
/// valid as each step's contract (in its module) says.
trait Kernels {
    /// `kt[c * width + j] = k[j][c]` for `j < seq`, zero up to `width`.
    unsafe fn transpose_keys(task: &Task, width: usize, kt: &mut Vec<f32>);
    /// `s[r * width + j] = scale · q[r]·k[j]` for the eight rows and every
    /// `j < keys` (and possibly a few past it).
    unsafe fn scores(
        q: [*const f32; ROWS],
        kt: &[f32],
        width: usize,
        keys: usize,
        scale: f32,
        s: &mut [f32],
    );
    /// The softmax of row r's first `live[r]` scores, in place.
    unsafe fn softmax_rows(s: *mut f32, width: usize, live: [usize; ROWS]);
    /// `out[r][c] = Σ_{j < keys} p[r * width + j] · v[j][c]` for `r < rows`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn weighted_values(
        p: &[f32],
        width: usize,
        keys: usize,
        v: *const f32,
        kv_stride: usize,
        out: [*mut f32; ROWS],
        rows: usize,
    );
}

/// Runs one task on `isa`.
///
/// # Safety
/// The CPU has `isa` ([`Isa::available`]); every row named by `task`
/// (`seq` rows of 64 values each for q, k, v, out) is valid, and the output
/// rows are not accessed by anyone else during the call.
pub unsafe fn run(isa: Isa, task: &Task, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        match isa {
            Isa::Avx512 => run_with::<avx512::Avx512>(task, scratch),
            Isa::Avx2 => run_with::<avx2::Avx2>(task, scratch),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, task, scratch);
}

/// [`run`] with the steps of `K`.
///
/// # Safety
/// As [`run`], for `K`'s instruction set.
unsafe fn run_with<K: Kernels>(task: &Task, scratch: &mut Scratch) {
    let seq = task.seq;
    let width = seq.next_multiple_of(BLOCK);
    // SAFETY: the caller's contract covers the key rows.
    unsafe { K::transpose_keys(task, width, &mut scratch.kt) };
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
        unsafe { K::scores(q, &scratch.kt, width, keys, scale, s) };
        let live = std::array::from_fn(|r| if r < rows { i0 + r + 1 } else { 0 });
        // SAFETY: row r of the scores holds `width` ≥ live[r] values.
        unsafe { K::softmax_rows(s.as_mut_ptr(), width, live) };
        for (r, row) in s.chunks_exact_mut(width).enumerate() {
            row[live[r]..keys].fill(0.0);
        }
        let out = std::array::from_fn(|r| task.out.wrapping_add((i0 + r) * task.out_stride));
        // SAFETY: value rows `0..keys` are valid (caller); output rows
        // `i0..i0 + rows` are this task's.
        unsafe { K::weighted_values(s, width, keys, task.v, task.kv_stride, out, rows) };
    }
}
