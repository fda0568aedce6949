//! The row-blocked sparse kernels give the same bits as the plain kernels
//! (which `grad.rs` checks against dense f64 references), on codes dense
//! enough to be blocked, with a row count that leaves a partial last block;
//! and the large-k selection used by AuxK equals a full sort.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_sae::blocked::{tiled_decode, worth_blocking, CodeKernels, RowBlocks, BLOCK_ROWS};
use saelab_sae::kernels::{
    latent_grads, row_topk_positive, sparse_decode, sparse_dz, topk_positive_among, LatentMask,
    SparseCodes,
};

fn random_codes(rng: &mut ChaCha8Rng, rows: usize, n: usize, max_per_row: usize) -> SparseCodes {
    let per_row = (0..rows)
        .map(|_| {
            let want = rng.random_range(0..=max_per_row);
            let mut ix: Vec<u32> = (0..n as u32).collect();
            for i in 0..want {
                let j = rng.random_range(i..n);
                ix.swap(i, j);
            }
            ix.truncate(want);
            ix.sort_unstable();
            let vs = ix.iter().map(|_| rng.random_range(-0.5f32..2.0)).collect();
            (ix, vs)
        })
        .collect();
    SparseCodes::from_rows(n, per_row)
}

fn randv(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn blocked_kernels_equal_plain_kernels_bit_for_bit() {
    // d with a tail after the 8-wide chunks of the dot products, short
    // and long.
    for d in [37, 2 * 64 + 37] {
        check_blocked_kernels(d);
    }
}

fn check_blocked_kernels(d: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (rows, n) = (2 * BLOCK_ROWS + 45, 40);
    let codes = random_codes(&mut rng, rows, n, 25);
    assert!(worth_blocking(&codes));
    assert!(CodeKernels::new(&codes).is_blocked());
    let rb = RowBlocks::new(&codes);
    let w_dec = randv(&mut rng, n * d);
    let g = randv(&mut rng, rows * d);
    let xc = randv(&mut rng, rows * d);
    // Some zero dpre entries exercise the skipped encoder update.
    let dpre: Vec<f32> = (0..codes.nnz())
        .map(|p| {
            if p % 5 == 0 {
                0.0
            } else {
                rng.random_range(-1.0f32..1.0)
            }
        })
        .collect();
    // A per-latent gradient source, as Matryoshka's prefix groups give.
    let g_of = |b: usize, i: usize| -> &[f32] {
        let b = if i.is_multiple_of(3) {
            (b + 1) % rows
        } else {
            b
        };
        &g[b * d..(b + 1) * d]
    };

    let plain = sparse_decode(&codes, &w_dec, d, None);
    assert_eq!(
        bits(&plain),
        bits(&tiled_decode(&codes, &w_dec, d)),
        "decode"
    );
    assert_eq!(
        bits(&plain),
        bits(&CodeKernels::new(&codes).decode(&w_dec, d)),
        "blocked decode"
    );
    // The decode is the product with the dense codes (independent check).
    let dense = codes.to_dense();
    for b in 0..rows {
        for j in 0..d {
            let want: f64 = (0..n)
                .map(|i| dense[b * n + i] as f64 * w_dec[i * d + j] as f64)
                .sum();
            assert!((plain[b * d + j] as f64 - want).abs() < 1e-4);
        }
    }

    let dz_plain = sparse_dz(&codes, &w_dec, d, &g_of);
    let dz_blocked = rb.dz(&codes, &w_dec, d, &g_of);
    assert_eq!(bits(&dz_plain), bits(&dz_blocked), "dz");

    // Start from non-zero gradients: the kernels accumulate.
    let gd0 = randv(&mut rng, n * d);
    let ge0 = randv(&mut rng, n * d);
    let cs0 = randv(&mut rng, n);
    let (mut gd_a, mut ge_a, mut cs_a) = (gd0.clone(), ge0.clone(), cs0.clone());
    latent_grads(
        &codes.to_csc(),
        &codes.val,
        &dpre,
        &xc,
        d,
        &g_of,
        &mut gd_a,
        &mut ge_a,
        &mut cs_a,
        false,
    );
    let (mut gd_b, mut ge_b, mut cs_b) = (gd0.clone(), ge0.clone(), cs0.clone());
    rb.latent_grads(
        &codes.val, &dpre, &xc, d, &g_of, &mut gd_b, &mut ge_b, &mut cs_b, false,
    );
    assert_eq!(bits(&gd_a), bits(&gd_b), "decoder gradient");
    assert_eq!(bits(&ge_a), bits(&ge_b), "encoder gradient");
    assert_eq!(bits(&cs_a), bits(&cs_b), "column sums");
    // And they moved: the test would not notice a no-op otherwise.
    assert_ne!(bits(&gd_a), bits(&gd0));
    assert_ne!(bits(&ge_a), bits(&ge0));

    // Thread count does not change the bits.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (mut gd_c, mut ge_c, mut cs_c) = (gd0, ge0, cs0);
    pool.install(|| {
        RowBlocks::new(&codes).latent_grads(
            &codes.val, &dpre, &xc, d, &g_of, &mut gd_c, &mut ge_c, &mut cs_c, false,
        )
    });
    assert_eq!(bits(&gd_b), bits(&gd_c));
    assert_eq!(bits(&ge_b), bits(&ge_c));
    assert_eq!(bits(&cs_b), bits(&cs_c));

    // Overwriting from garbage equals accumulating onto zeros, both layouts.
    let zeros = vec![0.0f32; n * d];
    let (mut gd_z, mut ge_z, mut cs_z) = (zeros.clone(), zeros, vec![0.0f32; n]);
    rb.latent_grads(
        &codes.val, &dpre, &xc, d, &g_of, &mut gd_z, &mut ge_z, &mut cs_z, false,
    );
    let garbage = randv(&mut rng, n * d);
    for blocked in [false, true] {
        let (mut gd_o, mut ge_o, mut cs_o) = (garbage.clone(), garbage.clone(), vec![0.0f32; n]);
        if blocked {
            rb.latent_grads(
                &codes.val, &dpre, &xc, d, &g_of, &mut gd_o, &mut ge_o, &mut cs_o, true,
            );
        } else {
            latent_grads(
                &codes.to_csc(),
                &codes.val,
                &dpre,
                &xc,
                d,
                &g_of,
                &mut gd_o,
                &mut ge_o,
                &mut cs_o,
                true,
            );
        }
        assert_eq!(
            bits(&gd_o),
            bits(&gd_z),
            "overwritten decoder gradient, blocked {blocked}"
        );
        assert_eq!(
            bits(&ge_o),
            bits(&ge_z),
            "overwritten encoder gradient, blocked {blocked}"
        );
        assert_eq!(bits(&cs_o), bits(&cs_z), "column sums, blocked {blocked}");
    }
}

#[test]
fn sparse_codes_are_not_blocked() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // k 2 of n 1000: each latent is hit far less than once per block.
    let codes = random_codes(&mut rng, 4 * BLOCK_ROWS, 1000, 2);
    assert!(!worth_blocking(&codes));
    // Fewer rows than a block: nothing to block.
    let codes = random_codes(&mut rng, BLOCK_ROWS - 1, 8, 8);
    assert!(!worth_blocking(&codes));
}

#[test]
fn topk_among_candidates_equals_full_sort() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 3000;
    for trial in 0..20 {
        // Quantized values make ties common; some rows have few positives.
        let row: Vec<f32> = (0..n)
            .map(|_| (rng.random_range(-8i32..8) as f32) * 0.25)
            .collect();
        let candidates: Vec<u32> = (0..n as u32)
            .filter(|_| rng.random_range(0..3) > 0)
            .collect();
        let mask = LatentMask::new(n, &candidates);
        assert_eq!(mask.count(), candidates.len());
        for k in [1usize, 5, 64, 512, 5000] {
            let (mut ix, mut vs) = (vec![], vec![]);
            topk_positive_among(&row, &mask, k, &mut ix, &mut vs);
            let mut all: Vec<(f32, u32)> = candidates
                .iter()
                .map(|&i| (row[i as usize], i))
                .filter(|e| e.0 > 0.0)
                .collect();
            all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
            let mut want: Vec<u32> = all.iter().take(k).map(|e| e.1).collect();
            want.sort_unstable();
            assert_eq!(ix, want, "trial {trial}, k {k}");
            for (&i, &v) in ix.iter().zip(&vs) {
                assert_eq!(v, row[i as usize]);
            }
            // The heap selection over the gathered values picks the same set.
            let gathered: Vec<f32> = candidates.iter().map(|&i| row[i as usize]).collect();
            let (mut hx, mut hv) = (vec![], vec![]);
            row_topk_positive(&gathered, k, &mut hx, &mut hv);
            let mapped: Vec<u32> = hx.iter().map(|&l| candidates[l as usize]).collect();
            assert_eq!(mapped, ix);
            assert_eq!(hv, vs);
        }
    }
}
