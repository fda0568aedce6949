//! Recovery: synthetic data from a known sparse dictionary (d 64, 512
//! zero-mean unit ground-truth features, 8 active per sample, magnitudes
//! U(0.5, 2)); TopK and BatchTopK with k 8, n 512 must recover it with MMCS
//! (mean over ground-truth features of the best decoder cosine) ≥ 0.95.
//! Features are zero-mean so the per-row input normalization (on, as by
//! default) maps them to themselves up to scale. To stay fast in the dev
//! profile the run is short, so the lr is raised from 3e-4 (see LR).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::{ArchSpec, SaeConfig, TrainConfig, Trainer};

const D: usize = 64;
const F: usize = 512;
const ACTIVE: usize = 8;
const B: usize = 1024;
const STEPS: usize = 1500;
const LR: f32 = 2e-3;

fn ground_truth(rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut g = vec![0.0f32; F * D];
    for row in g.chunks_mut(D) {
        for v in row.iter_mut() {
            *v = rng.random_range(-1.0..1.0);
        }
        let m = row.iter().sum::<f32>() / D as f32;
        row.iter_mut().for_each(|v| *v -= m);
        let nr = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= nr);
    }
    g
}

fn batch(gt: &[f32], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut x = vec![0.0f32; B * D];
    for row in x.chunks_mut(D) {
        for f in sample(rng, F, ACTIVE) {
            let a: f32 = rng.random_range(0.5..2.0);
            for (v, &g) in row.iter_mut().zip(&gt[f * D..(f + 1) * D]) {
                *v += a * g;
            }
        }
    }
    x
}

fn mmcs(gt: &[f32], w_dec: &[f32]) -> f64 {
    let n = w_dec.len() / D;
    let norms: Vec<f32> = w_dec
        .chunks(D)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-8))
        .collect();
    gt.chunks(D)
        .map(|g| {
            (0..n)
                .map(|i| {
                    let w = &w_dec[i * D..(i + 1) * D];
                    (g.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() / norms[i]) as f64
                })
                .fold(f64::MIN, f64::max)
        })
        .sum::<f64>()
        / F as f64
}

fn recover(spec: ArchSpec) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let gt = ground_truth(&mut rng);
    let mut cfg = TrainConfig::new(SaeConfig::new(D, F, spec));
    cfg.lr = LR;
    let mut t = Trainer::new(cfg).unwrap();
    let mut last = None;
    for s in 0..STEPS {
        let m = t.step(&batch(&gt, &mut rng)).unwrap();
        if s % 250 == 0 || s + 1 == STEPS {
            println!(
                "step {s}: fvu {:.4} l0 {:.2} dead {:.3} aux {:.4} mmcs {:.4}",
                m.fvu,
                m.l0,
                m.dead_fraction,
                m.aux_loss,
                mmcs(&gt, &t.sae().params().w_dec)
            );
        }
        last = Some(m);
    }
    let m = last.unwrap();
    // Superposition (512 features in 64 dims) keeps the FVU of an 8-sparse
    // code well above 0; this only guards against a diverged run.
    assert!(m.fvu < 0.4, "fvu {}", m.fvu);
    mmcs(&gt, &t.sae().params().w_dec)
}

#[test]
fn recovery_topk() {
    let s = recover(ArchSpec::TopK { k: ACTIVE });
    assert!(s >= 0.95, "TopK MMCS {s}");
}

#[test]
fn recovery_batchtopk() {
    let s = recover(ArchSpec::BatchTopK {
        k: ACTIVE,
        threshold_ema_rate: 0.01,
    });
    assert!(s >= 0.95, "BatchTopK MMCS {s}");
}
