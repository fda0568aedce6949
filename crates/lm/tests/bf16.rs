//! The opt-in bf16 GEMM (`saelab_lm::bf16`) against an independent f64
//! reference on bf16-rounded inputs, across odd shapes, both weight layouts
//! and `accumulate`; every path against the portable one; thread-count
//! independence; its error against the exact product; and the RNE
//! conversion.
//!
//! Every test runs each path this CPU has (AMX, AVX512_BF16, AVX2, portable),
//! forced through `gemm_bf16_with`, and `gemm_bf16` itself, so the portable
//! path is tested on every machine. A path the CPU lacks is named on stderr,
//! past the test harness's output capture, instead of passing silently.

mod common;
use common::notice_skipped;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_lm::bf16::{
    bf16_path, bf16_paths, bf16_to_f32, f32_to_bf16_rne, gemm_bf16, gemm_bf16_portable,
    gemm_bf16_rows, gemm_bf16_rows_with, gemm_bf16_with, Bf16Path, Bf16Rows, PackedBf16,
};

/// Round to bf16 (nearest, ties to even), written independently of the
/// crate: pick the nearer of the two bf16 neighbours in f64.
fn ref_round(x: f32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return f64::from(x);
    }
    let b = x.to_bits();
    let down = f32::from_bits(b & 0xFFFF_0000); // toward zero
    let up_bits = (b & 0xFFFF_0000) + 0x1_0000; // away from zero (may be inf)
    let up = f32::from_bits(up_bits);
    let (xd, dd, du) = (f64::from(x), f64::from(down), f64::from(up));
    let (ed, eu) = ((xd - dd).abs(), (du - xd).abs());
    // `up` = inf: compare against where the next bf16 would be.
    let eu = if up.is_infinite() {
        (dd + (dd - f64::from(f32::from_bits((b & 0xFFFF_0000) - 0x1_0000))) - xd).abs()
    } else {
        eu
    };
    if ed < eu || (ed == eu && (b >> 16) & 1 == 0) {
        dd
    } else {
        du
    }
}

/// Every path this CPU can run (AMX, AVX512_BF16, AVX2, portable; the portable
/// one always), each forced, plus `gemm_bf16` itself (its own choice), as
/// `(name, path)`; `None` is `gemm_bf16`.
fn kernels() -> Vec<(&'static str, Option<Bf16Path>)> {
    let mut v: Vec<(&str, Option<Bf16Path>)> = bf16_paths()
        .into_iter()
        .map(|p| (p.name(), Some(p)))
        .collect();
    v.push(("gemm_bf16", None));
    for missing in [Bf16Path::Amx, Bf16Path::Avx512] {
        if !missing.available() {
            notice_skipped(&format!(
                "bf16: this CPU cannot run the {} path; it was not tested here",
                missing.name()
            ));
        }
    }
    v
}

fn gemm(path: Option<Bf16Path>, m: usize, x: &[f32], w: &PackedBf16, y: &mut [f32], acc: bool) {
    match path {
        Some(p) => gemm_bf16_with(p, m, x, w, y, acc),
        None => gemm_bf16(m, x, w, y, acc),
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| normal(&mut rng)).collect()
}

/// Reference `y0 + x̃·W̃` in f64 (x̃, W̃ rounded to bf16) and the error
/// bound of f32 accumulation: `(k + 2)·2⁻²⁴·(|y0| + Σ|x̃ w̃|)` plus a tiny
/// absolute term.
fn reference(
    m: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w_at: impl Fn(usize, usize) -> f32,
    y0: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let xr: Vec<f64> = x.iter().map(|&v| ref_round(v)).collect();
    let mut wr = vec![0f64; k * n];
    for kk in 0..k {
        for c in 0..n {
            wr[kk * n + c] = ref_round(w_at(kk, c));
        }
    }
    let mut y = vec![0f64; m * n];
    let mut tol = vec![0f64; m * n];
    for i in 0..m {
        for c in 0..n {
            let init = y0.map_or(0.0, |y0| f64::from(y0[i * n + c]));
            let (mut s, mut a) = (init, init.abs());
            for kk in 0..k {
                let p = xr[i * k + kk] * wr[kk * n + c];
                s += p;
                a += p.abs();
            }
            y[i * n + c] = s;
            tol[i * n + c] = (k as f64 + 2.0) * 2f64.powi(-24) * a + 1e-30;
        }
    }
    (y, tol)
}

fn check(what: &str, got: &[f32], want: &[f64], tol: &[f64]) {
    for (i, ((&g, &w), &t)) in got.iter().zip(want).zip(tol).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= t,
            "{what}: element {i}: got {g}, want {w}, |err| {err:e} > tol {t:e}"
        );
    }
}

#[test]
fn matches_reference_on_odd_shapes() {
    let mut seed = 0;
    for m in [1, 7, 33, 130] {
        for k in [1, 3, 577] {
            for n in [1, 31, 33, 100] {
                seed += 1;
                let x = randn(m * k, seed);
                let w_io = randn(k * n, 1000 + seed); // [k][n]
                let w_oi: Vec<f32> = (0..n * k).map(|i| w_io[(i % k) * n + i / k]).collect();
                let y0 = randn(m * n, 2000 + seed);
                let packs = [
                    ("in_out", PackedBf16::from_in_out(&w_io, k, n)),
                    ("out_in", PackedBf16::from_out_in(&w_oi, k, n)),
                ];
                for accumulate in [false, true] {
                    let (want, tol) = reference(
                        m,
                        k,
                        n,
                        &x,
                        |kk, c| w_io[kk * n + c],
                        accumulate.then_some(&y0[..]),
                    );
                    for (layout, p) in &packs {
                        assert_eq!((p.k(), p.n()), (k, n));
                        let what = format!("m {m} k {k} n {n} {layout} accumulate {accumulate}");
                        let mut y = if accumulate {
                            y0.clone()
                        } else {
                            vec![f32::NAN; m * n]
                        };
                        for (name, path) in kernels() {
                            y.copy_from_slice(&if accumulate {
                                y0.clone()
                            } else {
                                vec![f32::NAN; m * n]
                            });
                            gemm(path, m, &x, p, &mut y, accumulate);
                            check(&format!("{what} ({name})"), &y, &want, &tol);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_path_agrees_with_the_portable_one() {
    // The same rounded operands: every path within the f32-accumulation
    // bound of the f64 reference, and of each other. AVX-512 and portable
    // share the accumulation order (bitwise equal on Zen 4); AMX sums
    // inside a tile in its own order.
    let (m, k, n) = (70, 1031, 130);
    let x = randn(m * k, 11);
    let w = randn(k * n, 12);
    let p = PackedBf16::from_in_out(&w, k, n);
    let (want, tol) = reference(m, k, n, &x, |kk, c| w[kk * n + c], None);
    let mut portable = vec![0f32; m * n];
    gemm_bf16_portable(m, &x, &p, &mut portable, false);
    check("portable", &portable, &want, &tol);
    for path in bf16_paths() {
        let mut y = vec![0f32; m * n];
        gemm_bf16_with(path, m, &x, &p, &mut y, false);
        check(path.name(), &y, &want, &tol);
        for (i, ((&u, &v), &t)) in y.iter().zip(&portable).zip(&tol).enumerate() {
            assert!(
                f64::from((u - v).abs()) <= 2.0 * t,
                "element {i}: {} {u} vs portable {v}",
                path.name()
            );
        }
        let differ = y.iter().zip(&portable).filter(|(u, v)| u != v).count();
        // The widened path runs the portable order with exact products.
        if path == Bf16Path::Avx2 {
            assert_eq!(differ, 0, "avx2 vs portable: bits differ");
        }
        println!(
            "{} vs portable: {differ} of {} elements differ bitwise",
            path.name(),
            m * n
        );
    }
    // gemm_bf16 takes the fastest path unless SAELAB_BF16_PATH asks.
    if std::env::var_os("SAELAB_BF16_PATH").is_none() {
        assert_eq!(bf16_path(), bf16_paths()[0]);
    }
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let (m, k, n) = (300, 1100, 200);
    let x = randn(m * k, 21);
    let w = randn(n * k, 22);
    let p = PackedBf16::from_out_in(&w, k, n);
    let y0 = randn(m * n, 23);
    for (name, path) in kernels() {
        let run = |threads: usize, accumulate: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let mut y = y0.clone();
            pool.install(|| gemm(path, m, &x, &p, &mut y, accumulate));
            y
        };
        for accumulate in [false, true] {
            let one = run(1, accumulate);
            for threads in [2, 3] {
                let many = run(threads, accumulate);
                assert!(
                    one.iter()
                        .zip(&many)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: {threads} threads differ from 1 (accumulate {accumulate})"
                );
            }
        }
    }
}

#[test]
fn relative_error_against_exact_f32_product_is_small() {
    let (m, k, n) = (64, 768, 256);
    let x = randn(m * k, 31);
    let w = randn(k * n, 32);
    let p = PackedBf16::from_in_out(&w, k, n);
    for (name, path) in kernels() {
        let mut y = vec![0f32; m * n];
        gemm(path, m, &x, &p, &mut y, false);
        check_against_exact(name, (m, k, n), &x, &w, &y);
    }
}

/// The bf16 product `y` against the exact f32 product, in relative
/// Frobenius norm.
fn check_against_exact(
    name: &str,
    (m, k, n): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    y: &[f32],
) {
    let (mut num, mut den, mut max_rel) = (0f64, 0f64, 0f64);
    let mut scale = 0f64;
    for i in 0..m {
        for c in 0..n {
            let exact: f64 = (0..k)
                .map(|kk| f64::from(x[i * k + kk]) * f64::from(w[kk * n + c]))
                .sum();
            let err = f64::from(y[i * n + c]) - exact;
            num += err * err;
            den += exact * exact;
            scale = scale.max(exact.abs());
            max_rel = max_rel.max(err.abs());
        }
    }
    let rel = (num / den).sqrt();
    println!(
        "{name}: bf16 vs exact product, N(0,1), k {k}: relative Frobenius error {:.3} %, \
         max |err| {:.3} % of max |y|",
        rel * 100.0,
        max_rel / scale * 100.0
    );
    assert!(rel < 0.01, "relative error {rel}");
}

#[test]
fn zero_inner_dimension_and_empty_shapes() {
    for (name, path) in kernels() {
        let p = PackedBf16::from_in_out(&[], 0, 5);
        let mut y = vec![1.0f32; 15];
        gemm(path, 3, &[], &p, &mut y, true);
        assert!(y.iter().all(|&v| v == 1.0), "{name}");
        gemm(path, 3, &[], &p, &mut y, false);
        assert!(y.iter().all(|&v| v == 0.0), "{name}");
        let p = PackedBf16::from_out_in(&[], 4, 0);
        assert_eq!(p.bytes(), 0);
        gemm(path, 3, &[0.0; 12], &p, &mut [], false);
        let p = PackedBf16::from_in_out(&[1.0; 8], 4, 2);
        gemm(path, 0, &[], &p, &mut [], false);
    }
}

#[test]
#[should_panic(expected = "gemm_bf16: x")]
fn wrong_x_length_panics() {
    let p = PackedBf16::from_in_out(&[1.0; 8], 4, 2);
    gemm_bf16(2, &[0.0; 7], &p, &mut [0.0; 4], false);
}

#[test]
#[should_panic(expected = "from_out_in")]
fn wrong_weight_length_panics() {
    PackedBf16::from_out_in(&[1.0; 7], 4, 2);
}

#[test]
fn packed_size() {
    let p = PackedBf16::from_in_out(&vec![0.5; 768 * 2304], 768, 2304);
    assert_eq!(p.bytes(), 768 * 2304 * 2);
    assert!(format!("{p:?}").contains("k: 768"));
}

#[test]
fn rne_ties_to_even() {
    // 1 + 2⁻⁸ is halfway between 1 (0x3F80, even) and 1 + 2⁻⁷ (0x3F81).
    assert_eq!(f32_to_bf16_rne(1.0 + 2f32.powi(-8)), 0x3F80);
    // 1 + 3·2⁻⁸ is halfway between 0x3F81 and 0x3F82 (even).
    assert_eq!(f32_to_bf16_rne(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
    // Just above / below a tie.
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x3F80_8001)), 0x3F81);
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x3F80_7FFF)), 0x3F80);
    assert_eq!(f32_to_bf16_rne(-(1.0 + 2f32.powi(-8))), 0xBF80);
    assert_eq!(f32_to_bf16_rne(-(1.0 + 3.0 * 2f32.powi(-8))), 0xBF82);
    // Carry into the exponent.
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x3FFF_FFFF)), 0x4000);
    assert_eq!(f32_to_bf16_rne(0.0), 0x0000);
    assert_eq!(f32_to_bf16_rne(-0.0), 0x8000);
    // Subnormals are rounded, not flushed.
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x0000_8000)), 0x0000);
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x0001_8000)), 0x0002);
}

#[test]
fn rne_special_values() {
    assert_eq!(f32_to_bf16_rne(f32::INFINITY), 0x7F80);
    assert_eq!(f32_to_bf16_rne(f32::NEG_INFINITY), 0xFF80);
    for nan in [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling, payload only in low bits
        f32::from_bits(0xFF80_0001),
        f32::from_bits(0x7FFF_FFFF),
    ] {
        let h = f32_to_bf16_rne(nan);
        assert!(bf16_to_f32(h).is_nan(), "{:#x} -> {h:#x}", nan.to_bits());
        assert_eq!(h >> 15, (nan.to_bits() >> 31) as u16, "sign kept");
    }
    assert!(bf16_to_f32(0x7FC0).is_nan());
    assert!(bf16_to_f32(0xFF81).is_nan());
    assert_eq!(bf16_to_f32(0x7F80), f32::INFINITY);
    // Near the top of the range: 0x7F7F is the largest finite bf16
    // (odd), so the tie above it rounds to even = inf.
    let max_bf16 = f32::from_bits(0x7F7F_0000);
    assert_eq!(f32_to_bf16_rne(max_bf16), 0x7F7F);
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x7F7F_7FFF)), 0x7F7F);
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x7F7F_8000)), 0x7F80);
    assert_eq!(f32_to_bf16_rne(f32::MAX), 0x7F80);
    assert_eq!(f32_to_bf16_rne(-f32::MAX), 0xFF80);
    assert_eq!(f32_to_bf16_rne(f32::from_bits(0x7F7E_8000)), 0x7F7E);
}

#[test]
fn rne_matches_independent_rounding() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for _ in 0..200_000 {
        let x = f32::from_bits(rng.random());
        if x.is_nan() {
            continue;
        }
        let h = f32_to_bf16_rne(x);
        // Exact round trip of the result.
        assert_eq!(f32_to_bf16_rne(bf16_to_f32(h)), h);
        let want = ref_round(x);
        let got = f64::from(bf16_to_f32(h));
        assert!(
            got == want,
            "{:#010x}: got {h:#06x} = {got:e}, want {want:e}",
            x.to_bits()
        );
        assert_eq!(
            h,
            half::bf16::from_f32(x).to_bits(),
            "{:#010x}",
            x.to_bits()
        );
    }
}

#[test]
fn amx_blocking_over_several_k_blocks_panel_blocks_and_row_blocks() {
    // Shapes that make the AMX task loop take every branch: k over two
    // k blocks of ≤ 384 pairs, each in two sub-blocks of ≤ 144 pairs
    // (1100 → 550 pairs → 288 + 262), n over three 1 MiB blocks of
    // panels with a partial last panel and an odd count of 16-column
    // tiles (1930), m over two 512-row tasks with an odd count of 16-row
    // tiles and a partial last tile (600); outputs both fresh and
    // accumulated, each path against the f64 reference.
    let (m, k, n) = (600, 1100, 1930);
    let x = randn(m * k, 41);
    let w = randn(n * k, 42); // [n][k]
    let p = PackedBf16::from_out_in(&w, k, n);
    let y0 = randn(m * n, 43);
    for accumulate in [false, true] {
        let (want, tol) = reference(
            m,
            k,
            n,
            &x,
            |kk, c| w[c * k + kk],
            accumulate.then_some(&y0[..]),
        );
        for (name, path) in kernels() {
            if path == Some(Bf16Path::Portable) {
                continue; // slow at this size; covered on the odd shapes
            }
            let mut y = if accumulate {
                y0.clone()
            } else {
                vec![f32::NAN; m * n]
            };
            gemm(path, m, &x, &p, &mut y, accumulate);
            check(&format!("{name} accumulate {accumulate}"), &y, &want, &tol);
        }
    }
}

#[test]
fn rows_rounded_by_their_producer_give_the_bits_of_the_f32_input() {
    // `gemm_bf16_rows` on rows filled through `Bf16Rows` against
    // `gemm_bf16` on the same f32 rows: the same rounding, the same
    // accumulation, so bit for bit, on every path, fresh and accumulated;
    // shapes with odd k (a half pair), partial tiles and several k blocks.
    for (m, k, n, seed) in [
        (1, 1, 5, 51),
        (7, 3, 33, 52),
        (33, 577, 100, 53),
        (600, 1100, 1930, 54),
    ] {
        let x = randn(m * k, seed);
        let w = randn(n * k, seed + 100);
        let p = PackedBf16::from_out_in(&w, k, n);
        let rows = Bf16Rows::from_f32(&x, m, k);
        assert_eq!((rows.rows(), rows.k()), (m, k));
        let y0 = randn(m * n, seed + 200);
        let mut paths = bf16_paths();
        if m * k * n > 1_000_000 {
            paths.retain(|&p| p != Bf16Path::Portable); // slow here
        }
        for path in paths {
            for accumulate in [false, true] {
                let mut want = y0.clone();
                gemm_bf16_with(path, m, &x, &p, &mut want, accumulate);
                let mut got = y0.clone();
                gemm_bf16_rows_with(path, &rows, &p, &mut got, accumulate);
                assert!(
                    want.iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} m {m} k {k} n {n} accumulate {accumulate}: rows differ from f32 input",
                    path.name()
                );
            }
        }
    }
}

#[test]
fn a_mismatched_rows_operand_panics() {
    let p = PackedBf16::from_out_in(&[0.0; 12], 4, 3);
    let rows = Bf16Rows::zeros(2, 5);
    let r = std::panic::catch_unwind(|| {
        let mut y = vec![0.0; 6];
        gemm_bf16_rows(&rows, &p, &mut y, false);
    });
    assert!(r.is_err());
}
