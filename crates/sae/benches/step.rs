//! Throughput of a TopK training step (d 768, k 16, B 4096, n 3072 and
//! 12288, AuxK off and on) and of the dense encoder GEMM alone.
//!
//! AuxK "on" forces half of the latents dead (their encoder rows scaled by
//! 0.25 so they rarely reach the top-k but still have positive
//! pre-activations, counters set to the dead limit), which makes AuxK do
//! its full k_aux = 512 work per row; random data alone leaves no latent
//! dead at this batch size.
//!
//! Each step runs with the f32 encoder product (the default) and then with
//! `EncoderPrecision::Bf16` (bf16 inputs and W_enc, f32 accumulation).
//!
//! Run: `cargo bench -p saelab-sae --bench step`. `STEP_N=12288` runs one
//! dictionary size only (for profiling); `SAELAB_STEP_TIMES=1` prints each
//! step's phase times.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::kernels::{encoder_preacts_bf16_into, encoder_preacts_into};
use saelab_sae::{ArchSpec, EncoderPrecision, SaeConfig, TrainConfig, Trainer};
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

const D: usize = 768;
const K: usize = 16;
const B: usize = 4096;
const REPS: usize = 3;

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let batches: Vec<Vec<f32>> = (0..REPS + 1)
        .map(|_| (0..B * D).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    println!(
        "rayon threads: {}; d {D}, k {K}, batch {B}; median of {REPS} steps after 1 warm-up",
        rayon::current_num_threads()
    );
    let sizes: Vec<usize> = match std::env::var("STEP_N") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![3072, 12288],
    };
    for n in sizes {
        let mut cfg = TrainConfig::new(SaeConfig::new(D, n, ArchSpec::TopK { k: K }));
        cfg.aux.enabled = false;
        let t = Trainer::new(cfg.clone()).unwrap();

        // Dense encoder product alone, into one output buffer reused across
        // calls as the step reuses its own (a fresh 201 MB buffer per call
        // would time the kernel's page zeroing too).
        let p = t.sae().params();
        let mut pre = vec![0.0f32; B * n];
        let mut times = vec![];
        for b in batches.iter().take(REPS) {
            let s = Instant::now();
            encoder_preacts_into(b, D, &p.w_enc_t, n, None, &mut pre);
            times.push(s.elapsed().as_secs_f64());
            std::hint::black_box(&pre);
        }
        let tg = median(&mut times);
        let gflops = 2.0 * (B * D * n) as f64 / tg / 1e9;
        println!(
            "n {n:>5}: encoder GEMM {:.1} ms = {gflops:.1} GFLOP/s",
            tg * 1e3
        );
        let zero_b = vec![0.0f32; n];
        let mut times = vec![];
        for b in batches.iter().take(REPS) {
            let s = Instant::now();
            encoder_preacts_bf16_into(b, D, &p.w_enc_t, n, &zero_b, &mut pre);
            times.push(s.elapsed().as_secs_f64());
            std::hint::black_box(&pre);
        }
        let tb = median(&mut times);
        println!(
            "n {n:>5}: encoder GEMM bf16 (incl. packing W_enc) {:.1} ms = {:.1} GFLOP/s",
            tb * 1e3,
            2.0 * (B * D * n) as f64 / tb / 1e9
        );

        for (aux, enc) in [
            (false, EncoderPrecision::F32),
            (true, EncoderPrecision::F32),
            (false, EncoderPrecision::Bf16),
            (true, EncoderPrecision::Bf16),
        ] {
            cfg.aux.enabled = aux;
            cfg.encoder_precision = enc;
            let mut t = if aux {
                cfg.aux.enabled = true;
                let mut st = Trainer::new(cfg.clone()).unwrap().state();
                for i in (1..n).step_by(2) {
                    st.params.w_enc_t[i * D..(i + 1) * D]
                        .iter_mut()
                        .for_each(|v| *v *= 0.25);
                    st.dead[i] = cfg.aux.dead_after;
                }
                Trainer::from_state(cfg.clone(), st).unwrap()
            } else {
                Trainer::new(cfg.clone()).unwrap()
            };
            t.step(&batches[REPS]).unwrap();
            let mut times = vec![];
            let mut last = None;
            for b in batches.iter().take(REPS) {
                let s = Instant::now();
                let m = t.step(b).unwrap();
                times.push(s.elapsed().as_secs_f64());
                last = Some(m);
            }
            let ts = median(&mut times);
            let m = last.unwrap();
            println!(
                "n {n:>5}: TopK step, AuxK {:>3}{}: {:.1} ms/step = {:.0} tokens/s (dead fraction {:.2}, aux loss {:.4})",
                if aux { "on" } else { "off" },
                if enc == EncoderPrecision::Bf16 { ", bf16 encoder" } else { "" },
                ts * 1e3,
                B as f64 / ts,
                m.dead_fraction,
                m.aux_loss
            );
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
