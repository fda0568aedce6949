//! The opt-in bf16 encoder product: pre-activations within bf16 rounding of
//! the f32 product, computed from the bf16-rounded operands exactly as
//! defined (f64 reference), training with it is bit-reproducible (twice and
//! across thread counts: the bf16 GEMM fixes its summation order) and stays
//! close to f32 training.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_kernels::bf16::{bf16_to_f32, f32_to_bf16_rne};
use saelab_sae::kernels::{encoder_preacts, encoder_preacts_bf16};
use saelab_sae::{ArchSpec, EncoderPrecision, SaeConfig, TrainConfig, Trainer, TrainerState};

fn randv(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn fro_rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn bf16_preacts_are_the_product_of_rounded_operands() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (rows, d, n) = (37, 45, 70);
    let x = randv(&mut rng, rows * d);
    let w_enc_t = randv(&mut rng, n * d);
    let b_enc = randv(&mut rng, n);
    let got = encoder_preacts_bf16(&x, d, &w_enc_t, n, &b_enc);
    let exact = encoder_preacts(&x, d, &w_enc_t, n, Some(&b_enc));
    let e = fro_rel(&got, &exact);
    assert!(e > 0.0 && e < 1e-2, "relative error vs f32 {e}");
    let r = |v: f32| bf16_to_f32(f32_to_bf16_rne(v)) as f64;
    for b in 0..rows {
        for i in 0..n {
            let mut want = 0f64;
            let mut mag = 0f64;
            for j in 0..d {
                let p = r(x[b * d + j]) * r(w_enc_t[i * d + j]);
                want += p;
                mag += p.abs();
            }
            want += b_enc[i] as f64;
            let g = got[b * n + i] as f64;
            assert!(
                (g - want).abs() <= 1e-6 * (mag + b_enc[i].abs() as f64) + 1e-7,
                "row {b} latent {i}: {g} vs {want}"
            );
        }
    }
}

fn data(seed: u64, steps: usize, b: usize, d: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..steps)
        .map(|_| {
            (0..b * d)
                .map(|_| rng.random_range(-1.0f32..1.0).powi(3))
                .collect()
        })
        .collect()
}

fn train(enc: EncoderPrecision, batches: &[Vec<f32>]) -> (TrainerState, f64) {
    let mut c = TrainConfig::new(SaeConfig::new(48, 192, ArchSpec::TopK { k: 8 }));
    c.lr = 1e-3;
    c.encoder_precision = enc;
    let mut t = Trainer::new(c).unwrap();
    let mut last = 0.0;
    for b in batches {
        last = t.step(b).unwrap().mse;
    }
    (t.state(), last)
}

#[test]
fn bf16_training_is_reproducible_and_close_to_f32() {
    let batches = data(3, 20, 300, 48);
    let (a, mse_a) = train(EncoderPrecision::Bf16, &batches);
    let (b, _) = train(EncoderPrecision::Bf16, &batches);
    assert!(a == b, "two identical bf16 runs differ");
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| train(EncoderPrecision::Bf16, &batches).0);
    assert!(a == one, "bf16 run: 1 thread vs the default pool differ");
    let (f, mse_f) = train(EncoderPrecision::F32, &batches);
    assert!(a.params != f.params, "the bf16 path was not taken");
    let rel = (mse_a - mse_f).abs() / mse_f;
    assert!(
        rel < 0.05,
        "MSE after 20 steps: bf16 {mse_a} vs f32 {mse_f}"
    );
}

#[test]
fn a_reused_w_enc_packing_gives_the_bits_of_a_fresh_one() {
    use saelab_kernels::bf16::PackedBf16;
    use saelab_sae::kernels::encoder_preacts_bf16_packed;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Odd d: the last pair of every column is half padding.
    // The same shape twice (storage reused), another shape (repacked
    // fresh), then the first again.
    let (rows, d, n) = (19, 45, 70);
    let b = randv(&mut rng, n);
    let mut slot = None;
    for (dd, nn) in [(d, n), (d, n), (d + 2, n - 9), (d, n)] {
        let w = randv(&mut rng, nn * dd);
        let x = randv(&mut rng, rows * dd);
        let fresh = encoder_preacts_bf16(&x, dd, &w, nn, &b[..nn]);
        let packed = PackedBf16::repack_out_in(&mut slot, &w, dd, nn);
        let mut reused = vec![0.0f32; rows * nn];
        encoder_preacts_bf16_packed(&x, packed, &b[..nn], &mut reused);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fresh), bits(&reused), "d {dd}, n {nn}");
    }
}
