//! Throughput and memory of [`ActivationStats`] on synthetic codes:
//! 1M tokens (8192 rows × T 128) × n 24576 × k 32, in reservoir mode (32 MiB
//! budget) and exact mode.
//!
//! `cargo bench -p saelab-analysis --bench stats [-- TOKENS]`
//!
//! A pool of 16 distinct batches (64 rows each) is generated once and
//! cycled, so generation is not timed. Peak RSS is the process's VmHWM
//! (reservoir runs first, so its figure is not inflated by the exact run).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_analysis::stats::{ActivationStats, DecileConfig, StatsConfig};
use saelab_sae::SparseCodes;
use std::time::Instant;

const N: usize = 24576;
const K: usize = 32;
const T: usize = 128;
const ROWS_PER_BATCH: usize = 64;

fn batch(rng: &mut ChaCha8Rng) -> SparseCodes {
    let rows = (0..ROWS_PER_BATCH * T)
        .map(|_| {
            let mut ix: Vec<u32> = Vec::with_capacity(K);
            while ix.len() < K {
                let i = rng.random_range(0..N as u32);
                if !ix.contains(&i) {
                    ix.push(i);
                }
            }
            ix.sort_unstable();
            let vs = (0..K)
                .map(|_| -(1.0 - rng.random::<f32>()).ln() + 0.01)
                .collect();
            (ix, vs)
        })
        .collect();
    SparseCodes::from_rows(N, rows)
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run(label: &str, cfg: StatsConfig, pool: &[SparseCodes], tokens: usize) {
    let batches = tokens.div_ceil(ROWS_PER_BATCH * T);
    let mut s = ActivationStats::new(N, T, cfg).unwrap();
    let t0 = Instant::now();
    for b in 0..batches {
        s.push(&pool[b % pool.len()]).unwrap();
    }
    let push = t0.elapsed().as_secs_f64();
    let held = s.memory_bytes();
    let mode = s.decile_mode();
    let t1 = Instant::now();
    let rep = s.finish();
    let fin = t1.elapsed().as_secs_f64();
    let toks = (batches * ROWS_PER_BATCH * T) as f64;
    println!(
        "{label}: {toks} tokens, push {push:.2} s ({:.2} M tokens/s, {:.0} M nonzeros/s), \
         finish {fin:.2} s, total {:.2} M tokens/s; decile mode {mode:?}, held {:.1} MiB \
         (exact would need {:.1} MiB), peak RSS {:.0} MiB, rank bound {:?}",
        toks / push / 1e6,
        toks * K as f64 / push / 1e6,
        toks / (push + fin) / 1e6,
        held as f64 / (1 << 20) as f64,
        rep.deciles.info.exact_bytes as f64 / (1 << 20) as f64,
        vm_hwm_mb(),
        rep.deciles.info.rank_error_bound,
    );
}

fn main() {
    let tokens: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1 << 20);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let pool: Vec<SparseCodes> = (0..16).map(|_| batch(&mut rng)).collect();
    println!(
        "threads {}, n {N}, k {K}, T {T}, pool {:.0} MiB, RSS after generation {:.0} MiB",
        rayon::current_num_threads(),
        (pool.len() * ROWS_PER_BATCH * T * K * 8) as f64 / (1 << 20) as f64,
        vm_hwm_mb()
    );
    let reservoir = StatsConfig {
        deciles: DecileConfig {
            memory_budget_bytes: 32 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    run("reservoir (32 MiB budget)", reservoir, &pool, tokens);
    run("exact", StatsConfig::default(), &pool, tokens);
}
