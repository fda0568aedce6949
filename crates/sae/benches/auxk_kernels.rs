//! The sparse kernels of AuxK alone, at the shape of the `step` bench with
//! AuxK on (B 4096, d 768, n 12288, half the latents dead, k_aux 512 of
//! them per row): selection, decode, ∂L/∂z and the latent gradients,
//! median of 5 runs each, so their share of the step can be read directly.
//!
//! Run: `cargo bench -p saelab-sae --bench auxk_kernels`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::blocked::{CodeKernels, RowBlocks};
use saelab_sae::kernels::{topk_positive_among, LatentMask, SparseCodes};
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

const B: usize = 4096;
const D: usize = 768;
const N: usize = 12288;
const K_AUX: usize = 512;
const REPS: usize = 5;

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let dead: Vec<u32> = (1..N as u32).step_by(2).collect();
    let pre: Vec<f32> = (0..B * N).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let w_dec: Vec<f32> = (0..N * D).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let g: Vec<f32> = (0..B * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let xc: Vec<f32> = (0..B * D).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    println!(
        "rayon threads: {}; B {B}, d {D}, n {N}, {} dead, k_aux {K_AUX}; median of {REPS}",
        rayon::current_num_threads(),
        dead.len()
    );

    let mut codes = None;
    let dead = LatentMask::new(N, &dead);
    time("select (top k_aux among the dead)", || {
        use rayon::prelude::*;
        let rows: Vec<(Vec<u32>, Vec<f32>)> = pre
            .par_chunks(N)
            .map(|row| {
                let (mut ix, mut vs) = (vec![], vec![]);
                topk_positive_among(row, &dead, K_AUX, &mut ix, &mut vs);
                (ix, vs)
            })
            .collect();
        codes = Some(SparseCodes::from_rows(N, rows));
    });
    let Some(codes) = codes else { return };
    let g_of = |b: usize, _i: usize| -> &[f32] { &g[b * D..(b + 1) * D] };
    // CodeKernels groups the row blocks on first use (∂L/∂z); time the
    // grouping itself here, and warm the kernels' copy before timing them.
    time("blocks (group entries by latent)", || {
        std::hint::black_box(RowBlocks::new(&codes));
    });
    let kern = CodeKernels::new(&codes);
    std::hint::black_box(kern.dz(&w_dec, D, &g_of));
    time("decode", || {
        std::hint::black_box(kern.decode(&w_dec, D));
    });
    let mut dz = vec![];
    time("dz", || {
        dz = kern.dz(&w_dec, D, &g_of);
    });
    let (mut gd, mut ge, mut cs) = (vec![0.0f32; N * D], vec![0.0f32; N * D], vec![0.0f32; N]);
    time("latent gradients", || {
        kern.latent_grads(&dz, &xc, D, &g_of, &mut gd, &mut ge, &mut cs, false);
    });
    std::hint::black_box((gd, ge, cs));
}

fn time(what: &str, mut f: impl FnMut()) {
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    println!("{what:<36} {:>8.1} ms", t[REPS / 2]);
}
