//! Activation statistics against brute-force computations on a small dense
//! array (N 7 rows × T 5 positions × n 11 features) with a never-firing
//! feature (0), a feature that fires once (1), one that fires at position 0
//! only (2) and one that fires everywhere (10). Decile expectations were
//! computed with numpy (`np.percentile(vals, [10, ..., 100])`, default
//! linear method) from the same formula (script in the comment of
//! `EXPECT_ALL`).

use saelab_analysis::stats::{
    moving_average, quantile_linear_sorted, ActivationStats, DecileConfig, DecileMode, StatsConfig,
    StatsError,
};
use saelab_sae::SparseCodes;

const N: usize = 7;
const T: usize = 5;
const NF: usize = 11;

/// Z[r][t][i], row-major.
fn dense() -> Vec<f32> {
    let mut z = vec![0f32; N * T * NF];
    for r in 0..N {
        for t in 0..T {
            for i in 0..NF {
                let v = match i {
                    0 => 0.0,
                    1 => {
                        if r == 3 && t == 2 {
                            2.5
                        } else {
                            0.0
                        }
                    }
                    2 => {
                        if t == 0 {
                            5.0 + r as f32
                        } else {
                            0.0
                        }
                    }
                    10 => (t as f32 + 1.0) * 0.5 + r as f32 * 0.01,
                    _ => {
                        if (r * 31 + t * 17 + i * 13) % 5 < 2 {
                            0.1 + ((r * 7 + t * 11 + i * 3) % 19) as f32 * 0.37
                        } else {
                            0.0
                        }
                    }
                };
                z[(r * T + t) * NF + i] = v;
            }
        }
    }
    z
}

/// CSR codes of rows `r0..r1` of the dense array; feature 4's zeros are
/// stored explicitly (an explicit zero must not count as firing).
fn codes(z: &[f32], r0: usize, r1: usize) -> SparseCodes {
    let mut rows = vec![];
    for tok in r0 * T..r1 * T {
        let (mut ix, mut vs) = (vec![], vec![]);
        for i in 0..NF {
            let v = z[tok * NF + i];
            if v != 0.0 || i == 4 {
                ix.push(i as u32);
                vs.push(v);
            }
        }
        rows.push((ix, vs));
    }
    SparseCodes::from_rows(NF, rows)
}

fn run(cfg: StatsConfig) -> saelab_analysis::stats::StatsReport {
    let z = dense();
    let mut s = ActivationStats::new(NF, T, cfg).unwrap();
    // Uneven batches of whole rows.
    for (a, b) in [(0, 2), (2, 3), (3, 7)] {
        s.push(&codes(&z, a, b)).unwrap();
    }
    assert_eq!(s.rows(), N as u64);
    s.finish()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Two-pass mean and population std.
fn two_pass(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

fn at(z: &[f32], r: usize, t: usize, i: usize) -> f64 {
    z[(r * T + t) * NF + i] as f64
}

#[test]
fn positions_match_brute_force() {
    let z = dense();
    let rep = run(StatsConfig {
        ma_window: 3,
        ..Default::default()
    });
    let p = &rep.summary.positions;
    let mut all = vec![];
    let mut excl = vec![];
    for t in 0..T {
        let v: Vec<f64> = (0..N)
            .flat_map(|r| (0..NF).map(move |i| (r, i)))
            .map(|(r, i)| at(&z, r, t, i))
            .filter(|&v| v != 0.0)
            .collect();
        let (m, sd) = two_pass(&v);
        assert_eq!(p.count[t], v.len() as u64, "count at {t}");
        assert!(close(p.mean[t], m, 1e-12), "mean at {t}");
        assert!(close(p.std[t], sd, 1e-9), "std at {t}");
        assert!(close(p.density[t], v.len() as f64 / (N * NF) as f64, 1e-15));
        all.extend_from_slice(&v);
        if t > 0 {
            excl.extend_from_slice(&v);
        }
    }
    let (m, sd) = two_pass(&all);
    assert_eq!(p.all.count, all.len() as u64);
    assert!(close(p.all.mean, m, 1e-12) && close(p.all.std, sd, 1e-9));
    assert!(close(
        p.all.density,
        all.len() as f64 / (N * T * NF) as f64,
        1e-15
    ));
    let (m, sd) = two_pass(&excl);
    assert_eq!(p.excl_pos0.count, excl.len() as u64);
    assert!(close(p.excl_pos0.mean, m, 1e-12) && close(p.excl_pos0.std, sd, 1e-9));
    assert!(close(
        p.excl_pos0.density,
        excl.len() as f64 / (N * (T - 1) * NF) as f64,
        1e-15
    ));
    // Position 0 carries feature 2's large values: the with/without curves
    // must differ there.
    assert!(p.mean[0] > p.excl_pos0.mean);
    // Moving average (window 3, shrinking at the edges), brute force.
    for t in 0..T {
        let lo = t.saturating_sub(1);
        let hi = (t + 1).min(T - 1);
        let want = p.mean[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64;
        assert!(close(p.mean_ma[t], want, 1e-12));
    }
    assert_eq!(p.mean_ma_excl0, moving_average(&p.mean[1..], 3));
    assert!(close(
        p.mean_ma_excl0[0],
        (p.mean[1] + p.mean[2]) / 2.0,
        1e-12
    ));
}

#[test]
fn features_match_brute_force() {
    let z = dense();
    let rep = run(StatsConfig::default());
    let f = &rep.features;
    let tokens = (N * (T - 1)) as f64;
    for i in 0..NF {
        let allv: Vec<f64> = (0..N)
            .flat_map(|r| (1..T).map(move |t| (r, t)))
            .map(|(r, t)| at(&z, r, t, i))
            .collect();
        let nz: Vec<f64> = allv.iter().copied().filter(|&v| v != 0.0).collect();
        let (m, sd) = two_pass(&nz);
        let (ma, sa) = two_pass(&allv);
        assert_eq!(f.count[i], nz.len() as u64, "count {i}");
        assert!(close(f.mean[i], m, 1e-12), "mean {i}");
        assert!(close(f.std[i], sd, 1e-9), "std {i}");
        assert!(close(f.density[i], nz.len() as f64 / tokens, 1e-15));
        assert!(close(f.mean_all[i], ma, 1e-12), "mean_all {i}");
        assert!(close(f.std_all[i], sa, 1e-9), "std_all {i}");
        let c0 = (0..N).filter(|&r| at(&z, r, 0, i) != 0.0).count();
        assert_eq!(f.count_pos0[i], c0 as u64);
    }
    // The special features.
    assert_eq!((f.count[0], f.mean[0], f.std[0]), (0, 0.0, 0.0));
    assert_eq!((f.count[1], f.mean[1], f.std[1]), (1, 2.5, 0.0));
    assert_eq!((f.count[2], f.count_pos0[2]), (0, N as u64));
    assert_eq!(f.count[10], (N * (T - 1)) as u64);
    let s = &rep.summary.features;
    assert_eq!(s.never_fired, 1); // feature 0
    assert_eq!(s.never_fired_excl0, 2); // features 0 and 2
    assert_eq!(s.fired_excl0, (NF - 2) as u64);
    assert_eq!(
        rep.summary.nonzeros,
        dense().iter().filter(|&&v| v != 0.0).count() as u64
    );
}

// Computed by numpy 2.4 from the same formula:
//   z as in `dense()` (float32); for each feature i,
//   np.percentile(z[:, :, i][z != 0].astype(float64), [10, 20, ..., 100])
//   (all positions) and the same over z[:, 1:, i]; all zeros if empty.
#[rustfmt::skip]
const EXPECT_ALL: [[f64; 10]; 11] = [
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5],
    [5.6, 6.2, 6.8, 7.4, 8.0, 8.6, 9.2, 9.8, 10.4, 11.0],
    [0.8030000120401383, 1.5800000429153442, 1.9130000472068787, 2.7640000343322755, 3.4299999475479126, 4.096000051498413, 4.946999883651733, 5.576000118255616, 6.278999900817872, 6.389999866485596],
    [0.9510000348091125, 1.6540000438690186, 2.28299994468689, 3.1339999198913575, 3.799999952316284, 4.465999984741211, 5.317000198364258, 5.650000095367432, 6.4269998550415055, 6.759999752044678],
    [0.4330000124871731, 1.2100000381469727, 1.543000042438507, 2.39399995803833, 3.059999942779541, 3.725999927520752, 4.576999950408935, 5.205999946594239, 5.90900001525879, 6.019999980926514],
    [0.5810000091791153, 1.284000039100647, 1.9130000472068787, 2.7640000343322755, 3.4299999475479126, 4.096000051498413, 4.946999883651733, 5.28000020980835, 6.0569999694824235, 6.389999866485596],
    [0.9510000348091125, 1.6540000438690186, 2.28299994468689, 3.1339999198913575, 3.799999952316284, 4.465999984741211, 4.650999975204467, 5.650000095367432, 6.4269998550415055, 6.759999752044678],
    [0.21100000068545344, 0.9140000224113465, 1.543000042438507, 2.39399995803833, 3.059999942779541, 3.725999927520752, 4.576999950408935, 4.909999847412109, 5.686999940872194, 6.019999980926514],
    [1.062000036239624, 1.8020000457763672, 2.6160000562667847, 3.2079999446868896, 3.9850000143051147, 4.170000076293945, 5.28000020980835, 5.724000072479249, 6.389999866485596, 6.759999752044678],
    [0.5339999914169311, 0.9120000004768375, 1.0319999694824218, 1.323999977111817, 1.5299999713897705, 1.735999965667724, 2.0279999732971192, 2.147999954223634, 2.525999975204468, 2.559999942779541],
];
#[rustfmt::skip]
const EXPECT_EXCL0: [[f64; 10]; 11] = [
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.4699999988079071, 1.5800000429153442, 1.9500000476837158, 2.690000057220459, 3.059999942779541, 3.799999952316284, 4.170000076293945, 5.28000020980835, 6.389999866485596, 6.389999866485596],
    [1.284000039100647, 2.0240000247955323, 2.541999936103821, 3.207999897003174, 3.799999952316284, 4.392000007629394, 5.31700005531311, 5.650000095367432, 6.648999786376954, 6.759999752044678],
    [1.099000034481287, 1.50600004196167, 2.0979999661445614, 2.5420000076293947, 3.059999942779541, 3.5779998779296873, 4.132999920845031, 5.131999874114991, 6.019999980926514, 6.019999980926514],
    [0.9140000343322755, 1.6540000438690186, 2.1720000505447388, 2.838000011444092, 3.4299999475479126, 4.022000026702881, 4.947000169754028, 5.28000020980835, 6.278999900817872, 6.389999866485596],
    [1.2100000381469727, 1.9500000476837158, 2.319999933242798, 3.059999942779541, 3.429999828338623, 4.539999961853027, 4.539999961853027, 5.650000095367432, 5.650000095367432, 6.759999752044678],
    [0.4699999988079071, 1.2100000381469727, 1.5800000429153442, 2.319999933242798, 2.690000057220459, 3.799999952316284, 4.909999847412109, 4.909999847412109, 6.019999980926514, 6.019999980926514],
    [0.9140000343322755, 1.6540000438690186, 2.1720000505447388, 2.838000011444092, 3.615000009536743, 4.170000076293945, 4.947000169754028, 5.28000020980835, 6.278999900817872, 6.759999752044678],
    [1.0269999742507934, 1.053999948501587, 1.5109999895095825, 1.537999963760376, 1.7799999713897705, 2.021999979019165, 2.0489999532699583, 2.5059999942779543, 2.5329999685287476, 2.559999942779541],
];

#[test]
fn deciles_match_numpy() {
    let rep = run(StatsConfig::default());
    let d = &rep.deciles;
    assert_eq!(d.info.mode, DecileMode::Exact);
    assert_eq!(d.info.exact_bytes, 4 * rep.summary.nonzeros);
    for i in 0..NF {
        for k in 0..10 {
            assert!(
                close(d.all[i][k], EXPECT_ALL[i][k], 1e-6),
                "all: feature {i} q{} = {} want {}",
                (k + 1) * 10,
                d.all[i][k],
                EXPECT_ALL[i][k]
            );
            assert!(
                close(d.excl_pos0[i][k], EXPECT_EXCL0[i][k], 1e-6),
                "excl0: feature {i} q{} = {} want {}",
                (k + 1) * 10,
                d.excl_pos0[i][k],
                EXPECT_EXCL0[i][k]
            );
        }
    }
    // Hand checks: never fires -> zeros; fires once -> that value; position
    // 0 only -> zeros without position 0, 5..11 with it (q10 = 5 + 0.6).
    assert_eq!(d.all[0], [0.0; 10]);
    assert_eq!(d.all[1], [2.5; 10]);
    assert_eq!(d.excl_pos0[2], [0.0; 10]);
    assert!(close(d.all[2][0], 5.6, 1e-12) && d.all[2][9] == 11.0);
    assert_eq!((d.count_all[2], d.count_excl0[2]), (N as u64, 0));
    assert!(d.sampled_all.iter().chain(&d.sampled_excl0).all(|s| !s));
}

#[test]
fn sweep_matches_brute_force() {
    let rep = run(StatsConfig {
        sweep_steps: 9,
        sweep_max: Some(8.0),
        ..Default::default()
    });
    let w = &rep.summary.sweep;
    assert_eq!(w.thresholds, (0..9).map(|j| j as f64).collect::<Vec<_>>());
    let fired: Vec<usize> = (0..NF).filter(|&i| rep.features.count[i] > 0).collect();
    assert_eq!(w.features, fired.len() as u64);
    for (j, &t) in w.thresholds.iter().enumerate() {
        let med = fired.iter().filter(|&&i| EXPECT_EXCL0[i][4] < t).count();
        let mean = fired.iter().filter(|&&i| rep.features.mean[i] < t).count();
        assert_eq!(w.below_median[j], med as u64, "t = {t}");
        assert_eq!(w.below_mean[j], mean as u64, "t = {t}");
    }
    assert_eq!(w.below_median[0], 0);
    assert_eq!(*w.below_median.last().unwrap(), fired.len() as u64);
}

#[test]
fn files_are_written() {
    let rep = run(StatsConfig::default());
    let dir = tempfile::tempdir().unwrap();
    rep.write_all(dir.path()).unwrap();
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats.json")).unwrap())
            .unwrap();
    assert_eq!(js["schema"], "saelab.stats.v1");
    assert_eq!(js["rows"], N as u64);
    assert_eq!(js["deciles"]["mode"], "exact");
    assert_eq!(js["positions"]["count"].as_array().unwrap().len(), T);
    let lines = |f: &str| {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines("positions.csv"), T + 1);
    assert_eq!(lines("features.csv"), NF + 1);
    assert_eq!(lines("deciles.csv"), NF + 1);
    assert_eq!(lines("sweep.csv"), 101 + 1);
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn bad_input_is_rejected() {
    let z = dense();
    let mut s = ActivationStats::new(NF, T, StatsConfig::default()).unwrap();
    // 2 rows of T = 5 tokens plus one stray token.
    let mut c = codes(&z, 0, 2);
    c.rows -= 1;
    c.indptr.pop();
    let last = *c.indptr.last().unwrap();
    c.idx.truncate(last);
    c.val.truncate(last);
    assert!(matches!(s.push(&c), Err(StatsError::Shape(_))));
    let mut wrong_n = codes(&z, 0, 1);
    wrong_n.n = NF + 1;
    assert!(matches!(s.push(&wrong_n), Err(StatsError::Shape(_))));
    let mut bad_idx = codes(&z, 0, 1);
    bad_idx.idx[0] = NF as u32;
    assert!(matches!(s.push(&bad_idx), Err(StatsError::Shape(_))));
    assert!(ActivationStats::new(0, T, StatsConfig::default()).is_err());
    assert_eq!(s.rows(), 0);
}

/// A deterministic xorshift stream for the large case (independent of the
/// crate's ChaCha reservoir RNG).
struct XorShift(u64);
impl XorShift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn reservoir_mode_meets_its_bound() {
    // 4 features × ~100k values with different shapes; feature 4 is rare
    // (stays exact). Budget 32 kB, so the switch happens after batch 1.
    const NF: usize = 5;
    const T: usize = 4;
    const ROWS: usize = 25_000;
    let m = 3000;
    let delta = 1e-3;
    let cfg = StatsConfig {
        deciles: DecileConfig {
            memory_budget_bytes: 32 << 10,
            reservoir_size: Some(m),
            seed: 5,
            delta,
        },
        ..Default::default()
    };
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut pop_all: Vec<Vec<f32>> = vec![vec![]; NF];
    let mut pop_excl: Vec<Vec<f32>> = vec![vec![]; NF];
    let mut s = ActivationStats::new(NF, T, cfg.clone()).unwrap();
    let mut s2 = ActivationStats::new(NF, T, cfg).unwrap();
    for batch in 0..(ROWS / 1000) {
        let mut rows = vec![];
        for r in 0..1000 {
            for t in 0..T {
                let u = rng.next_f64();
                let mut vals = [
                    // Uniform, drifting with time: a sample that is not
                    // uniform over the stream shows up as a rank error.
                    (1.0 + u * 3.0 + batch as f64) as f32,
                    (-(1.0 - rng.next_f64()).ln()) as f32 + 0.01, // exponential
                    (1.0 / (1.0 - rng.next_f64()).powf(0.5)) as f32, // Pareto
                    if t == 0 {
                        50.0
                    } else {
                        rng.next_f64() as f32 + 0.5
                    },
                    0.0,
                ];
                if (batch * 1000 + r) % 997 == 0 {
                    vals[4] = 7.0 + t as f32;
                }
                let (mut ix, mut vs) = (vec![], vec![]);
                for (i, &v) in vals.iter().enumerate() {
                    if v != 0.0 {
                        ix.push(i as u32);
                        vs.push(v);
                        pop_all[i].push(v);
                        if t > 0 {
                            pop_excl[i].push(v);
                        }
                    }
                }
                rows.push((ix, vs));
            }
        }
        let c = SparseCodes::from_rows(NF, rows);
        s.push(&c).unwrap();
        s2.push(&c).unwrap();
        assert_eq!(s.decile_mode(), DecileMode::Reservoir);
    }
    // Reservoir storage is bounded: 2 reservoirs × 5 features × m floats.
    assert!(s.memory_bytes() <= (8 * NF * m) as u64 + 24 * (T + 2 * NF) as u64 + 4096);
    let rep = s.finish();
    let d = &rep.deciles;
    assert_eq!(d.info.mode, DecileMode::Reservoir);
    assert_eq!(d.info.reservoir_size, Some(m));
    let eps = ((2.0f64 / delta).ln() / (2.0 * m as f64)).sqrt();
    let bound = eps + 1.0 / m as f64;
    assert!(close(d.info.rank_error_bound.unwrap(), bound, 1e-12));
    // Same seed, same batches: identical result.
    assert_eq!(s2.finish().deciles, rep.deciles);
    let check = |pop: &mut Vec<f32>, got: &[f64; 10], sampled: bool, what: &str| {
        pop.sort_by(f32::total_cmp);
        let len = pop.len() as f64;
        for (k, &v) in got.iter().enumerate() {
            let q = (k + 1) as f64 / 10.0;
            if !sampled {
                let want = quantile_linear_sorted(pop, q);
                assert!(close(v, want, 1e-9), "{what} exact q{q}: {v} vs {want}");
                continue;
            }
            // Population rank interval of v: [F(v−), F(v)].
            let below = pop.partition_point(|&x| (x as f64) < v) as f64 / len;
            let upto = pop.partition_point(|&x| (x as f64) <= v) as f64 / len;
            assert!(
                upto >= q - bound && below <= q + bound,
                "{what} q{q}: value {v} has rank [{below}, {upto}], bound {bound}"
            );
        }
    };
    for i in 0..NF {
        check(
            &mut pop_all[i],
            &d.all[i],
            d.sampled_all[i],
            &format!("f{i} all"),
        );
        check(
            &mut pop_excl[i],
            &d.excl_pos0[i],
            d.sampled_excl0[i],
            &format!("f{i} excl0"),
        );
    }
    // Features 0..4 have 100k values (sampled); feature 4 has ~100 (exact).
    assert_eq!(d.sampled_all, vec![true, true, true, true, false]);
    assert_eq!(d.count_all[0], (ROWS * T) as u64);
    assert_eq!(d.count_excl0[3], (ROWS * (T - 1)) as u64);
    // Feature 3: 25 % of its values are 50 at position 0: the with-pos-0
    // q80+ are 50, without they are ≤ 1.5.
    assert_eq!(d.all[3][9], 50.0);
    assert!(d.excl_pos0[3][9] <= 1.5);
}
