//! The packed f32 product against its scalar definition (one `mul_add`
//! chain per output over k in order: the same bits) and against an f64
//! product (the definition is a product at all), on shapes that cut every
//! block edge: row tiles (8), panels (48), task rows (256), k chunks (768
//! on AVX-512, 256 on AVX2). Every path this CPU has runs (AVX-512 and the
//! AVX2 fallback on a CPU with both).

use saelab_kernels::f32gemm::{
    f32_paths, gemm_f32, gemm_f32_reference, gemm_f32_serial, F32Path, PackedF32,
};

/// The paths to test, said on stderr when there are none.
fn paths() -> Vec<F32Path> {
    let paths = f32_paths();
    if paths.is_empty() {
        eprintln!("no avx512f or avx2+fma: the packed f32 path does not run here");
    }
    paths
}

/// Deterministic values in [-1, 1) with a spread of magnitudes.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 20_011;
            (h as f32 / 10_005.5 - 1.0) * if i % 7 == 0 { 8.0 } else { 1.0 }
        })
        .collect()
}

/// `W` `[k][n]` transposed to `[n][k]`.
fn transpose(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    (0..n * k).map(|i| w[(i % k) * n + i / k]).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (7, 47, 3),
    (8, 48, 16),
    (9, 49, 33),
    (70, 100, 600),
    (16, 96, 769),
    (33, 50, 1600),
    (300, 200, 64),
    (520, 145, 96),
];

#[test]
fn same_bits_as_the_scalar_chain_on_every_edge() {
    for path in paths() {
        same_bits_on(path);
    }
}

fn same_bits_on(path: F32Path) {
    for (m, n, k) in SHAPES {
        let x = values(m * k, 1);
        let w = values(k * n, 2);
        let y0 = values(m * n, 3);
        let b = values(n, 8);
        let packs = [
            PackedF32::from_in_out(&w, k, n).with_path(path),
            PackedF32::from_out_in(&transpose(&w, k, n), k, n).with_path(path),
        ];
        for (accumulate, bias) in [
            (false, None),
            (true, None),
            (false, Some(&b[..])),
            (true, Some(&b[..])),
        ] {
            let mut want = y0.clone();
            gemm_f32_reference(m, &x, &w, (k, n), bias, &mut want, accumulate);
            for packed in &packs {
                let mut got = y0.clone();
                pool(2).install(|| gemm_f32(m, &x, packed, bias, &mut got, accumulate));
                let what = format!(
                    "{path:?}: {m}×{n}×{k}, accumulate {accumulate}, bias {}",
                    bias.is_some()
                );
                assert_eq!(bits(&got), bits(&want), "{what}");
                let mut serial = y0.clone();
                gemm_f32_serial(m, &x, packed, bias, &mut serial, accumulate);
                assert_eq!(bits(&serial), bits(&want), "{what}, serial");
            }
        }
    }
}

#[test]
fn thread_count_does_not_change_the_bits() {
    let (m, n, k) = (600, 150, 900);
    let (x, w) = (values(m * k, 4), values(k * n, 5));
    for path in paths() {
        let packed = PackedF32::from_in_out(&w, k, n).with_path(path);
        let run = |threads| {
            let mut y = vec![0.0; m * n];
            pool(threads).install(|| gemm_f32(m, &x, &packed, None, &mut y, false));
            bits(&y)
        };
        let one = run(1);
        assert_eq!(run(2), one, "{path:?}");
        assert_eq!(run(3), one, "{path:?}");
    }
}

#[test]
fn the_scalar_chain_is_the_product() {
    let (m, n, k) = (9, 50, 700);
    let (x, w) = (values(m * k, 6), values(k * n, 7));
    let mut y = vec![0.0; m * n];
    gemm_f32_reference(m, &x, &w, (k, n), None, &mut y, false);
    for r in 0..m {
        for c in 0..n {
            let exact: f64 = (0..k)
                .map(|p| x[r * k + p] as f64 * w[p * n + c] as f64)
                .sum();
            let scale: f64 = (0..k)
                .map(|p| (x[r * k + p] as f64 * w[p * n + c] as f64).abs())
                .sum();
            assert!(
                (y[r * n + c] as f64 - exact).abs() <= 1e-6 * scale,
                "({r}, {c})"
            );
        }
    }
}

#[test]
fn empty_inner_dimension_gives_zeros_or_keeps_y_plus_bias() {
    let Some(&path) = paths().first() else {
        return;
    };
    let packed = PackedF32::from_in_out(&[], 0, 5).with_path(path);
    let mut y = vec![1.0; 10];
    gemm_f32(2, &[], &packed, None, &mut y, true);
    assert_eq!(y, vec![1.0; 10]);
    gemm_f32(2, &[], &packed, Some(&[0.5; 5]), &mut y, true);
    assert_eq!(y, vec![1.5; 10]);
    gemm_f32(2, &[], &packed, None, &mut y, false);
    assert_eq!(y, vec![0.0; 10]);
    gemm_f32_serial(2, &[], &packed, Some(&[0.5; 5]), &mut y, true);
    assert_eq!(y, vec![0.5; 10]);
}

/// Packing keeps the values: unpacked, both layouts give W back exactly
/// (a holder keeps only the packed copy and derives the bf16 one from it).
#[test]
fn unpacking_gives_w_back() {
    for (_, n, k) in SHAPES {
        let w = values(k * n, 9);
        let back = [
            PackedF32::from_in_out(&w, k, n).to_in_out(),
            PackedF32::from_out_in(&transpose(&w, k, n), k, n).to_in_out(),
        ];
        for got in back {
            assert_eq!(bits(&got), bits(&w), "k {k}, n {n}");
        }
    }
}
