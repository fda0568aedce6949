//! GEMM rate (GFLOP/s) of the dense products of a forward pass, for the
//! build's backend (`gemm` crate, or system OpenBLAS with `--features openblas`).
//! Run: `cargo bench -p saelab-lm --bench gemm [--features openblas]`.

use saelab_lm::ops::{matmul, MatRef};
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

fn main() {
    let shapes = [
        ("gpt2 c_attn", 2048, 2304, 768, false),
        ("gpt2 c_fc", 2048, 3072, 768, false),
        ("gpt2 mlp c_proj", 2048, 768, 3072, false),
        ("smollm2 qkv (W^T)", 2048, 960, 576, true),
        ("smollm2 gate_up (W^T)", 2048, 3072, 576, true),
        ("smollm2 down (W^T)", 2048, 576, 1536, true),
        ("square 2048", 2048, 2048, 2048, false),
    ];
    let backend = if cfg!(feature = "openblas") {
        "openblas"
    } else {
        "gemm crate"
    };
    for (name, m, n, k, t) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let bv = if t {
            MatRef::new(&b, 1, k as isize)
        } else {
            MatRef::new(&b, n as isize, 1)
        };
        matmul(
            m,
            n,
            k,
            MatRef::new(&a, k as isize, 1),
            bv,
            &mut c,
            false,
            true,
        );
        let mut best = 0f64;
        let mut all = vec![];
        for _ in 0..7 {
            let t0 = Instant::now();
            matmul(
                m,
                n,
                k,
                MatRef::new(&a, k as isize, 1),
                bv,
                &mut c,
                false,
                true,
            );
            let g = 2.0 * (m * n * k) as f64 / t0.elapsed().as_secs_f64() / 1e9;
            best = best.max(g);
            all.push(g);
        }
        all.sort_by(f64::total_cmp);
        println!(
            "{backend:10} {name:22} {m}x{n}x{k}: median {:.1} GFLOP/s, best {:.1}",
            all[3], best
        );
    }
}
