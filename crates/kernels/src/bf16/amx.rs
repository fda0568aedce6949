//! The AMX-BF16 path, in `asm!` (the AMX intrinsics are unstable).
//!
//! # Kernel
//!
//! One call of the microkernel computes a 32 × 32 block of `y` as a 2 × 2
//! grid of 16 × 16 f32 tiles (tmm0–3). Per 16 k pairs it loads two tiles
//! of x (tmm4/5: 16 rows × 16 pairs each, straight from the packed
//! `[row][pair]` block) and two tiles of W (tmm6/7: 16 pairs × 16 columns,
//! straight from the packed 48-column panels, whose rows are 192 bytes
//! apart; the two may lie in different panels), and runs four
//! `tdpbf16ps`: one tile load per product. The earlier 16 × 48 kernel
//! (one x tile, three W tiles, three products) loaded 4 tiles per 3
//! products, and ran at 0.55–0.8× oneDNN (bench/RESULTS.md, session 9).
//!
//! # Blocking (the task loop, [`task`])
//!
//! A task owns up to `MC_AMX` rows of `y` and a range of panels. Per k
//! block it packs its rows of x once (L2; an input already rounded to bf16,
//! [`super::Bf16Rows`], is read in place), then walks W in blocks of
//! panels that fit in L2 beside it ([`W_BLOCK_BYTES`]); within a W block
//! it takes x two tiles (32 rows) at a time and, per k sub-block of at
//! most [`KH_AMX`] pairs, runs them against every tile pair of the block,
//! so the two x tiles (≤ 18 KiB) stay in L1 while W streams from L2.
//! Between sub-blocks the accumulators pass through the 32 rows of `y`
//! the pair writes, which stay in L2 (the f32 round trip is exact).
//!
//! # Numerics
//!
//! Within a tile the hardware's accumulation order is its own (even
//! element first, where `vdpbf16ps` takes the odd one first), so AMX and
//! AVX-512 results agree to f32 rounding, not bit for bit. Each output
//! element's sum runs over k in increasing blocks, whatever the task
//! split: results are deterministic and independent of the thread count.
//!
//! # Permission
//!
//! Linux gives a process the 8 KiB tile state only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); without it
//! the first tile instruction raises SIGILL, so [`detect`] asks once and
//! reports the path unavailable when the kernel refuses. The tile
//! configuration is loaded once per rayon task ([`Configured`]), not per
//! call.
use super::{pack_x, OutPtr, PackedBf16, XIn, AMX_PAIRS, NR};
use core::arch::asm;

const _: () = assert!(NR == 48 && AMX_PAIRS == 16);

/// Rows (and columns) of one tile.
const TILE: usize = 16;
/// Tile columns per packed panel.
const TILES_PER_PANEL: usize = NR / TILE;
/// Bytes of one packed pair row of a panel (the W tiles' row stride).
const PANEL_ROW_BYTES: usize = NR * 4;
/// Maximum k pairs per sub-block of a k block: two x tiles of 16 rows ×
/// 144 pairs (18 KiB) stay in L1 beside the W tiles streaming past. K =
/// 768 runs as 3 sub-blocks of 128 pairs, K = 576 as 2 of 144: 3–19 %
/// faster than whole k blocks on all seven bench shapes, and ahead of
/// sub-blocks of at most 128, 192 or 256 pairs (bench/RESULTS.md,
/// session 14).
const KH_AMX: usize = 144;
/// Bytes of W per L2 block: measured on the 2-core Xeon (2 MiB L2 per
/// core), beside a task's packed x (≤ 512 rows × 384 pairs × 4 B).
const W_BLOCK_BYTES: usize = 1 << 20;

/// The tile configuration (palette 1): tmm0–7 are 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
const XFEATURE_XTILEDATA: libc::c_long = 18;

/// AMX-TILE (CPUID.7.0:EDX[24]) and AMX-BF16 (EDX[22]), the tile
/// state components among those the CPU can save (CPUID.0xD.0:EAX bits
/// 17, 18), and Linux's permission for this process (which also says
/// whether the OS enabled them).
#[allow(unused_unsafe)]
pub(super) fn detect() -> bool {
    use core::arch::x86_64::{__cpuid_count, __get_cpuid_max};
    // SAFETY: CPUID exists on every x86_64 CPU.
    let (max_leaf, _) = unsafe { __get_cpuid_max(0) };
    if max_leaf < 0xD {
        return false;
    }
    // SAFETY: leaf 7 is supported (checked).
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    if edx & (1 << 24) == 0 || edx & (1 << 22) == 0 {
        return false;
    }
    // CPUID leaf 0xD sub-leaf 0, EAX: the state components the CPU
    // supports; both tile components must be there. Whether the OS
    // enabled them is what `arch_prctl` answers below.
    // SAFETY: leaf 0xD is supported (checked).
    let xcr0 = unsafe { __cpuid_count(0xD, 0) }.eax;
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    // SAFETY: a plain syscall with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// The tile configuration loaded on this thread for as long as it
/// lives; dropping it releases the tile state (`tilerelease`).
pub(super) struct Configured(());

impl Configured {
    /// Loads [`CONFIG`] (`ldtilecfg`).
    ///
    /// Only call after `detect()` returned true in this process.
    pub(super) fn new() -> Configured {
        // SAFETY: AMX is available and permitted (the caller runs the
        // AMX path only after `detect()`); `ldtilecfg` reads the 64
        // bytes of the static, 64-byte aligned configuration.
        unsafe { asm!("ldtilecfg [{cfg}]", cfg = in(reg) &CONFIG, options(nostack, readonly)) };
        Configured(())
    }
}

impl Drop for Configured {
    fn drop(&mut self) {
        // SAFETY: releases the tile state this value configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Loads accumulator tile `i` (tmm0–3) from 16 rows of 16 f32 at
/// `stride` bytes.
///
/// # Safety
/// A [`Configured`] is alive on this thread; `p` is valid for reads of
/// the 16 rows.
unsafe fn load_acc(i: usize, p: *const f32, stride: usize) {
    // SAFETY: the caller's contract; the tile registers are invisible to
    // the compiler and keep their contents until the next tile asm block.
    unsafe {
        match i {
            0 => {
                asm!("tileloadd tmm0, [{p} + {s}*1]", p = in(reg) p, s = in(reg) stride, options(nostack, readonly))
            }
            1 => {
                asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) p, s = in(reg) stride, options(nostack, readonly))
            }
            2 => {
                asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) p, s = in(reg) stride, options(nostack, readonly))
            }
            _ => {
                asm!("tileloadd tmm3, [{p} + {s}*1]", p = in(reg) p, s = in(reg) stride, options(nostack, readonly))
            }
        }
    }
}

/// Stores accumulator tile `i` (tmm0–3) to 16 rows of 16 f32 at `stride`
/// bytes.
///
/// # Safety
/// A [`Configured`] is alive on this thread; `p` is valid for writes of
/// the 16 rows.
pub(super) unsafe fn store_acc(i: usize, p: *mut f32, stride: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        match i {
            0 => {
                asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) p, s = in(reg) stride, options(nostack))
            }
            1 => {
                asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) p, s = in(reg) stride, options(nostack))
            }
            2 => {
                asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) p, s = in(reg) stride, options(nostack))
            }
            _ => {
                asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) p, s = in(reg) stride, options(nostack))
            }
        }
    }
}

/// Zeroes the four accumulator tiles.
///
/// # Safety
/// A [`Configured`] is alive on this thread.
unsafe fn zero_acc() {
    // SAFETY: touches only tile registers.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        )
    };
}

/// `acc[r][c] += a_r·b_c` (r, c ∈ {0, 1}; tile `2r + c`) over `steps` × 16
/// k pairs: `a0`, `a1` are 16 rows of pairs at `lda` bytes, `b0`, `b1` 16
/// columns of a packed panel (pair rows 192 bytes apart).
///
/// # Safety
/// A [`Configured`] is alive on this thread; `steps ≥ 1`; each `a` holds
/// 16 rows of `16·steps` u32 at stride `lda`; each `b` is valid for
/// `16·steps` pair rows of 64 bytes at stride 192.
pub(super) unsafe fn product_2x2(
    steps: usize,
    a0: *const u32,
    a1: *const u32,
    lda: usize,
    b0: *const u32,
    b1: *const u32,
) {
    // SAFETY: the caller's contract covers every address read; the tile
    // registers are not visible to the compiler; the general registers
    // used are operands; no stack is used.
    unsafe {
        asm!(
            "2:",
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b0}, {bstep}",
            "add {b1}, {bstep}",
            "dec {steps}",
            "jnz 2b",
            lda = in(reg) lda,
            ldb = in(reg) PANEL_ROW_BYTES,
            bstep = in(reg) AMX_PAIRS * PANEL_ROW_BYTES,
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            steps = inout(reg) steps => _,
            options(nostack, readonly),
        );
    }
}

/// Where one accumulator tile goes: straight into `y` when the 16 × 16
/// block lies inside it, else through a scratch tile (rows or columns
/// past the edge).
struct Target {
    /// Row and column of the tile's corner in `y`.
    row: usize,
    col: usize,
    /// Valid rows and columns (16 × 16 for a direct tile).
    rows: usize,
    cols: usize,
}

impl Target {
    /// The 2 × 2 grid of x tiles `ts` (16-row tiles from row `r0`) by
    /// tile columns `us`, in accumulator order, in a `y` of `row_end`
    /// rows (for this task) and `n` columns.
    fn grid(
        (r0, row_end, n): (usize, usize, usize),
        ts: [usize; 2],
        us: [usize; 2],
    ) -> [Target; 4] {
        [
            (ts[0], us[0]),
            (ts[0], us[1]),
            (ts[1], us[0]),
            (ts[1], us[1]),
        ]
        .map(|(t, u)| {
            let (row, col) = (r0 + t * TILE, u * TILE);
            Target {
                row,
                col,
                rows: row_end.saturating_sub(row).min(TILE),
                cols: n.saturating_sub(col).min(TILE),
            }
        })
    }
}

/// One AMX task: rows `[r0, r0 + rows)` of `y` (`m × w.n`), column panels
/// `[j0, j1)`, k in blocks of `kc` pairs (a multiple of 16).
///
/// # Safety
/// `out` points to the `m × w.n` output, no other thread accesses this
/// task's rectangle during the call, and `detect()` returned true.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn task(
    x: XIn<'_>,
    w: &PackedBf16,
    out: OutPtr,
    m: usize,
    (r0, rows): (usize, usize),
    (j0, j1): (usize, usize),
    kc: usize,
    accumulate: bool,
    xa: &mut Vec<u32>,
) {
    let n = w.n;
    let tiles = rows.div_ceil(TILE);
    let row_end = (r0 + rows).min(m);
    let _config = Configured::new();
    let mut scratch = [[0f32; TILE * TILE]; 4];
    let mut pk0 = 0;
    while pk0 < w.kp {
        let kcur = kc.min(w.kp - pk0);
        let kpad = kcur.div_ceil(AMX_PAIRS) * AMX_PAIRS;
        // x tiles: rows of an already rounded input are read in place
        // (16 rows at its row stride), else packed per tile of 16 rows.
        let (xa, lda): (&[u32], usize) = match x {
            XIn::Bf16(rows_in) => (
                &rows_in.pairs()[r0 * rows_in.stride + pk0..],
                rows_in.stride,
            ),
            XIn::F32(_) => (
                pack_x(x, w.k, (r0, rows, TILE), (pk0, kcur, kpad), xa),
                kpad,
            ),
        };
        // Offset of x tile t: 16 rows of `lda` pairs.
        let tile_at = |t: usize| &xa[t * TILE * lda..][..(TILE - 1) * lda + kpad];
        let load = accumulate || pk0 > 0;
        // Even sub-blocks of at most KH_AMX pairs, whole tiles.
        let kh = kpad.div_ceil(kpad.div_ceil(KH_AMX)).div_ceil(AMX_PAIRS) * AMX_PAIRS;
        let block = (W_BLOCK_BYTES / (kpad * PANEL_ROW_BYTES)).max(1);
        for jb in (j0..j1).step_by(block) {
            // Tile columns of this W block.
            let (u0, u1) = (jb * TILES_PER_PANEL, (jb + block).min(j1) * TILES_PER_PANEL);
            for t in (0..tiles).step_by(2) {
                // An odd last x tile pairs with itself: both rows of
                // products compute, and store, the same values.
                let t1 = (t + 1).min(tiles - 1);
                // The k block in sub-blocks whose two x tiles stay in L1
                // while the block's W streams past; between sub-blocks the
                // accumulators go through this x tile pair's rows of y,
                // which stay in L2.
                for h0 in (0..kpad).step_by(kh) {
                    let hl = kh.min(kpad - h0);
                    let a = [&tile_at(t)[h0..], &tile_at(t1)[h0..]];
                    for u in (u0..u1).step_by(2) {
                        let u1b = (u + 1).min(u1 - 1);
                        let b = [w_tile(w, u, pk0 + h0, hl), w_tile(w, u1b, pk0 + h0, hl)];
                        let targets = Target::grid((r0, row_end, n), [t, t1], [u, u1b]);
                        let load = load || h0 > 0;
                        // SAFETY: the targets lie in this task's rows and
                        // panels (caller's contract); `a` and `b` are the
                        // extents `product_2x2` reads (checked slices).
                        unsafe { run_2x2((hl, lda), a, b, &targets, out, n, load, &mut scratch) };
                    }
                }
            }
        }
        pk0 += kcur;
    }
}

/// The 16 columns of tile column `u` of W (panel `u / 3`), k pairs
/// `[p0, p0 + len)`: a slice from the tile's first column to the end of
/// its last pair row (the loads read 64 of every 192 bytes).
fn w_tile(w: &PackedBf16, u: usize, p0: usize, len: usize) -> &[u32] {
    let chunk = w.chunk(u / TILES_PER_PANEL, p0, len);
    let first = (u % TILES_PER_PANEL) * TILE;
    &chunk[first..(len - 1) * NR + first + TILE]
}

/// Loads (or zeroes) the four accumulators, runs the products, stores
/// them to their targets.
///
/// # Safety
/// As [`task`]; every target lies in the caller's rectangle of `y`.
#[allow(clippy::too_many_arguments)]
unsafe fn run_2x2(
    (kpad, lda): (usize, usize),
    a: [&[u32]; 2],
    b: [&[u32]; 2],
    targets: &[Target; 4],
    out: OutPtr,
    n: usize,
    load: bool,
    scratch: &mut [[f32; TILE * TILE]; 4],
) {
    let direct = |t: &Target| t.rows == TILE && t.cols == TILE;
    let at = |t: &Target| out.0.wrapping_add(t.row * n + t.col);
    let stride = n * 4;
    if load {
        for (i, t) in targets.iter().enumerate() {
            if direct(t) {
                // SAFETY: a full tile inside `y` (caller's contract).
                unsafe { load_acc(i, at(t), stride) };
            } else {
                for r in 0..t.rows {
                    // SAFETY: row t.row + r < m, columns t.col.. + t.cols ≤ n.
                    let src = unsafe { std::slice::from_raw_parts(at(t).add(r * n), t.cols) };
                    scratch[i][r * TILE..r * TILE + t.cols].copy_from_slice(src);
                }
                // SAFETY: the scratch tile is 16 rows of 64 bytes.
                unsafe { load_acc(i, scratch[i].as_ptr(), TILE * 4) };
            }
        }
    } else {
        // SAFETY: only tile registers.
        unsafe { zero_acc() };
    }
    assert!(a.iter().all(|s| s.len() >= (TILE - 1) * lda + kpad));
    assert!(b.iter().all(|s| s.len() >= (kpad - 1) * NR + TILE));
    // SAFETY: extents asserted above; kpad is a positive multiple of 16.
    unsafe {
        product_2x2(
            kpad / AMX_PAIRS,
            a[0].as_ptr(),
            a[1].as_ptr(),
            lda * 4,
            b[0].as_ptr(),
            b[1].as_ptr(),
        )
    };
    for (i, t) in targets.iter().enumerate() {
        if direct(t) {
            // SAFETY: a full tile inside `y`, owned by this task.
            unsafe { store_acc(i, at(t), stride) };
        } else {
            // SAFETY: the scratch tile is 16 rows of 64 bytes.
            unsafe { store_acc(i, scratch[i].as_mut_ptr(), TILE * 4) };
            for r in 0..t.rows {
                // SAFETY: as for the read above; this task owns it.
                let dst = unsafe { std::slice::from_raw_parts_mut(at(t).add(r * n), t.cols) };
                dst.copy_from_slice(&scratch[i][r * TILE..r * TILE + t.cols]);
            }
        }
    }
}
