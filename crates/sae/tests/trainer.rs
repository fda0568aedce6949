//! Training machinery: lr schedules, coefficient warm-up, gradient
//! clipping, the decoder constraint, TopK's fixed b_enc, dead tracking.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::kernels::sum_sq;
use saelab_sae::{ArchSpec, Decay, LrSchedule, SaeConfig, TrainConfig, Trainer};

fn batch(seed: u64, rows: usize, d: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect()
}

#[test]
fn lr_schedules() {
    let c = LrSchedule::default();
    assert_eq!(c.factor(0), 1.0);
    assert_eq!(c.factor(10_000), 1.0);
    let w = LrSchedule {
        warmup_steps: 4,
        ..LrSchedule::default()
    };
    assert_eq!(
        [w.factor(0), w.factor(1), w.factor(3), w.factor(9)],
        [0.25, 0.5, 1.0, 1.0]
    );
    let cos = LrSchedule {
        decay: Decay::Cosine,
        decay_start: 10,
        total_steps: 20,
        min_lr_ratio: 0.1,
        ..LrSchedule::default()
    };
    assert_eq!(cos.factor(5), 1.0);
    assert!((cos.factor(15) - 0.55).abs() < 1e-6);
    assert!((cos.factor(20) - 0.1).abs() < 1e-6);
    assert!((cos.factor(100) - 0.1).abs() < 1e-6);
    let lin = LrSchedule {
        decay: Decay::Linear,
        ..cos.clone()
    };
    assert!((lin.factor(15) - 0.55).abs() < 1e-6);
    assert!((lin.factor(12) - 0.82).abs() < 1e-6);
}

#[test]
fn decoder_stays_unit_norm_and_topk_b_enc_fixed() {
    let (d, n) = (32, 128);
    let mut cfg = TrainConfig::new(SaeConfig::new(d, n, ArchSpec::TopK { k: 4 }));
    cfg.lr = 1e-2;
    cfg.schedule.warmup_steps = 3;
    let mut t = Trainer::new(cfg).unwrap();
    let mut lrs = vec![];
    for s in 0..8 {
        let m = t.step(&batch(s, 64, d)).unwrap();
        lrs.push(m.lr);
        assert!(m.l0 <= 4.0 && m.fvu.is_finite() && m.dead_fraction <= 1.0);
    }
    assert!((lrs[0] - 1e-2 / 3.0).abs() < 1e-9 && lrs[7] == 1e-2);
    let p = t.sae().params();
    for row in p.w_dec.chunks(d) {
        let nr: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((nr - 1.0).abs() < 1e-5, "row norm {nr}");
    }
    assert!(p.b_enc.iter().all(|&v| v == 0.0));
    assert!(p.b_dec.iter().any(|&v| v != 0.0));
    assert_eq!(t.steps(), 8);
    assert_eq!(t.tokens_seen(), 8 * 64);
}

#[test]
fn coefficient_warmup_and_clipping() {
    let (d, n) = (16, 64);
    let spec = ArchSpec::Relu { l1_coeff: 0.1 };
    let x = batch(1, 32, d);
    let mut a = TrainConfig::new(SaeConfig::new(d, n, spec));
    a.max_grad_norm = Some(1e-3);
    let mut b = a.clone();
    b.coeff_warmup_steps = 10;
    let ma = Trainer::new(a).unwrap().step(&x).unwrap();
    let mut tb = Trainer::new(b).unwrap();
    let mb = tb.step(&x).unwrap();
    assert!(
        (mb.penalty / ma.penalty - 0.1).abs() < 1e-6,
        "{} vs {}",
        mb.penalty,
        ma.penalty
    );
    let g = tb.last_grads();
    let norm = (sum_sq(&g.w_enc_t) + sum_sq(&g.w_dec) + sum_sq(&g.b_enc) + sum_sq(&g.b_dec)).sqrt();
    assert!(mb.grad_norm > 1e-3 && norm <= 1e-3 * (1.0 + 1e-4), "{norm}");
}

#[test]
fn dead_latents_are_counted() {
    let (d, n) = (8, 64);
    let mut cfg = TrainConfig::new(SaeConfig::new(d, n, ArchSpec::TopK { k: 1 }));
    cfg.aux.dead_after = 2;
    let mut t = Trainer::new(cfg).unwrap();
    // Two rows with one latent each: at most 2 latents fire per batch.
    let x = batch(2, 2, d);
    t.step(&x).unwrap();
    let m = t.step(&x).unwrap();
    assert!(
        m.dead_fraction >= (n - 4) as f64 / n as f64,
        "{}",
        m.dead_fraction
    );
    assert!(m.aux_loss > 0.0);
    let c = t.dead_counters();
    assert!(c.iter().filter(|&&v| v >= 2).count() >= n - 4);
    let f = t.feature_frequency();
    assert!(
        (f.iter().sum::<f32>() - 1.0).abs() < 1e-6,
        "one latent per row"
    );
}

/// b_dec init: zeros leaves b_dec to Adam (one step moves each entry by at
/// most ≈ lr); mean / geometric median set it from the first batch before the
/// step, so after one step b_dec is within ≈ lr of that statistic computed
/// here independently.
#[test]
fn b_dec_init_from_first_batch() {
    use saelab_sae::BDecInit;
    let (d, n, rows) = (8, 32, 64);
    let mut x = batch(5, rows, d);
    // Offset every row so the statistic is far from zero.
    for (i, v) in x.iter_mut().enumerate() {
        *v += 3.0 + (i % d) as f32;
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..rows).map(|r| x[r * d + j] as f64).sum::<f64>() / rows as f64)
        .collect();
    let run = |init: BDecInit| {
        // Without input normalization the statistic is of x itself.
        let mut sae = SaeConfig::new(d, n, ArchSpec::TopK { k: 4 });
        sae.input_unit_norm = false;
        let mut cfg = TrainConfig::new(sae);
        cfg.b_dec_init = init;
        let mut t = Trainer::new(cfg).unwrap();
        t.step(&x).unwrap();
        t.sae().params().b_dec.clone()
    };
    let lr = 3e-4 * 1.01;
    let zeros = run(BDecInit::Zeros);
    assert!(zeros.iter().all(|v| v.abs() <= lr), "{zeros:?}");
    let m = run(BDecInit::Mean);
    for j in 0..d {
        assert!((m[j] as f64 - mean[j]).abs() <= lr as f64, "mean {j}");
    }
    // The geometric median of a symmetric-ish cloud is near the mean but
    // not equal to it; check it against the distance-sum optimum instead.
    let g = run(BDecInit::GeometricMedian);
    let cost = |y: &[f64]| -> f64 {
        x.chunks(d)
            .map(|r| {
                r.iter()
                    .zip(y)
                    .map(|(&a, &b)| (a as f64 - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum()
    };
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    let gm_cost = cost(&g64);
    assert!(
        gm_cost <= cost(&mean) + 1e-3,
        "{gm_cost} vs mean {}",
        cost(&mean)
    );
    assert_ne!(g, m);
}

/// A batch whose gradients overflow f32 stops training with `Diverged`
/// and leaves the weights untouched.
#[test]
fn divergence_is_reported_and_weights_kept() {
    let (d, n) = (8, 32);
    let mut sae = SaeConfig::new(d, n, ArchSpec::TopK { k: 4 });
    sae.input_unit_norm = false;
    let mut t = Trainer::new(TrainConfig::new(sae)).unwrap();
    t.step(&batch(1, 16, d)).unwrap();
    let before = t.sae().params().clone();
    let huge: Vec<f32> = batch(2, 16, d).iter().map(|v| v * 1e30).collect();
    let e = t.step(&huge).unwrap_err();
    assert!(
        matches!(e, saelab_sae::SaeError::Diverged { step: 2, .. }),
        "{e}"
    );
    assert_eq!(t.sae().params(), &before);
    assert_eq!(t.steps(), 1);
}

#[test]
fn sum_of_squares_matches_a_plain_f64_sum() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // Lengths around the 8-wide lanes and the parallel chunk of 16384.
    for len in [0usize, 1, 7, 8, 9, 16383, 16384, 40_005] {
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let want: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let got = sum_sq(&x);
        assert!(
            (got - want).abs() <= 1e-12 * want.max(1.0),
            "{len}: {got} vs {want}"
        );
    }
}
