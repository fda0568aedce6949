//! `asm!` template pieces shared by the two 8 × 48 AVX-512 microkernels
//! (`bf16`'s `vdpbf16ps` kernel and `f32gemm`'s `vfmadd231ps` kernel):
//! the tile lives in zmm0–23 (row r in zmm 3r..3r+2), one k step's three W
//! vectors in zmm24–26, the broadcast x values in zmm27/28. Rows of x are
//! addressed from rsi (row 0) and r9 (row 1) with the row stride in rdx and
//! three strides in r11; the tile in memory from `{c}` with the row stride
//! `{ldc}` bytes (r8 walks it).

/// Loads the 8 × 48 f32 tile at `{c}` into zmm0–23.
macro_rules! tile_8x48_load {
    () => {
        concat!(
            "mov r8, {c}\n",
            "vmovups zmm0, zmmword ptr [r8]; vmovups zmm1, zmmword ptr [r8 + 64]; vmovups zmm2, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm3, zmmword ptr [r8]; vmovups zmm4, zmmword ptr [r8 + 64]; vmovups zmm5, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm6, zmmword ptr [r8]; vmovups zmm7, zmmword ptr [r8 + 64]; vmovups zmm8, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm9, zmmword ptr [r8]; vmovups zmm10, zmmword ptr [r8 + 64]; vmovups zmm11, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm12, zmmword ptr [r8]; vmovups zmm13, zmmword ptr [r8 + 64]; vmovups zmm14, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm15, zmmword ptr [r8]; vmovups zmm16, zmmword ptr [r8 + 64]; vmovups zmm17, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm18, zmmword ptr [r8]; vmovups zmm19, zmmword ptr [r8 + 64]; vmovups zmm20, zmmword ptr [r8 + 128]; add r8, {ldc}\n",
            "vmovups zmm21, zmmword ptr [r8]; vmovups zmm22, zmmword ptr [r8 + 64]; vmovups zmm23, zmmword ptr [r8 + 128]",
        )
    };
}

/// Zeroes zmm0–23.
macro_rules! tile_8x48_zero {
    () => {
        concat!(
            "vpxord zmm0, zmm0, zmm0; vpxord zmm1, zmm1, zmm1; vpxord zmm2, zmm2, zmm2\n",
            "vpxord zmm3, zmm3, zmm3; vpxord zmm4, zmm4, zmm4; vpxord zmm5, zmm5, zmm5\n",
            "vpxord zmm6, zmm6, zmm6; vpxord zmm7, zmm7, zmm7; vpxord zmm8, zmm8, zmm8\n",
            "vpxord zmm9, zmm9, zmm9; vpxord zmm10, zmm10, zmm10; vpxord zmm11, zmm11, zmm11\n",
            "vpxord zmm12, zmm12, zmm12; vpxord zmm13, zmm13, zmm13; vpxord zmm14, zmm14, zmm14\n",
            "vpxord zmm15, zmm15, zmm15; vpxord zmm16, zmm16, zmm16; vpxord zmm17, zmm17, zmm17\n",
            "vpxord zmm18, zmm18, zmm18; vpxord zmm19, zmm19, zmm19; vpxord zmm20, zmm20, zmm20\n",
            "vpxord zmm21, zmm21, zmm21; vpxord zmm22, zmm22, zmm22; vpxord zmm23, zmm23, zmm23",
        )
    };
}

/// Asks for the 8 × 48 f32 tile at `{c}` in L1 for writing (`prefetchw`,
/// three lines a row), so that the read-for-ownership of the lines the
/// final store writes overlaps the k loop instead of stalling the store
/// and the next tile's loads behind it.
macro_rules! tile_8x48_prefetchw {
    () => {
        concat!(
            "mov r8, {c}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]; add r8, {ldc}\n",
            "prefetchw [r8]; prefetchw [r8 + 64]; prefetchw [r8 + 128]",
        )
    };
}

/// Stores zmm0–23 as the 8 × 48 f32 tile at `{c}`.
macro_rules! tile_8x48_store {
    () => {
        concat!(
            "mov r8, {c}\n",
            "vmovups zmmword ptr [r8], zmm0; vmovups zmmword ptr [r8 + 64], zmm1; vmovups zmmword ptr [r8 + 128], zmm2; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm3; vmovups zmmword ptr [r8 + 64], zmm4; vmovups zmmword ptr [r8 + 128], zmm5; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm6; vmovups zmmword ptr [r8 + 64], zmm7; vmovups zmmword ptr [r8 + 128], zmm8; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm9; vmovups zmmword ptr [r8 + 64], zmm10; vmovups zmmword ptr [r8 + 128], zmm11; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm12; vmovups zmmword ptr [r8 + 64], zmm13; vmovups zmmword ptr [r8 + 128], zmm14; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm15; vmovups zmmword ptr [r8 + 64], zmm16; vmovups zmmword ptr [r8 + 128], zmm17; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm18; vmovups zmmword ptr [r8 + 64], zmm19; vmovups zmmword ptr [r8 + 128], zmm20; add r8, {ldc}\n",
            "vmovups zmmword ptr [r8], zmm21; vmovups zmmword ptr [r8 + 64], zmm22; vmovups zmmword ptr [r8 + 128], zmm23",
        )
    };
}

/// One k step: the three W vectors at `[rdi + w]` (`w` = $w, $w + 64,
/// $w + 128 given as three literals), each row's x value broadcast by
/// `$bcast` from its row address + `$x`, and `$op acc, x, w` into the 24
/// accumulators.
macro_rules! tile_8x48_step {
    ($bcast:literal, $op:literal, $w0:literal, $w1:literal, $w2:literal, $x:literal) => {
        concat!(
            "vmovups zmm24, zmmword ptr [rdi + ",
            $w0,
            "]; vmovups zmm25, zmmword ptr [rdi + ",
            $w1,
            "]; vmovups zmm26, zmmword ptr [rdi + ",
            $w2,
            "]\n",
            $bcast,
            " zmm27, dword ptr [rsi + ",
            $x,
            "]; ",
            $op,
            " zmm0, zmm27, zmm24; ",
            $op,
            " zmm1, zmm27, zmm25; ",
            $op,
            " zmm2, zmm27, zmm26\n",
            $bcast,
            " zmm28, dword ptr [r9 + ",
            $x,
            "]; ",
            $op,
            " zmm3, zmm28, zmm24; ",
            $op,
            " zmm4, zmm28, zmm25; ",
            $op,
            " zmm5, zmm28, zmm26\n",
            $bcast,
            " zmm27, dword ptr [rsi + rdx*2 + ",
            $x,
            "]; ",
            $op,
            " zmm6, zmm27, zmm24; ",
            $op,
            " zmm7, zmm27, zmm25; ",
            $op,
            " zmm8, zmm27, zmm26\n",
            $bcast,
            " zmm28, dword ptr [rsi + r11 + ",
            $x,
            "]; ",
            $op,
            " zmm9, zmm28, zmm24; ",
            $op,
            " zmm10, zmm28, zmm25; ",
            $op,
            " zmm11, zmm28, zmm26\n",
            $bcast,
            " zmm27, dword ptr [rsi + rdx*4 + ",
            $x,
            "]; ",
            $op,
            " zmm12, zmm27, zmm24; ",
            $op,
            " zmm13, zmm27, zmm25; ",
            $op,
            " zmm14, zmm27, zmm26\n",
            $bcast,
            " zmm28, dword ptr [r9 + rdx*4 + ",
            $x,
            "]; ",
            $op,
            " zmm15, zmm28, zmm24; ",
            $op,
            " zmm16, zmm28, zmm25; ",
            $op,
            " zmm17, zmm28, zmm26\n",
            $bcast,
            " zmm27, dword ptr [rsi + r11*2 + ",
            $x,
            "]; ",
            $op,
            " zmm18, zmm27, zmm24; ",
            $op,
            " zmm19, zmm27, zmm25; ",
            $op,
            " zmm20, zmm27, zmm26\n",
            $bcast,
            " zmm28, dword ptr [r9 + r11*2 + ",
            $x,
            "]; ",
            $op,
            " zmm21, zmm28, zmm24; ",
            $op,
            " zmm22, zmm28, zmm25; ",
            $op,
            " zmm23, zmm28, zmm26",
        )
    };
}

/// The kernel's start: the x row addresses (r9 = row 1, r11 = 3 strides),
/// then the tile loaded from `{c}` when `{load}` is non-zero, else zeroed.
/// Uses local labels 2 and 3.
macro_rules! tile_8x48_begin {
    () => {
        concat!(
            "lea r11, [rdx + rdx*2]\n",
            "lea r9, [rsi + rdx]\n",
            "test {load}, {load}\n",
            "jz 2f\n",
            tile_8x48_load!(),
            "\njmp 3f\n",
            "2:\n",
            tile_8x48_zero!(),
            "\n3:",
        )
    };
}
