//! GEMM rate (GFLOP/s) of the opt-in bf16 paths (`saelab_lm::bf16`, weights
//! packed once; every path this CPU has: AMX, AVX512_BF16, portable when
//! nothing else) against the f32 products: `ops::matmul` (the `gemm`
//! crate) and, where the CPU has avx512f, the packed f32 kernel
//! (`saelab_kernels::f32gemm`, what `Linear::forward_into` runs in f32
//! there), on the dense products of a forward pass
//! and the SAE encoder, with 2 rayon threads. Packing time (once per weight
//! at model load) is reported separately and not in the rate. "bf16" rounds
//! the f32 x while packing it; "bf16, x rounded" takes x already rounded
//! (`Bf16Rows`, as the forward's norms hand it over and as PyTorch's bf16
//! matmul takes it).
//! Run: `cargo bench -p saelab-lm --bench bf16` (or `bench/gemm.sh`, which
//! runs PyTorch's matmul on the same shapes in the same run).

use saelab_kernels::aligned::AlignedF32;
use saelab_kernels::f32gemm::{self, PackedF32};
use saelab_lm::bf16::{
    bf16_paths, gemm_bf16_rows_with, gemm_bf16_with, Bf16Path, Bf16Rows, PackedBf16,
};
use saelab_lm::ops::{matmul, MatRef};
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

/// Threads (`RAYON_NUM_THREADS`, default 2) and timed runs (`BENCH_REPS`,
/// default 7): bench/gemm.sh sets both for saelab and PyTorch alike.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Median and best GFLOP/s of `reps` timed runs after one warm-up.
fn rate(flop: f64, reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut all: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            flop / t0.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    all.sort_by(f64::total_cmp);
    (all[reps / 2], all[reps - 1])
}

fn main() {
    let threads = env_or("RAYON_NUM_THREADS", 2);
    let reps = env_or("BENCH_REPS", 7);
    // (name, m, n, k, W stored [out, in] i.e. transposed)
    let shapes = [
        ("gpt2 c_attn", 2048, 2304, 768, false),
        ("gpt2 c_fc", 2048, 3072, 768, false),
        ("gpt2 mlp c_proj", 2048, 768, 3072, false),
        ("smollm2 gate_up (W^T)", 2048, 3072, 576, true),
        ("smollm2 down (W^T)", 2048, 576, 1536, true),
        ("smollm2 qkv (W^T)", 2048, 960, 576, true),
        ("sae encoder (W^T)", 4096, 12288, 768, true),
    ];
    // Without AMX or AVX512_BF16 the portable kernel is the only path (slow).
    let paths: Vec<Bf16Path> = bf16_paths()
        .into_iter()
        .filter(|p| *p != Bf16Path::Portable || bf16_paths().len() == 1)
        .collect();
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot build a {threads}-thread pool: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "bf16 paths: {} ({threads} rayon threads; GFLOP/s median (best) of {reps})",
        paths
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| {:22} | {:15} | {:15} | {:15} | {:11} | {:15} | {:15} | {:5} | {:8} | {:8} |",
        "shape",
        "m×n×k",
        "f32 matmul",
        "f32 packed",
        "bf16 path",
        "bf16",
        "bf16, x rounded",
        "ratio",
        "pack ms",
        "rel err"
    );
    println!(
        "|{:-<24}|{:-<17}|{:-<17}|{:-<17}|{:-<13}|{:-<17}|{:-<17}|{:-<7}|{:-<10}|{:-<10}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    pool.install(|| {
        // BENCH_SHAPES=sub1,sub2 runs only the shapes whose name holds one.
        let only = std::env::var("BENCH_SHAPES").unwrap_or_default();
        let picked = |name: &str| only.is_empty() || only.split(',').any(|s| name.contains(s));
        for (name, m, n, k, t) in shapes.into_iter().filter(|s| picked(s.0)) {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 2003) as f32 * 1e-3 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104_729) % 1999) as f32 * 1e-3 - 1.0)
                .collect();
            let flop = 2.0 * (m * n * k) as f64;
            let bv = if t {
                MatRef::new(&b, 1, k as isize)
            } else {
                MatRef::new(&b, n as isize, 1)
            };
            let mut c32 = vec![0.0f32; m * n];
            let (f_med, f_best) = rate(flop, reps, || {
                matmul(
                    m,
                    n,
                    k,
                    MatRef::new(&a, k as isize, 1),
                    bv,
                    &mut c32,
                    false,
                    true,
                )
            });
            // The packed f32 kernel, W packed once (as at model load).
            let packed_f32 = f32gemm::available().then(|| {
                let p = if t {
                    PackedF32::from_out_in(&b, k, n)
                } else {
                    PackedF32::from_in_out(&b, k, n)
                };
                let mut c = AlignedF32::zeros(m * n);
                rate(flop, reps, || f32gemm::gemm_f32(m, &a, &p, None, &mut c, false))
            });
            let packed_col = match packed_f32 {
                Some((med, best)) => format!("{med:6.1} ({best:6.1})"),
                None => "—".into(),
            };
            let t0 = Instant::now();
            let packed = if t {
                PackedBf16::from_out_in(&b, k, n)
            } else {
                PackedBf16::from_in_out(&b, k, n)
            };
            let pack_ms = t0.elapsed().as_secs_f64() * 1e3;
            for &path in &paths {
                // 64-byte aligned, as the forward pass and the SAE step
                // allocate their outputs (`saelab_kernels::aligned`).
                let mut c16 = AlignedF32::zeros(m * n);
                let (h_med, h_best) =
                    rate(flop, reps, || gemm_bf16_with(path, m, &a, &packed, &mut c16, false));
                // x already rounded by its producer (`Bf16Rows`), as the
                // forward's norms and activations hand it over, and as
                // PyTorch's bf16 matmul takes it.
                let rows = Bf16Rows::from_f32(&a, m, k);
                let (r_med, r_best) =
                    rate(flop, reps, || gemm_bf16_rows_with(path, &rows, &packed, &mut c16, false));
                let num: f64 = c16
                    .iter()
                    .zip(&c32)
                    .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
                    .sum();
                let den: f64 = c32.iter().map(|&q| f64::from(q).powi(2)).sum();
                println!(
                    "| {name:22} | {:15} | {:6.1} ({:6.1}) | {packed_col:15} | {:11} | {:6.1} ({:6.1}) | {:6.1} ({:6.1}) | {:4.2}× | {:8.1} | {:8.2e} |",
                    format!("{m}×{n}×{k}"),
                    f_med,
                    f_best,
                    path.name(),
                    h_med,
                    h_best,
                    r_med,
                    r_best,
                    h_med / f_med,
                    pack_ms,
                    (num / den).sqrt()
                );
            }
        }
    });
}
