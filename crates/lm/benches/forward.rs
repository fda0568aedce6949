//! Harvest-forward throughput: a GPT-2-small-shaped model (random weights)
//! to `blocks.8.hook_resid_pre` and SmolLM2-135M (offline asset) to
//! `blocks.20.hook_resid_pre`, batch 16×128, tokens/s (median and best).
//!
//! Each model runs in f32 (the default) and then with `Precision::Bf16`.
//!
//! Run: `cargo bench -p saelab-lm --bench forward` (threads: RAYON_NUM_THREADS).
//! `bench/harvest.sh` runs this beside the PyTorch reference in one go.
//! `BENCH_ONLY="smollm2-135m bf16"` (a suffix of the printed name, e.g.
//! `bf16` for both bf16 cases) runs only the matching cases, for profiling.

use saelab_lm::{ForwardSpec, HookPoint, Model, Precision, Site};
use std::time::Instant;

/// Large buffers on huge pages, as in the `saelab` binary.
#[global_allocator]
static ALLOC: saelab_kernels::hugepages::HugePageAlloc = saelab_kernels::hugepages::HugePageAlloc;

fn gpt2_small_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    saelab_lm::testing::write_gpt2(dir.path(), saelab_lm::testing::Gpt2Shape::SMALL, 7, "")
        .unwrap();
    dir
}

fn bench(name: &str, m: &Model, layer: usize, reps: usize) {
    if std::env::var("BENCH_ONLY").is_ok_and(|only| !name.ends_with(&only)) {
        return;
    }
    let (b, t) = (16usize, 128usize);
    let tokens: Vec<u32> = (0..b * t)
        .map(|i| ((i * 7919) % m.info.vocab_size) as u32)
        .collect();
    let hook = [HookPoint::new(layer, Site::ResidPre)];
    let _ = m
        .forward(&tokens, b, t, &mut ForwardSpec::reads(&hook))
        .unwrap();
    let mut rates: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let out = m
                .forward(&tokens, b, t, &mut ForwardSpec::reads(&hook))
                .unwrap();
            std::hint::black_box(out);
            (b * t) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{name}: to blocks.{layer}.hook_resid_pre, batch {b}x{t}, threads {}: median {:.0} tokens/s, best {:.0} tokens/s ({reps} reps)",
        rayon::current_num_threads(),
        rates[reps / 2],
        rates[reps - 1]
    );
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = gpt2_small_dir();
    let mut m = Model::load(dir.path().to_str().unwrap()).unwrap();
    bench("saelab gpt2-small-shaped", &m, 8, reps);
    m.set_precision(Precision::Bf16);
    bench("saelab gpt2-small-shaped bf16", &m, 8, reps);
    drop(m);
    let p = saelab_assets::default_model_gguf().expect("the default model is known");
    if p.exists() {
        let mut m = Model::load(p.to_str().unwrap()).unwrap();
        bench("saelab smollm2-135m", &m, 20, reps);
        m.set_precision(Precision::Bf16);
        bench("saelab smollm2-135m bf16", &m, 20, reps);
    } else {
        println!("smollm2: {} not fetched, skipped", p.display());
    }
}
