//! UMAP of row vectors (`saelab_analysis::umap`): separation of clusters,
//! seeded determinism, trustworthiness against a brute-force second
//! implementation, and input errors.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saelab_analysis::umap::{
    cosine_knn, embed_rows, trustworthiness, Embedding, UmapError, UmapInit, UmapParams,
};

const D: usize = 32;
const PER: usize = 100;

fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - r.random::<f64>();
    let u2 = r.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Three well-separated Gaussian blobs on the unit sphere in 32-D (noise
/// 0.05 per coordinate around random unit centres); labels 0, 1, 2.
fn blobs(seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for c in 0..3 {
        let mut centre: Vec<f32> = (0..D).map(|_| normal(&mut r) as f32).collect();
        unit(&mut centre);
        for _ in 0..PER {
            let mut p: Vec<f32> = centre
                .iter()
                .map(|&x| x + 0.05 * normal(&mut r) as f32)
                .collect();
            unit(&mut p);
            rows.extend(p);
            labels.push(c);
        }
    }
    (rows, labels)
}

fn centroid(e: &Embedding, labels: &[usize], c: usize) -> [f64; 2] {
    let pts: Vec<_> = e
        .points
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l == c)
        .collect();
    let s = pts.iter().fold([0.0, 0.0], |s, (p, _)| {
        [s[0] + p[0] as f64, s[1] + p[1] as f64]
    });
    [s[0] / pts.len() as f64, s[1] / pts.len() as f64]
}

fn dist(p: [f32; 2], c: [f64; 2]) -> f64 {
    ((p[0] as f64 - c[0]).powi(2) + (p[1] as f64 - c[1]).powi(2)).sqrt()
}

#[test]
fn blobs_stay_apart() {
    let (rows, labels) = blobs(1);
    for init in [UmapInit::Pca, UmapInit::Random] {
        let params = UmapParams {
            init,
            ..Default::default()
        };
        let e = embed_rows(&rows, 3 * PER, D, &params).unwrap();
        assert_eq!(e.points.len(), 3 * PER);
        let cents: Vec<_> = (0..3).map(|c| centroid(&e, &labels, c)).collect();
        for (i, (&p, &l)) in e.points.iter().zip(&labels).enumerate() {
            let nearest = (0..3)
                .min_by(|&a, &b| dist(p, cents[a]).total_cmp(&dist(p, cents[b])))
                .unwrap();
            assert_eq!(
                nearest, l,
                "{init:?}: point {i} lies nearer cluster {nearest}"
            );
        }
        // Between-cluster gaps exceed the spread inside each cluster.
        let spread = (0..3 * PER)
            .map(|i| dist(e.points[i], cents[labels[i]]))
            .fold(0.0, f64::max);
        for a in 0..3 {
            for b in a + 1..3 {
                let gap = ((cents[a][0] - cents[b][0]).powi(2)
                    + (cents[a][1] - cents[b][1]).powi(2))
                .sqrt();
                assert!(
                    gap > 2.0 * spread,
                    "{init:?}: clusters {a},{b}: gap {gap} vs spread {spread}"
                );
            }
        }
    }
}

fn bits(e: &Embedding) -> Vec<[u32; 2]> {
    e.points
        .iter()
        .map(|p| [p[0].to_bits(), p[1].to_bits()])
        .collect()
}

#[test]
fn same_seed_is_bit_identical_other_seed_differs() {
    let (rows, _) = blobs(2);
    let p = UmapParams::default();
    let a = embed_rows(&rows, 3 * PER, D, &p).unwrap();
    let b = embed_rows(&rows, 3 * PER, D, &p).unwrap();
    assert_eq!(bits(&a), bits(&b));
    let c = embed_rows(&rows, 3 * PER, D, &UmapParams { seed: 50, ..p }).unwrap();
    let moved = a
        .points
        .iter()
        .zip(&c.points)
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        moved > 3 * PER / 2,
        "only {moved} points moved with another seed"
    );
}

#[test]
fn trustworthiness_high_for_umap_low_for_random() {
    let (rows, _) = blobs(3);
    let n = 3 * PER;
    let e = embed_rows(&rows, n, D, &UmapParams::default()).unwrap();
    let ours = trustworthiness(&rows, n, D, &e, 10).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(9);
    let random = Embedding {
        points: (0..n)
            .map(|_| [r.random::<f32>(), r.random::<f32>()])
            .collect(),
    };
    let rand_t = trustworthiness(&rows, n, D, &random, 10).unwrap();
    assert!(ours >= 0.9, "ours {ours}");
    assert!(rand_t < ours - 0.2, "random {rand_t} vs ours {ours}");
    // Both agree with the brute-force definition.
    assert!((ours - brute_trust(&rows, n, D, &e, 10)).abs() < 1e-12);
    assert!((rand_t - brute_trust(&rows, n, D, &random, 10)).abs() < 1e-12);
}

/// scikit-learn's definition written out directly: full argsort of f64
/// cosine distances, ranks looked up per embedded neighbour.
fn brute_trust(rows: &[f32], n: usize, d: usize, e: &Embedding, k: usize) -> f64 {
    let row = |i: usize| &rows[i * d..(i + 1) * d];
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let cosd = |i: usize, j: usize| {
        let dot: f64 = row(i)
            .iter()
            .zip(row(j))
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        1.0 - dot / (norm(row(i)) * norm(row(j)))
    };
    let mut t = 0.0;
    for i in 0..n {
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| cosd(i, a).total_cmp(&cosd(i, b)).then(a.cmp(&b)));
        let mut emb: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        let ed = |j: usize| {
            let (p, q) = (e.points[i], e.points[j]);
            (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)
        };
        emb.sort_by(|&a, &b| ed(a).total_cmp(&ed(b)).then(a.cmp(&b)));
        for &j in &emb[..k] {
            let rank = order.iter().position(|&x| x == j).unwrap() + 1;
            t += (rank as f64 - k as f64).max(0.0);
        }
    }
    let (nf, kf) = (n as f64, k as f64);
    1.0 - t * 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0))
}

#[test]
fn trustworthiness_hand_cases() {
    // Points on a half circle embedded on a line by angle: cosine distance
    // is monotone in angle difference, so every neighbourhood is kept.
    // Uneven spacing so that no two distances tie.
    let n = 12;
    let angles: Vec<f64> = (0..n)
        .map(|i| 0.15 * i as f64 + 0.01 * (i * i) as f64)
        .collect();
    let rows: Vec<f32> = angles
        .iter()
        .flat_map(|a| [a.cos() as f32, a.sin() as f32])
        .collect();
    let line = Embedding {
        points: angles.iter().map(|&a| [a as f32, 0.0]).collect(),
    };
    assert_eq!(trustworthiness(&rows, n, 2, &line, 3).unwrap(), 1.0);
    // Swapping the ends of the line pulls far points into neighbourhoods;
    // checked against the definition written out.
    let mut swapped = line.clone();
    swapped.points.swap(0, 11);
    let t = trustworthiness(&rows, n, 2, &swapped, 3).unwrap();
    let b = brute_trust(&rows, n, 2, &swapped, 3);
    assert!((t - b).abs() < 1e-12 && t < 0.8, "{t} vs {b}");
}

#[test]
fn knn_lists_self_first() {
    let (rows, _) = blobs(4);
    let knn = cosine_knn(&rows, 3 * PER, D, 15).unwrap();
    assert_eq!((knn.n, knn.k), (3 * PER, 15));
    for i in 0..knn.n {
        let (ix, ds) = (
            &knn.indices[i * 15..(i + 1) * 15],
            &knn.dists[i * 15..(i + 1) * 15],
        );
        assert_eq!((ix[0] as usize, ds[0]), (i, 0.0));
        assert!(ix[1..].iter().all(|&j| j as usize != i));
        assert!(ds.windows(2).all(|w| w[0] <= w[1]));
        // Blob neighbours are in the same blob.
        assert!(ix.iter().all(|&j| j as usize / PER == i / PER));
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (mut rows, _) = blobs(5);
    let n = 3 * PER;
    let p = UmapParams::default();
    assert!(matches!(
        embed_rows(&rows[..10 * D], 10, D, &p),
        Err(UmapError::TooFewRows {
            n: 10,
            n_neighbors: 15
        })
    ));
    assert!(matches!(
        embed_rows(
            &rows,
            n,
            D,
            &UmapParams {
                n_neighbors: 1,
                ..p.clone()
            }
        ),
        Err(UmapError::NeighborsTooSmall(1))
    ));
    assert!(matches!(
        embed_rows(
            &rows,
            n,
            D,
            &UmapParams {
                min_dist: f32::NAN,
                ..p.clone()
            }
        ),
        Err(UmapError::MinDist(_))
    ));
    assert!(matches!(
        embed_rows(&rows, n, D + 1, &p),
        Err(UmapError::Shape { .. })
    ));
    assert!(matches!(
        embed_rows(&[], 0, 0, &p),
        Err(UmapError::TooFewRows { .. })
    ));
    let e = Embedding {
        points: vec![[0.0, 0.0]; n],
    };
    assert!(matches!(
        trustworthiness(&rows, n, D, &e, 150),
        Err(UmapError::TrustK { .. })
    ));
    assert!(matches!(
        trustworthiness(&rows, n, D, &Embedding { points: vec![] }, 5),
        Err(UmapError::EmbeddingSize { .. })
    ));
    rows[7 * D..8 * D].iter_mut().for_each(|v| *v = 0.0);
    let err = embed_rows(&rows, n, D, &p).unwrap_err();
    assert!(matches!(err, UmapError::ZeroRow { row: 7, .. }), "{err}");
    assert!(err.to_string().contains("row 7"));
    rows[42 * D + 3] = f32::NAN;
    let err = embed_rows(&rows, n, D, &p).unwrap_err();
    // Non-finite values are found before zero rows.
    assert!(
        matches!(
            err,
            UmapError::NonFinite {
                row: 42,
                col: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = trustworthiness(&rows, n, D, &e, 5).unwrap_err();
    assert!(
        matches!(
            err,
            UmapError::NonFinite {
                row: 42,
                col: 3,
                ..
            }
        ),
        "{err}"
    );
}
