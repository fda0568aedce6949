//! Gradients of every architecture against central finite differences of
//! an independent dense f64 reference (on the same piece of the
//! piecewise-smooth loss, i.e. with the selection masks held fixed, which
//! is what autograd differentiates), and JumpReLU's straight-through
//! threshold gradient against the dense formula. Also sparse kernels vs
//! dense computations.

// The f64 reference is written with explicit indices to mirror the math.
#![allow(clippy::needless_range_loop)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::kernels::{batch_topk, encoder_preacts, sparse_decode, topk_rows};
use saelab_sae::{loss_and_grads, ArchSpec, AuxConfig, AuxVariant, SaeParams};

struct Problem {
    x: Vec<f32>,
    p: SaeParams,
}

fn problem(seed: u64, d: usize, n: usize, b: usize, jump: Option<f32>) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = SaeParams::init(d, n, jump.map(f32::ln), &mut rng);
    for v in p.b_dec.iter_mut() {
        *v = rng.random_range(-0.3..0.3);
    }
    for v in p.b_enc.iter_mut() {
        *v = rng.random_range(-0.1..0.1);
    }
    if let Some(t) = jump {
        for v in p.log_threshold.iter_mut() {
            *v = (t * rng.random_range(0.5..1.5f32)).ln();
        }
    }
    let x: Vec<f32> = (0..b * d).map(|_| rng.random_range(-2.0..2.0)).collect();
    Problem { x, p }
}

#[derive(Clone)]
struct P64 {
    w_enc_t: Vec<f64>,
    b_enc: Vec<f64>,
    w_dec: Vec<f64>,
    b_dec: Vec<f64>,
}

fn to64(p: &SaeParams) -> P64 {
    let c = |v: &Vec<f32>| v.iter().map(|&x| x as f64).collect();
    P64 {
        w_enc_t: c(&p.w_enc_t),
        b_enc: c(&p.b_enc),
        w_dec: c(&p.w_dec),
        b_dec: c(&p.b_dec),
    }
}

/// Fixed masks of a piece: which entries are kept, which are aux entries.
struct Masks {
    keep: Vec<bool>,
    aux: Vec<bool>,
}

struct Setup<'a> {
    spec: &'a ArchSpec,
    d: usize,
    n: usize,
    b: usize,
    x: Vec<f64>,
    ends: Vec<usize>,
    sub_b_dec: bool,
    lam: f64,
    aux_coeff: f64,
}

fn pre64(s: &Setup, p: &P64) -> Vec<f64> {
    let (d, n) = (s.d, s.n);
    let mut pre = vec![0.0; s.b * n];
    for bb in 0..s.b {
        for i in 0..n {
            let mut a = p.b_enc[i];
            for j in 0..d {
                let xc = s.x[bb * d + j] - if s.sub_b_dec { p.b_dec[j] } else { 0.0 };
                a += xc * p.w_enc_t[i * d + j];
            }
            pre[bb * n + i] = a;
        }
    }
    pre
}

fn loss64(s: &Setup, p: &P64, m: &Masks) -> f64 {
    let (d, n, b) = (s.d, s.n, s.b);
    let pre = pre64(s, p);
    let jump = matches!(s.spec, ArchSpec::JumpRelu { .. });
    let z: Vec<f64> = (0..b * n)
        .map(|q| {
            if !m.keep[q] {
                0.0
            } else if jump {
                pre[q]
            } else {
                pre[q].max(0.0)
            }
        })
        .collect();
    let mm = s.ends.len() as f64;
    let mut recon = 0.0;
    let mut full = vec![0.0; b * d];
    for bb in 0..b {
        let mut acc = p.b_dec.clone();
        let mut start = 0;
        for &end in &s.ends {
            for i in start..end {
                for j in 0..d {
                    acc[j] += z[bb * n + i] * p.w_dec[i * d + j];
                }
            }
            start = end;
            for j in 0..d {
                recon += (acc[j] - s.x[bb * d + j]).powi(2);
            }
        }
        full[bb * d..(bb + 1) * d].copy_from_slice(&acc);
    }
    let mut loss = recon / (mm * (b * d) as f64);
    if let ArchSpec::Relu { .. } = s.spec {
        for i in 0..n {
            let nr: f64 = (0..d)
                .map(|j| p.w_dec[i * d + j].powi(2))
                .sum::<f64>()
                .sqrt();
            for bb in 0..b {
                loss += s.lam / b as f64 * z[bb * n + i] * nr;
            }
        }
    }
    if jump {
        // L0 term: constant on a piece (its θ-gradient is checked separately).
        loss += s.lam / b as f64 * m.keep.iter().filter(|&&k| k).count() as f64;
    }
    if m.aux.iter().any(|&a| a) {
        let mut sq = 0.0;
        for bb in 0..b {
            for j in 0..d {
                let mut e = 0.0;
                for i in 0..n {
                    if m.aux[bb * n + i] {
                        e += pre[bb * n + i].max(0.0) * p.w_dec[i * d + j];
                    }
                }
                let r = s.x[bb * d + j] - full[bb * d + j];
                sq += (e - r).powi(2);
            }
        }
        loss += s.aux_coeff * sq / (b * d) as f64;
    }
    loss
}

fn masks_from(
    codes: &saelab_sae::SparseCodes,
    aux: &[(usize, usize)],
    b: usize,
    n: usize,
) -> Masks {
    let mut keep = vec![false; b * n];
    for bb in 0..b {
        let (ix, _) = codes.row(bb);
        for &i in ix {
            keep[bb * n + i as usize] = true;
        }
    }
    let mut am = vec![false; b * n];
    for &(bb, i) in aux {
        am[bb * n + i] = true;
    }
    Masks { keep, aux: am }
}

fn check_close(name: &str, got: &[f32], want: &[f64]) {
    let scale = want.iter().fold(0.0f64, |a, &v| a.max(v.abs())).max(1e-6);
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        worst = worst.max((*g as f64 - w).abs());
    }
    assert!(
        worst <= 2e-3 * scale,
        "{name}: max abs diff {worst:e} vs scale {scale:e}"
    );
}

/// Runs the engine and compares every smooth gradient with finite
/// differences of the f64 reference on the same piece.
fn check_arch(spec: ArchSpec, seed: u64, with_aux: bool) {
    check_arch_kaux(spec, seed, with_aux, 3)
}

/// Small `k_aux` takes the sparse AuxK kernels, larger values (k_aux/|D| ≥
/// `AUX_DENSE_MIN_DENSITY`) the dense GEMM path.
fn check_arch_kaux(spec: ArchSpec, seed: u64, with_aux: bool, k_aux: usize) {
    let (d, n, b) = (12, 48, 6);
    let jump = match &spec {
        ArchSpec::JumpRelu { init_threshold, .. } => Some(*init_threshold),
        _ => None,
    };
    let pr = problem(seed, d, n, b, jump);
    let arch = spec.build(n).unwrap();
    let aux_cfg = AuxConfig {
        k_aux,
        ..AuxConfig::default()
    };
    // Every latent one batch short of dead: those not firing now become dead.
    let mut dead = vec![if with_aux { 4u32 } else { 0 }; n];
    let mut grads = SaeParams::zeros(d, n, jump.is_some());
    let out = loss_and_grads(
        arch.as_ref(),
        &pr.p,
        &pr.x,
        1.0,
        &aux_cfg,
        &mut dead,
        &mut grads,
    );

    // Rebuild the aux selection independently from f64 pre-activations.
    let lam = match &spec {
        ArchSpec::Relu { l1_coeff } => *l1_coeff as f64,
        ArchSpec::JumpRelu { l0_coeff, .. } => *l0_coeff as f64,
        _ => 0.0,
    };
    let setup = Setup {
        spec: &spec,
        d,
        n,
        b,
        x: pr.x.iter().map(|&v| v as f64).collect(),
        ends: arch.prefix_ends(n),
        sub_b_dec: arch.subtracts_b_dec(),
        lam,
        aux_coeff: 1.0 / 32.0,
    };
    let p64 = to64(&pr.p);
    let pre = pre64(&setup, &p64);
    let mut aux = vec![];
    if with_aux && arch.uses_auxk() {
        let fired: Vec<bool> = (0..n)
            .map(|i| (0..b).any(|bb| out.codes.row(bb).0.contains(&(i as u32))))
            .collect();
        let dead_list: Vec<usize> = (0..n).filter(|&i| !fired[i]).collect();
        assert!(!dead_list.is_empty());
        let ka = k_aux.min(dead_list.len());
        for bb in 0..b {
            let mut c: Vec<(f64, usize)> = dead_list
                .iter()
                .map(|&i| (pre[bb * n + i], i))
                .filter(|e| e.0 > 0.0)
                .collect();
            c.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
            for e in c.into_iter().take(ka) {
                aux.push((bb, e.1));
            }
        }
        assert!(out.loss.aux > 0.0, "aux loss should be active");
    }
    let masks = masks_from(&out.codes, &aux, b, n);
    let base = loss64(&setup, &p64, &masks);
    assert!(
        (base - out.loss.total).abs() <= 1e-4 * base.abs().max(1e-3),
        "loss {base} vs engine {}",
        out.loss.total
    );

    let h = 1e-6;
    let fd = |f: &dyn Fn(&mut P64) -> &mut Vec<f64>, len: usize| -> Vec<f64> {
        (0..len)
            .map(|q| {
                let mut a = p64.clone();
                f(&mut a)[q] += h;
                let mut c = p64.clone();
                f(&mut c)[q] -= h;
                (loss64(&setup, &a, &masks) - loss64(&setup, &c, &masks)) / (2.0 * h)
            })
            .collect()
    };
    let name = spec.name();
    check_close(
        &format!("{name} W_dec"),
        &grads.w_dec,
        &fd(&|p| &mut p.w_dec, n * d),
    );
    check_close(
        &format!("{name} W_enc"),
        &grads.w_enc_t,
        &fd(&|p| &mut p.w_enc_t, n * d),
    );
    check_close(
        &format!("{name} b_dec"),
        &grads.b_dec,
        &fd(&|p| &mut p.b_dec, d),
    );
    if arch.trains_b_enc() {
        check_close(
            &format!("{name} b_enc"),
            &grads.b_enc,
            &fd(&|p| &mut p.b_enc, n),
        );
    } else {
        assert!(grads.b_enc.iter().all(|&v| v == 0.0));
    }

    if let ArchSpec::JumpRelu { bandwidth, .. } = spec {
        // Straight-through θ gradient, dense: ∂L/∂t = θ·Σ_b[−(θ/ε)K·dz − (λ/(Bε))K].
        let eps = bandwidth as f64;
        let th: Vec<f64> =
            pr.p.log_threshold
                .iter()
                .map(|&t| (t as f64).exp())
                .collect();
        let mut full = vec![0.0; b * d];
        for bb in 0..b {
            for j in 0..d {
                full[bb * d + j] = p64.b_dec[j];
            }
            for i in 0..n {
                if masks.keep[bb * n + i] {
                    for j in 0..d {
                        full[bb * d + j] += pre[bb * n + i] * p64.w_dec[i * d + j];
                    }
                }
            }
        }
        let mut want = vec![0.0; n];
        let mut hits = 0;
        for bb in 0..b {
            for i in 0..n {
                if ((pre[bb * n + i] - th[i]) / eps).abs() < 0.5 {
                    hits += 1;
                    let dz: f64 = (0..d)
                        .map(|j| {
                            2.0 * (full[bb * d + j] - setup.x[bb * d + j]) / (b * d) as f64
                                * p64.w_dec[i * d + j]
                        })
                        .sum();
                    want[i] += th[i] * (-(th[i] / eps) * dz - lam / (b as f64 * eps));
                }
            }
        }
        assert!(
            hits > 3,
            "test needs entries inside the kernel window, got {hits}"
        );
        check_close("jumprelu log_threshold", &grads.log_threshold, &want);
    }
}

#[test]
fn grad_topk() {
    check_arch(ArchSpec::TopK { k: 4 }, 1, false);
}

#[test]
fn grad_topk_auxk() {
    check_arch(ArchSpec::TopK { k: 4 }, 2, true);
}

#[test]
fn grad_topk_auxk_sparse_and_dense_paths() {
    check_arch_kaux(ArchSpec::TopK { k: 4 }, 12, true, 1);
    check_arch_kaux(ArchSpec::TopK { k: 4 }, 13, true, 16);
    check_arch_kaux(
        ArchSpec::BatchTopK {
            k: 4,
            threshold_ema_rate: 0.01,
        },
        14,
        true,
        1,
    );
}

#[test]
fn grad_batchtopk_auxk() {
    check_arch(
        ArchSpec::BatchTopK {
            k: 4,
            threshold_ema_rate: 0.01,
        },
        3,
        true,
    );
}

#[test]
fn grad_matryoshka_auxk() {
    check_arch(
        ArchSpec::MatryoshkaBatchTopK {
            k: 5,
            group_sizes: vec![],
            threshold_ema_rate: 0.01,
        },
        4,
        true,
    );
}

#[test]
fn grad_relu_l1() {
    check_arch(ArchSpec::Relu { l1_coeff: 0.05 }, 5, false);
}

#[test]
fn grad_jumprelu() {
    check_arch(
        ArchSpec::JumpRelu {
            l0_coeff: 0.01,
            bandwidth: 0.4,
            init_threshold: 0.3,
            apply_b_dec_to_input: false,
        },
        6,
        false,
    );
}

#[test]
fn openai_aux_variant_runs_and_detaches() {
    let (d, n, b) = (8, 32, 4);
    let pr = problem(7, d, n, b, None);
    let arch = ArchSpec::TopK { k: 2 }.build(n).unwrap();
    let mut g1 = SaeParams::zeros(d, n, false);
    let mut g0 = SaeParams::zeros(d, n, false);
    let cfg = AuxConfig {
        variant: AuxVariant::OpenAi,
        ..AuxConfig::default()
    };
    let out = loss_and_grads(
        arch.as_ref(),
        &pr.p,
        &pr.x,
        1.0,
        &cfg,
        &mut vec![10; n],
        &mut g1,
    );
    assert!(out.loss.aux > 0.0);
    let off = AuxConfig {
        enabled: false,
        ..AuxConfig::default()
    };
    loss_and_grads(
        arch.as_ref(),
        &pr.p,
        &pr.x,
        1.0,
        &off,
        &mut vec![10; n],
        &mut g0,
    );
    // Detached residual: the rows of kept (non-dead) latents get no aux gradient.
    for bb in 0..b {
        for &i in out.codes.row(bb).0 {
            let i = i as usize;
            assert_eq!(&g1.w_dec[i * d..(i + 1) * d], &g0.w_dec[i * d..(i + 1) * d]);
        }
    }
}

#[test]
fn sparse_kernels_match_dense() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (b, d, n, k) = (7, 16, 64, 5);
    let x: Vec<f32> = (0..b * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
    let pre = encoder_preacts(&x, d, &w, n, Some(&bias));
    for bb in 0..b {
        for i in 0..n {
            let want: f64 = bias[i] as f64
                + (0..d)
                    .map(|j| x[bb * d + j] as f64 * w[i * d + j] as f64)
                    .sum::<f64>();
            assert!((pre[bb * n + i] as f64 - want).abs() < 1e-5);
        }
    }
    // Per-row top-k with ties (quantized values) vs a full sort.
    let q: Vec<f32> = pre.iter().map(|v| (v * 4.0).round() / 4.0).collect();
    let codes = topk_rows(&q, n, k);
    for bb in 0..b {
        let row = &q[bb * n..(bb + 1) * n];
        let mut s: Vec<(f32, usize)> = row.iter().copied().zip(0..).filter(|e| e.0 > 0.0).collect();
        s.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        let mut want: Vec<u32> = s.iter().take(k).map(|e| e.1 as u32).collect();
        want.sort();
        assert_eq!(codes.row(bb).0, &want[..]);
    }
    // Batch top-m with ties vs a full sort of the flat matrix.
    for m in [1, 9, 20, 35, 1000] {
        let (bc, min) = batch_topk(&q, n, m);
        let mut s: Vec<(f32, usize)> = q.iter().copied().zip(0..).filter(|e| e.0 > 0.0).collect();
        s.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        let mut want: Vec<usize> = s.iter().take(m).map(|e| e.1).collect();
        want.sort();
        let mut got = vec![];
        for bb in 0..b {
            for &i in bc.row(bb).0 {
                got.push(bb * n + i as usize);
            }
        }
        assert_eq!(got, want, "batch top-{m}");
        assert_eq!(min, s.iter().take(m).map(|e| e.0).reduce(f32::min));
    }
    // Sparse decode vs dense product.
    let dense = codes.to_dense();
    let dec = sparse_decode(&codes, &w, d, None);
    for bb in 0..b {
        for j in 0..d {
            let want: f64 = (0..n)
                .map(|i| dense[bb * n + i] as f64 * w[i * d + j] as f64)
                .sum();
            assert!((dec[bb * d + j] as f64 - want).abs() < 1e-5);
        }
    }
}
