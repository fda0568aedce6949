//! Feature matching (issue #4): invariants of the comparison, the blocked
//! top-n search against brute force, the assignment solvers against brute
//! force and against scipy's `linear_sum_assignment` (committed fixtures
//! from `scripts/reference/gen_assignment_fixtures.py`), the sparse
//! certified path against the dense one, and bad input.
//!
//! References here are independent of the library: cosines are recomputed
//! in f64 from the raw weights, brute force enumerates all injective maps.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_analysis::matching::{
    assign, assign_with_profiles, compare, linear_sum_assignment, sparse_linear_sum_assignment,
    top_n, top_n_both, AssignmentOptions, AssignmentPath, AssignmentStrategy, MatchError,
    MatchOptions, TileConfig, Unit, UnitVectors, VectorKind, VectorSelection,
};
use saelab_sae::{ArchSpec, Sae, SaeConfig, SaeParams};

// ---------------------------------------------------------------- helpers

fn gaussian(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

fn sae_from(d: usize, n: usize, w_dec: Vec<f32>, w_enc_t: Vec<f32>) -> Sae {
    let cfg = SaeConfig::new(d, n, ArchSpec::TopK { k: 1 });
    let p = SaeParams {
        d,
        n,
        w_enc_t,
        b_enc: vec![0.0; n],
        w_dec,
        b_dec: vec![0.0; d],
        log_threshold: vec![],
    };
    Sae::new(cfg, p).expect("valid test SAE")
}

fn random_sae(d: usize, n: usize, seed: u64) -> Sae {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dec = gaussian(&mut rng, n * d);
    let enc = gaussian(&mut rng, n * d);
    sae_from(d, n, dec, enc)
}

/// f64 cosine of raw (unnormalized) rows.
fn cos64(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-8)
}

fn unit(label: &str, data: &[f32], count: usize, dim: usize) -> UnitVectors {
    UnitVectors::from_rows(label, data, count, dim).expect("finite test vectors")
}

/// Optimum over all injective maps of the smaller side into the larger,
/// by enumerating every permutation of the larger side (n ≤ 7) and using
/// its first `small` entries.
fn brute_force(m: &[f64], rows: usize, cols: usize, maximize: bool) -> f64 {
    let (small, large) = (rows.min(cols), rows.max(cols));
    let at = |s: usize, l: usize| {
        if rows <= cols {
            m[s * cols + l]
        } else {
            m[l * cols + s]
        }
    };
    let mut best = if maximize {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };
    let mut perm: Vec<usize> = (0..large).collect();
    // Heap's algorithm, iterative.
    let mut c = vec![0usize; large];
    let mut visit = |p: &[usize]| {
        let v: f64 = (0..small).map(|s| at(s, p[s])).sum();
        if (maximize && v > best) || (!maximize && v < best) {
            best = v;
        }
    };
    visit(&perm);
    let mut i = 1;
    while i < large {
        if c[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i);
            } else {
                perm.swap(c[i], i);
            }
            visit(&perm);
            c[i] += 1;
            i = 1;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    best
}

fn dense_to_csr(m: &[f64], rows: usize, cols: usize) -> (Vec<usize>, Vec<u32>) {
    let indptr = (0..=rows).map(|i| i * cols).collect();
    let indices = (0..rows).flat_map(|_| 0..cols as u32).collect();
    let _ = m;
    (indptr, indices)
}

fn check_pairs_valid(pairs: &[(usize, usize)], rows: usize, cols: usize) {
    assert_eq!(pairs.len(), rows.min(cols));
    let mut ur = vec![false; rows];
    let mut uc = vec![false; cols];
    for &(r, c) in pairs {
        assert!(!ur[r] && !uc[c], "pair ({r},{c}) reuses a row or column");
        ur[r] = true;
        uc[c] = true;
    }
}

// ------------------------------------------------------------- invariants

#[test]
fn sae_against_itself_matches_fully_with_identity_assignment() {
    let sae = random_sae(32, 200, 1);
    let opts = MatchOptions {
        vectors: VectorSelection::Both,
        neurons: true,
        assignment: true,
        chance_queries: 64,
        ..MatchOptions::default()
    };
    let rep = compare(&sae, &sae, &opts).expect("compare");
    assert_eq!(rep.comparisons.len(), 4);
    for c in &rep.comparisons {
        for dir in [&c.b_in_a, &c.a_in_b] {
            assert_eq!(dir.ratio, 1.0, "{:?} {:?}", c.kind, c.unit);
            assert!((dir.mmcs - 1.0).abs() < 1e-6, "mmcs {}", dir.mmcs);
            assert_eq!(
                dir.top.argmax(),
                (0..dir.n_query as u32).collect::<Vec<_>>()
            );
        }
        let asg = c.assignment_pairs.as_ref().expect("assignment");
        let ident: Vec<(u32, u32)> = (0..c.n_a as u32).map(|i| (i, i)).collect();
        assert_eq!(asg.pairs, ident);
        assert!(asg.certificate.certified);
        assert_eq!(asg.fraction_above(0.7), 1.0);
        assert!((asg.total - c.n_a as f64).abs() < 1e-4);
    }
    let shared = rep.shared.expect("shared fraction");
    assert_eq!(shared.shared, 1.0);
    assert_eq!(shared.decoder_pairs_encoder_above, 1.0);
}

/// B = A with latents permuted (B_j = A_π(j)) and noise of scale 1e-3.
fn permuted_copy(d: usize, n: usize, seed: u64) -> (Sae, Sae, Vec<usize>) {
    let a = random_sae(d, n, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let pa = a.params();
    let noise = gaussian(&mut rng, 2 * n * d);
    let mut dec = vec![0.0f32; n * d];
    let mut enc = vec![0.0f32; n * d];
    for j in 0..n {
        for k in 0..d {
            dec[j * d + k] = pa.w_dec[perm[j] * d + k] + 1e-3 * noise[j * d + k];
            enc[j * d + k] = pa.w_enc_t[perm[j] * d + k] + 1e-3 * noise[n * d + j * d + k];
        }
    }
    (a, sae_from(d, n, dec, enc), perm)
}

#[test]
fn permuted_perturbed_copy_gives_the_permutation_back() {
    let (a, b, perm) = permuted_copy(48, 300, 7);
    for strategy in [AssignmentStrategy::Dense, AssignmentStrategy::Sparse] {
        let opts = MatchOptions {
            vectors: VectorSelection::Both,
            assignment: true,
            chance_queries: 16,
            assignment_options: AssignmentOptions {
                strategy,
                ..AssignmentOptions::default()
            },
            ..MatchOptions::default()
        };
        let rep = compare(&a, &b, &opts).expect("compare");
        for c in &rep.comparisons {
            // Query j of B finds A's latent perm[j]; query i of A finds the
            // j with perm[j] = i.
            let top1: Vec<usize> = c.b_in_a.top.argmax().iter().map(|&x| x as usize).collect();
            assert_eq!(top1, perm);
            let mut inv = vec![0usize; perm.len()];
            for (j, &i) in perm.iter().enumerate() {
                inv[i] = j;
            }
            let back: Vec<usize> = c.a_in_b.top.argmax().iter().map(|&x| x as usize).collect();
            assert_eq!(back, inv);
            let asg = c.assignment_pairs.as_ref().expect("assignment");
            let want: Vec<(u32, u32)> =
                (0..perm.len()).map(|i| (i as u32, inv[i] as u32)).collect();
            assert_eq!(asg.pairs, want, "{strategy:?}");
            assert!(asg.certificate.certified);
            assert_eq!(c.b_in_a.ratio, 1.0);
        }
        assert_eq!(rep.shared.expect("shared").shared, 1.0);
    }
}

#[test]
fn hungarian_ratio_never_exceeds_matching_ratio() {
    // Partially related dictionaries so that ratios sit strictly between 0
    // and 1: B's latents are A's plus noise of varying strength, plus
    // unrelated ones; rectangular in both orientations.
    for (na, nb, seed) in [(150usize, 150usize, 3u64), (120, 180, 4), (180, 110, 5)] {
        let d = 24;
        let a = random_sae(d, na, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 31);
        let pa = a.params().clone();
        let mut dec = gaussian(&mut rng, nb * d);
        let enc = gaussian(&mut rng, nb * d);
        for j in 0..nb.min(na) {
            let s = (j % 10) as f32 * 0.12;
            for k in 0..d {
                // Several B latents near the same A latent (j/2) to make the
                // one-to-one constraint bind.
                dec[j * d + k] = pa.w_dec[(j / 2) * d + k] + s * dec[j * d + k];
            }
        }
        let b = sae_from(d, nb, dec, enc);
        let opts = MatchOptions {
            assignment: true,
            chance_queries: 16,
            ..MatchOptions::default()
        };
        let rep = compare(&a, &b, &opts).expect("compare");
        let c = rep
            .get(VectorKind::Decoder, Unit::Features)
            .expect("decoder");
        let asg = c.assignment_pairs.as_ref().expect("assignment");
        let above = asg.cosines.iter().filter(|&&x| x > 0.7).count() as f64;
        let rh = c.assignment.as_ref().expect("summary").fraction_above;
        assert!(
            rh > 0.0 && c.b_in_a.ratio < 1.0,
            "test case should be non-trivial"
        );
        // Counts: every matched pair above τ makes both its ends match.
        assert!(above <= c.b_in_a.ratio * nb as f64 + 1e-9);
        assert!(above <= c.a_in_b.ratio * na as f64 + 1e-9);
        if na == nb {
            assert!(rh <= c.b_in_a.ratio && rh <= c.a_in_b.ratio);
        }
        assert!(rh < c.b_in_a.ratio, "duplicated targets must make R_H < R");
    }
}

#[test]
fn independent_random_dictionaries_sit_at_chance_level() {
    let (d, n) = (64, 512);
    let a = random_sae(d, n, 11);
    let b = random_sae(d, n, 12);
    let opts = MatchOptions {
        chance_queries: 512,
        ..MatchOptions::default()
    };
    let rep = compare(&a, &b, &opts).expect("compare");
    let c = rep
        .get(VectorKind::Decoder, Unit::Features)
        .expect("decoder");
    for dir in [&c.b_in_a, &c.a_in_b] {
        assert_eq!(dir.ratio, 0.0);
        // Mean top-1 over 512 queries has a standard error ≈ 0.002.
        assert!(
            (dir.mmcs - dir.chance_monte_carlo).abs() < 0.015,
            "mmcs {} vs MC chance {}",
            dir.mmcs,
            dir.chance_monte_carlo
        );
        // √(2 ln n)/√d is the leading-order value; it overestimates at
        // finite n.
        assert!(dir.chance_analytic > dir.chance_monte_carlo);
        assert!((dir.chance_analytic - (2.0 * (n as f64).ln()).sqrt() / 8.0).abs() < 1e-12);
        assert!(dir.chance_monte_carlo > 0.25 && dir.chance_monte_carlo < 0.5);
        // Histograms count every query once per rank.
        for h in &dir.histograms {
            assert_eq!(h.counts.iter().sum::<u64>(), n as u64);
        }
    }
}

// ----------------------------------------------------------- top-n search

/// Brute-force top-n: f64 cosines, sorted by (value desc, index asc).
fn brute_top(
    refs: &[f32],
    nr: usize,
    qs: &[f32],
    nq: usize,
    dim: usize,
    k: usize,
) -> Vec<Vec<(u32, f64)>> {
    (0..nq)
        .map(|q| {
            let mut v: Vec<(u32, f64)> = (0..nr)
                .map(|i| {
                    (
                        i as u32,
                        cos64(&refs[i * dim..(i + 1) * dim], &qs[q * dim..(q + 1) * dim]),
                    )
                })
                .collect();
            v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            v.truncate(k);
            v
        })
        .collect()
}

fn assert_top_matches(got: &saelab_analysis::matching::TopN, want: &[Vec<(u32, f64)>]) {
    assert_eq!(got.n_queries, want.len());
    for (q, w) in want.iter().enumerate() {
        let (ix, vs) = got.row(q);
        assert_eq!(ix.len(), w.len());
        for (r, &(wi, wv)) in w.iter().enumerate() {
            assert!(
                (vs[r] as f64 - wv).abs() < 1e-5,
                "q {q} rank {r}: {} vs {wv}",
                vs[r]
            );
            // Indices must agree unless a near-tie makes the order
            // ambiguous at f32 precision.
            let ambiguous = w
                .iter()
                .enumerate()
                .any(|(s, &(_, ov))| s != r && (ov - wv).abs() < 1e-5);
            if !ambiguous {
                assert_eq!(ix[r], wi, "q {q} rank {r}");
            }
        }
    }
}

#[test]
fn blocked_top_n_equals_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let tiles = [
        TileConfig {
            query_block: 8,
            ref_block: 5,
        },
        TileConfig {
            query_block: 3,
            ref_block: 64,
        },
        TileConfig::default(),
    ];
    // (n_ref, n_query, dim, n): sizes not multiples of the tiles, n > n_ref.
    for (nr, nq, dim, n) in [
        (37usize, 53usize, 7usize, 5usize),
        (101, 29, 16, 4),
        (3, 11, 5, 6),
        (1, 4, 3, 2),
        (70, 70, 12, 70),
    ] {
        let refs = gaussian(&mut rng, nr * dim);
        let qs = gaussian(&mut rng, nq * dim);
        let (ur, uq) = (unit("ref", &refs, nr, dim), unit("query", &qs, nq, dim));
        for tile in &tiles {
            let got = top_n(&ur, &uq, n, tile).expect("top_n");
            assert_eq!(got.k, n.min(nr));
            assert_top_matches(&got, &brute_top(&refs, nr, &qs, nq, dim, n));
            // Both directions in one pass.
            let (fwd, back) = top_n_both(&ur, &uq, n, n + 1, tile).expect("both");
            assert_eq!(fwd, got);
            assert_eq!(back.k, (n + 1).min(nq));
            assert_top_matches(&back, &brute_top(&qs, nq, &refs, nr, dim, n + 1));
        }
    }
}

#[test]
fn top_n_ties_go_to_the_lower_index() {
    // Reference rows 0..6 repeat the same 3 vectors: each query sees pairs
    // of exactly equal cosines; the lower index must come first, also when
    // the duplicates sit in different tiles.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let base = gaussian(&mut rng, 3 * 8);
    let refs: Vec<f32> = base.iter().chain(&base).copied().collect();
    let qs = gaussian(&mut rng, 10 * 8);
    let (ur, uq) = (unit("r", &refs, 6, 8), unit("q", &qs, 10, 8));
    for tile in [
        TileConfig {
            query_block: 4,
            ref_block: 2,
        },
        TileConfig::default(),
    ] {
        let t = top_n(&ur, &uq, 6, &tile).expect("top_n");
        for q in 0..10 {
            let (ix, vs) = t.row(q);
            for r in 1..6 {
                assert!(vs[r - 1] >= vs[r]);
                if vs[r - 1] == vs[r] {
                    assert!(ix[r - 1] < ix[r], "tie order at q {q}: {ix:?}");
                }
            }
            // Every duplicate pair is adjacent: i then i + 3.
            for r in (0..6).step_by(2) {
                if vs[r] == vs[r + 1] {
                    assert_eq!(ix[r] + 3, ix[r + 1]);
                }
            }
        }
    }
}

// ------------------------------------------------------------- assignment

#[test]
fn assignment_equals_brute_force_on_small_matrices() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let shapes = [
        (1usize, 1usize),
        (1, 4),
        (4, 1),
        (2, 2),
        (3, 5),
        (5, 3),
        (4, 6),
        (6, 4),
        (6, 6),
        (7, 7),
        (5, 7),
        (7, 5),
    ];
    for &(rows, cols) in &shapes {
        for trial in 0..6 {
            let m: Vec<f64> = (0..rows * cols)
                .map(|_| match trial % 3 {
                    0 => rng.random_range(-1.0..1.0),
                    // Small integers: many ties.
                    1 => rng.random_range(0..3) as f64,
                    // All equal but a few.
                    _ => {
                        if rng.random_range(0..4) == 0 {
                            1.0
                        } else {
                            0.5
                        }
                    }
                })
                .collect();
            for maximize in [true, false] {
                let want = brute_force(&m, rows, cols, maximize);
                let dense = linear_sum_assignment(&m, rows, cols, maximize).expect("dense");
                check_pairs_valid(&dense.pairs, rows, cols);
                assert!(
                    (dense.total - want).abs() < 1e-12,
                    "{rows}x{cols} dense {} vs {want}",
                    dense.total
                );
                let sum: f64 = dense.pairs.iter().map(|&(r, c)| m[r * cols + c]).sum();
                assert!((sum - dense.total).abs() < 1e-12);
                let (ip, ix) = dense_to_csr(&m, rows, cols);
                let sparse = sparse_linear_sum_assignment(rows, cols, &ip, &ix, &m, maximize)
                    .expect("sparse");
                check_pairs_valid(&sparse.pairs, rows, cols);
                assert!(
                    (sparse.total - want).abs() < 1e-12,
                    "{rows}x{cols} sparse {} vs {want}",
                    sparse.total
                );
            }
        }
    }
}

#[test]
fn assignment_on_unit_vectors_equals_brute_force() {
    // Through `assign` (f32 cosines from the GEMM), both paths, with
    // duplicate vectors (tied cosines).
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(na, nb) in &[(5usize, 7usize), (7, 5), (6, 6), (7, 7)] {
        let dim = 4;
        let mut a = gaussian(&mut rng, na * dim);
        let b = gaussian(&mut rng, nb * dim);
        a.copy_within(0..dim, dim); // rows 0 and 1 of A identical
        let (ua, ub) = (unit("a", &a, na, dim), unit("b", &b, nb, dim));
        let m: Vec<f64> = (0..na)
            .flat_map(|i| (0..nb).map(move |j| (i, j)))
            .map(|(i, j)| ua.cosine(i, &ub, j))
            .collect();
        let want = brute_force(&m, na, nb, true);
        for strategy in [AssignmentStrategy::Dense, AssignmentStrategy::Sparse] {
            for cand in [1usize, 2, 32] {
                let opts = AssignmentOptions {
                    strategy,
                    candidates: cand,
                    max_rounds: 20,
                    ..AssignmentOptions::default()
                };
                let asg = assign(&ua, &ub, &opts).expect("assign");
                assert!(
                    (asg.total - want).abs() < 1e-5,
                    "{na}x{nb} {strategy:?} m {cand}: {} vs {want}",
                    asg.total
                );
                assert!(asg.certificate.certified);
                let pairs: Vec<(usize, usize)> = asg
                    .pairs
                    .iter()
                    .map(|&(x, y)| (x as usize, y as usize))
                    .collect();
                check_pairs_valid(&pairs, na, nb);
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    rows: usize,
    cols: usize,
    maximize: bool,
    ties: bool,
    matrix: Option<Vec<f64>>,
    dim: Option<usize>,
    vectors_a: Option<Vec<f64>>,
    vectors_b: Option<Vec<f64>>,
    scipy_total: f64,
    scipy_rows: Vec<usize>,
    scipy_cols: Vec<usize>,
}

/// Cosine matrix in f64 as the generator computes it (normalize, then dot).
fn cosine_f64(a: &[f64], na: usize, b: &[f64], nb: usize, dim: usize) -> Vec<f64> {
    let norm = |v: &[f64]| -> Vec<f64> {
        v.chunks(dim)
            .flat_map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.iter().map(move |x| x / n)
            })
            .collect()
    };
    let (an, bn) = (norm(a), norm(b));
    (0..na)
        .flat_map(|i| (0..nb).map(move |j| (i, j)))
        .map(|(i, j)| (0..dim).map(|k| an[i * dim + k] * bn[j * dim + k]).sum())
        .collect()
}

#[test]
fn assignment_equals_scipy_on_fixtures() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/assignment/cases.json"
    );
    let text = std::fs::read_to_string(path)
        .expect("fixture file (run scripts/reference/gen_assignment_fixtures.py)");
    let fx: Fixture = serde_json::from_str(&text).expect("fixture JSON");
    assert!(fx.cases.len() >= 10);
    for c in &fx.cases {
        let m = match (&c.matrix, c.dim, &c.vectors_a, &c.vectors_b) {
            (Some(m), ..) => m.clone(),
            (None, Some(dim), Some(a), Some(b)) => cosine_f64(a, c.rows, b, c.cols, dim),
            _ => panic!("case {} has neither matrix nor vectors", c.name),
        };
        let got = linear_sum_assignment(&m, c.rows, c.cols, c.maximize).expect("lsa");
        assert!(
            (got.total - c.scipy_total).abs() < 1e-9,
            "{}: {} vs scipy {}",
            c.name,
            got.total,
            c.scipy_total
        );
        let (ip, ix) = dense_to_csr(&m, c.rows, c.cols);
        let sp = sparse_linear_sum_assignment(c.rows, c.cols, &ip, &ix, &m, c.maximize)
            .expect("sparse lsa");
        assert!(
            (sp.total - c.scipy_total).abs() < 1e-9,
            "{} sparse: {} vs scipy {}",
            c.name,
            sp.total,
            c.scipy_total
        );
        if !c.ties {
            let want: Vec<(usize, usize)> = c
                .scipy_rows
                .iter()
                .copied()
                .zip(c.scipy_cols.iter().copied())
                .collect();
            assert_eq!(got.pairs, want, "{}", c.name);
            assert_eq!(sp.pairs, want, "{} sparse", c.name);
        }
        if let (Some(dim), Some(a), Some(b)) = (c.dim, &c.vectors_a, &c.vectors_b) {
            // The full pipeline on f32 unit vectors, both paths.
            let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&x| x as f32).collect();
            let (ua, ub) = (unit("a", &a32, c.rows, dim), unit("b", &b32, c.cols, dim));
            for strategy in [AssignmentStrategy::Dense, AssignmentStrategy::Sparse] {
                let opts = AssignmentOptions {
                    strategy,
                    candidates: 8,
                    ..AssignmentOptions::default()
                };
                let asg = assign(&ua, &ub, &opts).expect("assign");
                assert!(
                    (asg.total - c.scipy_total).abs() < 1e-4,
                    "{} {strategy:?}: {} vs {}",
                    c.name,
                    asg.total,
                    c.scipy_total
                );
                assert!(asg.certificate.certified);
            }
        }
    }
}

#[test]
fn sparse_path_equals_dense_path_with_certificate() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for &(na, nb, dim) in &[
        (800usize, 800usize, 32usize),
        (500, 1100, 48),
        (1100, 500, 64),
    ] {
        let a = gaussian(&mut rng, na * dim);
        let b = gaussian(&mut rng, nb * dim);
        let (ua, ub) = (unit("a", &a, na, dim), unit("b", &b, nb, dim));
        let dense = assign(
            &ua,
            &ub,
            &AssignmentOptions {
                strategy: AssignmentStrategy::Dense,
                ..AssignmentOptions::default()
            },
        )
        .expect("dense");
        let sparse = assign(
            &ua,
            &ub,
            &AssignmentOptions {
                strategy: AssignmentStrategy::Sparse,
                candidates: 32,
                ..AssignmentOptions::default()
            },
        )
        .expect("sparse");
        assert!(matches!(
            dense.path,
            AssignmentPath::Dense {
                fallback: false,
                ..
            }
        ));
        assert!(
            matches!(sparse.path, AssignmentPath::Sparse { .. }),
            "{:?}",
            sparse.path
        );
        assert!(sparse.certificate.certified && dense.certificate.certified);
        assert!(
            sparse.certificate.dual_gap < 1e-6,
            "{:?}",
            sparse.certificate
        );
        assert!(
            (sparse.total - dense.total).abs() < 1e-4,
            "{na}x{nb}: sparse {} dense {}",
            sparse.total,
            dense.total
        );
        // The two paths compute the same cosines up to an ulp, so the
        // optimal pairs agree except on (improbable) near-ties.
        let differ = sparse
            .pairs
            .iter()
            .zip(&dense.pairs)
            .filter(|(x, y)| x != y)
            .count();
        assert!(differ <= 4, "{differ} pairs differ");
    }
}

#[test]
fn precomputed_profiles_give_the_same_assignment() {
    // compare() feeds its top-n pass to the assignment; the result must not
    // depend on where the candidate lists came from (both orientations).
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for &(na, nb) in &[(300usize, 500usize), (500, 300)] {
        let dim = 24;
        let a = gaussian(&mut rng, na * dim);
        let b = gaussian(&mut rng, nb * dim);
        let (ua, ub) = (unit("a", &a, na, dim), unit("b", &b, nb, dim));
        let opts = AssignmentOptions {
            strategy: AssignmentStrategy::Sparse,
            candidates: 16,
            ..AssignmentOptions::default()
        };
        let plain = assign(&ua, &ub, &opts).expect("assign");
        let (b_in_a, a_in_b) = top_n_both(&ua, &ub, 40, 40, &TileConfig::default()).expect("top");
        let pre = assign_with_profiles(&ua, &ub, &opts, &b_in_a, &a_in_b).expect("assign");
        assert!(plain.certificate.certified && pre.certificate.certified);
        assert!((plain.total - pre.total).abs() < 1e-5);
        assert_eq!(plain.pairs, pre.pairs);
        // Profiles of the wrong orientation are ignored, not misused.
        let wrong = assign_with_profiles(&ua, &ub, &opts, &a_in_b, &b_in_a).expect("assign");
        assert!((wrong.total - plain.total).abs() < 1e-5);
    }
}

#[test]
fn too_few_candidates_exercise_the_certificate_loop() {
    // m = 1: the candidate graph is far too thin (infeasible or not
    // optimal); the solver must widen it or add violating edges until the
    // dual certifies, and end at the dense optimum.
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let (na, nb, dim) = (400usize, 400usize, 16usize);
    let a = gaussian(&mut rng, na * dim);
    let b = gaussian(&mut rng, nb * dim);
    let (ua, ub) = (unit("a", &a, na, dim), unit("b", &b, nb, dim));
    let dense = assign(
        &ua,
        &ub,
        &AssignmentOptions {
            strategy: AssignmentStrategy::Dense,
            ..AssignmentOptions::default()
        },
    )
    .expect("dense");
    let opts = AssignmentOptions {
        strategy: AssignmentStrategy::Sparse,
        candidates: 1,
        max_rounds: 30,
        dense_fallback_max_entries: 0,
        ..AssignmentOptions::default()
    };
    let sparse = assign(&ua, &ub, &opts).expect("sparse");
    match &sparse.path {
        AssignmentPath::Sparse {
            m,
            rounds,
            edges_added,
            ..
        } => {
            assert!(*rounds >= 2, "a single round cannot suffice at m = 1");
            assert!(*m > 1 || *edges_added > 0);
        }
        p => panic!("expected the sparse path, got {p:?}"),
    }
    assert!(sparse.certificate.certified);
    assert!((sparse.total - dense.total).abs() < 1e-4);
    // With one round allowed and no dense fallback the result is flagged.
    let one = AssignmentOptions {
        max_rounds: 1,
        ..opts.clone()
    };
    match assign(&ua, &ub, &one) {
        Ok(asg) => assert!(!asg.certificate.certified),
        Err(MatchError::Infeasible { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    // With the dense fallback allowed it ends there, certified.
    let fb = AssignmentOptions {
        max_rounds: 1,
        dense_fallback_max_entries: usize::MAX,
        ..opts
    };
    let asg = assign(&ua, &ub, &fb).expect("fallback");
    assert!(
        matches!(asg.path, AssignmentPath::Dense { fallback: true, .. }),
        "{:?}",
        asg.path
    );
    assert!((asg.total - dense.total).abs() < 1e-4);
}

// -------------------------------------------------------------- bad input

#[test]
fn different_widths_are_rejected() {
    let a = random_sae(16, 40, 1);
    let b = random_sae(24, 40, 2);
    let err = compare(&a, &b, &MatchOptions::default()).expect_err("d differs");
    match &err {
        MatchError::DimensionMismatch { dim_a, dim_b, .. } => {
            assert_eq!((*dim_a, *dim_b), (16, 24))
        }
        e => panic!("wrong error {e}"),
    }
    assert!(err.to_string().contains("A has dimension 16"), "{err}");
    // Neurons of equal n are comparable across d...
    let opts = MatchOptions {
        neurons: true,
        ..MatchOptions::default()
    };
    let c = random_sae(16, 40, 3);
    assert!(compare(&a, &c, &opts).is_ok());
    // ...but not of different n.
    let e = random_sae(16, 48, 4);
    let err = compare(&a, &e, &opts).expect_err("n differs");
    assert!(
        matches!(
            err,
            MatchError::DimensionMismatch {
                dim_a: 40,
                dim_b: 48,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("neurons"), "{err}");
}

#[test]
fn non_finite_weights_name_the_sae_and_tensor() {
    let good = random_sae(8, 20, 1);
    let mut p = good.params().clone();
    p.w_dec[3 * 8 + 5] = f32::NAN;
    let bad_dec = sae_from(8, 20, p.w_dec.clone(), good.params().w_enc_t.clone());
    let opts = MatchOptions {
        labels: ("good".into(), "broken.safetensors".into()),
        ..MatchOptions::default()
    };
    let err = compare(&good, &bad_dec, &opts).expect_err("NaN");
    match &err {
        MatchError::NonFinite {
            label,
            tensor,
            row,
            col,
            value,
        } => {
            assert_eq!(
                (label.as_str(), *tensor, *row, *col),
                ("broken.safetensors", "W_dec", 3, 5)
            );
            assert!(value.is_nan());
        }
        e => panic!("wrong error {e}"),
    }
    // Encoder: W_enc is [d, n]; w_enc_t[latent 7, dim 2] is W_enc[2, 7].
    let mut enc = good.params().w_enc_t.clone();
    enc[7 * 8 + 2] = f32::INFINITY;
    let bad_enc = sae_from(8, 20, good.params().w_dec.clone(), enc);
    let opts = MatchOptions {
        vectors: VectorSelection::Encoder,
        ..opts
    };
    match compare(&good, &bad_enc, &opts).expect_err("inf") {
        MatchError::NonFinite {
            tensor, row, col, ..
        } => assert_eq!((tensor, row, col), ("W_enc", 2, 7)),
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn zero_norm_vectors_have_cosine_zero_and_are_counted() {
    let (d, n) = (16, 50);
    let sae = random_sae(d, n, 8);
    let mut p = sae.params().clone();
    for i in [4usize, 17, 30] {
        p.w_dec[i * d..(i + 1) * d]
            .iter_mut()
            .for_each(|v| *v = 0.0);
    }
    let z = sae_from(d, n, p.w_dec, p.w_enc_t);
    let opts = MatchOptions {
        assignment: true,
        chance_queries: 16,
        ..MatchOptions::default()
    };
    let rep = compare(&z, &z, &opts).expect("zero rows are not an error");
    let c = rep
        .get(VectorKind::Decoder, Unit::Features)
        .expect("decoder");
    assert_eq!((c.zero_norm_a, c.zero_norm_b), (3, 3));
    // Zero vectors match nothing, not even themselves.
    assert!((c.b_in_a.ratio - 47.0 / 50.0).abs() < 1e-12);
    for q in [4usize, 17, 30] {
        let (_, vs) = c.b_in_a.top.row(q);
        assert!(vs.iter().all(|&v| v == 0.0), "{vs:?}");
    }
    let asg = c.assignment_pairs.as_ref().expect("assignment");
    assert!((asg.fraction_above(0.7) - 47.0 / 50.0).abs() < 1e-12);
    let v = UnitVectors::features(&z, VectorKind::Decoder, "z").expect("vectors");
    assert_eq!(v.zero_norm, 3);
    assert!(v.row(4).iter().all(|&x| x == 0.0));
}

#[test]
fn invalid_options_are_rejected() {
    let a = random_sae(8, 20, 1);
    for opts in [
        MatchOptions {
            top_n: 0,
            ..MatchOptions::default()
        },
        MatchOptions {
            hist_bins: 0,
            ..MatchOptions::default()
        },
        MatchOptions {
            threshold: f32::NAN,
            ..MatchOptions::default()
        },
        MatchOptions {
            assignment: true,
            assignment_options: AssignmentOptions {
                candidates: 0,
                ..AssignmentOptions::default()
            },
            ..MatchOptions::default()
        },
        MatchOptions {
            tile: TileConfig {
                query_block: 0,
                ref_block: 1,
            },
            ..MatchOptions::default()
        },
    ] {
        assert!(matches!(
            compare(&a, &a, &opts),
            Err(MatchError::InvalidOption(_))
        ));
    }
    let m = [1.0, f64::NAN, 0.0, 2.0];
    assert!(matches!(
        linear_sum_assignment(&m, 2, 2, true),
        Err(MatchError::NonFiniteCost { row: 0, col: 1 })
    ));
    assert!(matches!(
        linear_sum_assignment(&m, 3, 2, true),
        Err(MatchError::Shape { .. })
    ));
    // A sparse matrix whose rows cannot all be matched.
    let err = sparse_linear_sum_assignment(2, 3, &[0, 1, 2], &[1, 1], &[1.0, 2.0], true)
        .expect_err("infeasible");
    assert!(matches!(err, MatchError::Infeasible { .. }));
}

#[test]
fn report_serializes_without_the_per_query_arrays() {
    let a = random_sae(16, 64, 1);
    let b = random_sae(16, 80, 2);
    let opts = MatchOptions {
        vectors: VectorSelection::Both,
        assignment: true,
        chance_queries: 16,
        hist_bins: 20,
        ..MatchOptions::default()
    };
    let rep = compare(&a, &b, &opts).expect("compare");
    let json = serde_json::to_value(&rep).expect("serialize");
    assert_eq!(json["schema"], "saelab.match.v1");
    let c0 = &json["comparisons"][0];
    assert_eq!(c0["kind"], "decoder");
    assert_eq!(c0["unit"], "features");
    assert_eq!(c0["n_a"], 64);
    assert_eq!(c0["n_b"], 80);
    assert_eq!(c0["b_in_a"]["histograms"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        c0["b_in_a"]["histograms"][0]["counts"]
            .as_array()
            .map(Vec::len),
        Some(20)
    );
    assert!(c0["b_in_a"].get("top").is_none());
    assert!(c0.get("assignment_pairs").is_none());
    assert_eq!(c0["assignment"]["pairs"], 64);
    assert_eq!(c0["assignment"]["path"]["kind"], "dense");
    assert!(json["shared"]["shared"].is_number());
    // The per-query arrays are still in the struct for CSV output.
    assert_eq!(rep.comparisons[0].b_in_a.top.n_queries, 80);
    assert_eq!(rep.comparisons[0].a_in_b.top.n_queries, 64);
}
