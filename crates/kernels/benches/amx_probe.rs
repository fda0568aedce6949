//! Where the AMX microkernel's time goes, on one core: the 2 × 2 tile loop
//! of `bf16::amx` (four `tdpbf16ps` per 16 k pairs, one tile load per
//! product) with its operands in L1, with W streaming from L2 in 1 MiB
//! blocks as the task loop does (eight x tile pairs per block), and with
//! the output tiles stored to a large f32 `y` as a product does. Prints ns
//! per `tdpbf16ps` and the implied GFLOP/s per core (16·16·32·2 flops per
//! instruction). Linux with AMX only; elsewhere it says so and exits.
//!
//! `taskset -c 0 cargo bench -p saelab-kernels --bench amx_probe`
//! (bench/RESULTS.md, session 10).

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod probe {
    use saelab_kernels::bf16::amx_probe::Tiles;
    use std::time::Instant;

    /// One cache line.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Line([u8; 64]);

    /// A 64-byte aligned buffer of at least `n` bytes, touched (tile rows
    /// that straddle lines load several times slower: session 9).
    fn buffer(n: usize) -> Vec<Line> {
        vec![Line([1; 64]); n.div_ceil(64)]
    }

    /// Bytes between pair rows of a packed 48-column W panel.
    const PANEL_ROW: usize = 192;

    /// One case: k pairs per block `kp`, W of `w_cols` columns walked in
    /// blocks of `block_cols`, each block by `passes` x tile pairs (cycling
    /// over eight), the outputs stored to a y of `w_cols` columns or not.
    struct Case {
        name: &'static str,
        kp: usize,
        block_cols: usize,
        w_cols: usize,
        passes: usize,
        stores: bool,
    }

    const CASES: [Case; 6] = [
        Case {
            name: "all operands in L1 (kp 32, W 48 cols)",
            kp: 32,
            block_cols: 48,
            w_cols: 48,
            passes: 4000,
            stores: false,
        },
        Case {
            name: "W from L2 (kp 256, 1 MiB blocks, 8 passes)",
            kp: 256,
            block_cols: 1008,
            w_cols: 4032,
            passes: 8,
            stores: false,
        },
        Case {
            name: "W from L2 (kp 384, 1 MiB blocks, 8 passes)",
            kp: 384,
            block_cols: 672,
            w_cols: 12288,
            passes: 8,
            stores: false,
        },
        Case {
            name: "  + stores to a 12288-column f32 y",
            kp: 384,
            block_cols: 672,
            w_cols: 12288,
            passes: 8,
            stores: true,
        },
        Case {
            name: "W from L2 (kp 128, 0.5 MiB blocks, 8 passes)",
            kp: 128,
            block_cols: 2016,
            w_cols: 12288,
            passes: 8,
            stores: false,
        },
        Case {
            name: "  + stores to a 12288-column f32 y",
            kp: 128,
            block_cols: 2016,
            w_cols: 12288,
            passes: 8,
            stores: true,
        },
    ];

    /// Best of five walks, in ns per `tdpbf16ps`.
    fn run(tiles: &Tiles, c: &Case) -> f64 {
        let lda = c.kp * 4;
        let x = buffer(8 * 32 * lda);
        let panels = c.w_cols / 48;
        let block_panels = c.block_cols / 48;
        let w = buffer(panels * c.kp * PANEL_ROW);
        let mut y = buffer(8 * 32 * c.w_cols * 4);
        let ys = c.w_cols * 4;
        let x0 = x.as_ptr().cast::<u32>();
        let w0 = w.as_ptr().cast::<u32>();
        let y0 = y.as_mut_ptr().cast::<f32>();
        // Tile column u: panel u / 3, 16 of its 48 columns.
        let tile = |u: usize| w0.wrapping_byte_add((u / 3) * c.kp * PANEL_ROW + (u % 3) * 64);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let mut products = 0usize;
            for blk in (0..panels).step_by(block_panels) {
                let (u0, u1) = (3 * blk, 3 * (blk + block_panels).min(panels));
                for pass in 0..c.passes {
                    let xp = (pass % 8) * 32;
                    let a0 = x0.wrapping_byte_add(xp * lda);
                    for u in (u0..u1 - 1).step_by(2) {
                        // SAFETY: x rows xp..xp + 32, W tiles u, u + 1 (kp
                        // pair rows each) and the y block at (xp, 16u) lie
                        // in their buffers; steps ≥ 1.
                        unsafe {
                            let a = (a0, a0.wrapping_byte_add(16 * lda), lda);
                            tiles.product_2x2(c.kp / 16, a, (tile(u), tile(u + 1)));
                            if c.stores {
                                tiles.store(y0.wrapping_byte_add(xp * ys + u * 64), ys);
                            }
                        }
                        products += c.kp / 4;
                    }
                }
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e9 / products as f64);
        }
        best
    }

    pub fn main() {
        let Some(tiles) = Tiles::new() else {
            println!("amx_probe: no AMX here");
            return;
        };
        println!("| case (one core) | ns per tdpbf16ps | GFLOP/s |");
        println!("|---|---|---|");
        for c in &CASES {
            let ns = run(&tiles, c);
            println!(
                "| {:44} | {ns:6.2} | {:6.0} |",
                c.name,
                16.0 * 16.0 * 32.0 * 2.0 / ns
            );
        }
    }
}

fn main() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    probe::main();
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    println!("amx_probe: x86_64 Linux only");
}
