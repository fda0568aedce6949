//! Evaluation metrics against direct (two-pass, brute-force) computations.

use saelab_analysis::eval::{
    ce_recovered, kl_rows, CeAccumulator, EvalError, EvalReport, ReconAccumulator, ReconConfig,
};
use saelab_sae::SparseCodes;

struct XorShift(u64);
impl XorShift {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 - 1.0
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

const D: usize = 6;
const NF: usize = 9;
const T: usize = 4;
const ROWS: usize = 5;

/// Inputs with a large common offset on dimension 0 (where the naive
/// Σ‖x‖² − N‖x̄‖² cancels badly in f32) and a BOS-like outlier at position 0,
/// reconstructions = x + noise, and codes where feature 8 never fires and
/// feature 7 fires once.
fn data() -> (Vec<f32>, Vec<f32>, SparseCodes) {
    let mut r = XorShift(0x1234_5678_9ABC_DEF1);
    let tokens = ROWS * T;
    let mut x = vec![0f32; tokens * D];
    let mut xh = vec![0f32; tokens * D];
    let mut rows = vec![];
    for tok in 0..tokens {
        for j in 0..D {
            let mut v = r.f();
            if j == 0 {
                v += 1e4;
            }
            if tok % T == 0 {
                v *= 3.0;
            }
            x[tok * D + j] = v;
            xh[tok * D + j] = v + 0.1 * r.f();
        }
        if tok == 3 {
            // An all-zero input (excluded from the normalized MSE).
            x[tok * D..(tok + 1) * D].fill(0.0);
        }
        let (mut ix, mut vs) = (vec![], vec![]);
        for i in 0..7 {
            if (tok * 5 + i * 3) % 4 == 0 {
                ix.push(i as u32);
                vs.push(1.0 + i as f32);
            }
        }
        if tok == 6 {
            ix.push(7);
            vs.push(0.5);
        }
        // An explicit zero entry does not count as firing.
        ix.push(8);
        vs.push(0.0);
        rows.push((ix, vs));
    }
    (x, xh, SparseCodes::from_rows(NF, rows))
}

fn slice_codes(c: &SparseCodes, a: usize, b: usize) -> SparseCodes {
    let rows = (a..b)
        .map(|r| {
            let (s, e) = (c.indptr[r], c.indptr[r + 1]);
            (c.idx[s..e].to_vec(), c.val[s..e].to_vec())
        })
        .collect();
    SparseCodes::from_rows(c.n, rows)
}

/// Two-pass reference over the tokens selected by `keep`.
struct Brute {
    tokens: usize,
    mse: f64,
    nmse: f64,
    fvu: f64,
    l0: f64,
    fires: Vec<u64>,
}

fn brute(x: &[f32], xh: &[f32], c: &SparseCodes, keep: impl Fn(usize) -> bool) -> Brute {
    let toks: Vec<usize> = (0..x.len() / D).filter(|&t| keep(t)).collect();
    let nt = toks.len() as f64;
    let mut mean = [0f64; D];
    for &t in &toks {
        for j in 0..D {
            mean[j] += x[t * D + j] as f64 / nt;
        }
    }
    let (mut sse, mut var, mut nmse, mut nn, mut l0) = (0.0, 0.0, 0.0, 0usize, 0usize);
    let mut fires = vec![0u64; NF];
    for &t in &toks {
        let (mut e, mut n2) = (0.0f64, 0.0f64);
        for j in 0..D {
            let (a, h) = (x[t * D + j] as f64, xh[t * D + j] as f64);
            e += (a - h) * (a - h);
            n2 += a * a;
            var += (a - mean[j]) * (a - mean[j]);
        }
        sse += e;
        if n2 > 0.0 {
            nmse += e / n2;
            nn += 1;
        }
        for k in c.indptr[t]..c.indptr[t + 1] {
            if c.val[k] != 0.0 {
                l0 += 1;
                fires[c.idx[k] as usize] += 1;
            }
        }
    }
    Brute {
        tokens: toks.len(),
        mse: sse / (nt * D as f64),
        nmse: nmse / nn as f64,
        fvu: sse / var,
        l0: l0 as f64 / nt,
        fires,
    }
}

fn accumulate(cfg: ReconConfig) -> saelab_analysis::eval::ReconReport {
    let (x, xh, c) = data();
    let mut acc = ReconAccumulator::new(D, NF, cfg).unwrap();
    // Uneven batches of whole rows: 1, 3, 1.
    for (a, b) in [(0, 1), (1, 4), (4, 5)] {
        let (ta, tb) = (a * T, b * T);
        acc.push(
            &x[ta * D..tb * D],
            &xh[ta * D..tb * D],
            &slice_codes(&c, ta, tb),
        )
        .unwrap();
    }
    acc.finish()
}

#[test]
fn streaming_recon_equals_two_pass() {
    let (x, xh, c) = data();
    for skip in [false, true] {
        let rep = accumulate(ReconConfig {
            seq_len: Some(T),
            skip_position0: skip,
        });
        let b = brute(&x, &xh, &c, |t| !(skip && t % T == 0));
        assert_eq!(rep.tokens, b.tokens as u64);
        assert!(close(rep.mse, b.mse, 1e-12), "mse {} {}", rep.mse, b.mse);
        assert!(close(rep.nmse.unwrap(), b.nmse, 1e-12));
        assert_eq!(rep.zero_norm_tokens, 1);
        // The FVU denominator streams exactly despite the 1e4 offset.
        assert!(
            close(rep.fvu.unwrap(), b.fvu, 1e-9),
            "fvu {} two-pass {}",
            rep.fvu.unwrap(),
            b.fvu
        );
        assert!(close(rep.explained_variance.unwrap(), 1.0 - b.fvu, 1e-9));
        assert!(close(rep.l0, b.l0, 1e-12));
        assert_eq!(rep.fire_count, b.fires);
        let dead = b.fires.iter().filter(|&&f| f == 0).count();
        assert_eq!(rep.dead_count, dead as u64);
        assert!(close(rep.dead_fraction, dead as f64 / NF as f64, 1e-15));
        for i in 0..NF {
            assert!(close(
                rep.density[i],
                b.fires[i] as f64 / b.tokens as f64,
                1e-15
            ));
        }
        // Per-position curves: always all positions.
        let pp = rep.per_position.as_ref().unwrap();
        for t in 0..T {
            let bt = brute(&x, &xh, &c, |k| k % T == t);
            assert_eq!(pp.tokens[t], ROWS as u64);
            assert!(close(pp.mse[t], bt.mse, 1e-12));
            assert!(close(pp.nmse[t].unwrap(), bt.nmse, 1e-12));
            assert!(close(pp.l0[t], bt.l0, 1e-12));
        }
    }
    // Feature 8 (explicit zeros only) is dead; feature 7 fires once.
    let rep = accumulate(ReconConfig::default());
    assert_eq!(rep.fire_count[8], 0);
    assert_eq!(rep.fire_count[7], 1);
    assert!(rep.per_position.is_none());
}

#[test]
fn perfect_reconstruction_and_errors() {
    let (x, _, c) = data();
    let mut acc = ReconAccumulator::new(D, NF, ReconConfig::default()).unwrap();
    acc.push(&x, &x, &c).unwrap();
    let r = acc.finish();
    assert_eq!(
        (r.mse, r.fvu, r.explained_variance),
        (0.0, Some(0.0), Some(1.0))
    );
    assert!(matches!(
        acc.push(&x, &x[..x.len() - D], &c),
        Err(EvalError::Shape(_))
    ));
    assert!(matches!(
        acc.push(&x[..D * 3], &x[..D * 3], &c),
        Err(EvalError::Shape(_))
    ));
    let mut bad = x.clone();
    bad[2] = f32::NAN;
    assert!(acc.push(&bad, &x, &c).is_err());
    let mut seq = ReconAccumulator::new(
        D,
        NF,
        ReconConfig {
            seq_len: Some(T),
            skip_position0: false,
        },
    )
    .unwrap();
    // 3 tokens are not whole rows of T = 4.
    assert!(seq
        .push(&x[..3 * D], &x[..3 * D], &slice_codes(&c, 0, 3))
        .is_err());
    assert!(ReconAccumulator::new(
        D,
        NF,
        ReconConfig {
            seq_len: None,
            skip_position0: true
        }
    )
    .is_err());
}

#[test]
fn ce_recovered_known_example() {
    // T = 3: two CE positions per row, two rows.
    let clean = [1.0f32, 2.0, 1.0, 2.0];
    let spliced = [1.5f32, 2.5, 1.5, 2.5];
    let zero = [3.0f32, 4.0, 4.0, 2.0];
    let mut acc = CeAccumulator::new(3).unwrap();
    acc.push_ce(&clean[..2], &spliced[..2], Some(&zero[..2]))
        .unwrap();
    acc.push_ce(&clean[2..], &spliced[2..], Some(&zero[2..]))
        .unwrap();
    let r = acc.finish();
    assert_eq!((r.rows, r.tokens), (2, 4));
    assert_eq!(
        (r.ce_clean, r.ce_spliced, r.ce_zero),
        (1.5, 2.0, Some(3.25))
    );
    assert_eq!(r.delta_ce, 0.5);
    // (3.25 − 2.0) / (3.25 − 1.5) = 1.25 / 1.75.
    assert!(close(r.ce_recovered.unwrap(), 1.25 / 1.75, 1e-15));
    let p = &r.per_position;
    assert_eq!(p.ce_clean, vec![1.0, 2.0]);
    assert_eq!(p.delta_ce, vec![0.5, 0.5]);
    assert_eq!(p.ce_zero.as_deref(), Some(&[3.5, 3.0][..]));
    let rec = p.ce_recovered.as_ref().unwrap();
    assert!(close(rec[0].unwrap(), 2.0 / 2.5, 1e-15));
    assert!(close(rec[1].unwrap(), 0.5 / 1.0, 1e-15));
    assert!(r.kl.is_none() && p.kl.is_none());
    // Zero ablation that changes nothing: no CE recovered.
    assert_eq!(ce_recovered(2.0, 2.5, 2.0), None);
    assert_eq!(ce_recovered(2.0, 2.5, 2.0 + 1e-12), None);
    assert_eq!(ce_recovered(2.0, 2.0, 3.0), Some(1.0));
    assert_eq!(ce_recovered(2.0, 3.0, 3.0), Some(0.0));
    // Identity splice: ΔCE exactly 0, CE recovered exactly 1.
    let mut id = CeAccumulator::new(3).unwrap();
    id.push_ce(&clean, &clean, Some(&zero)).unwrap();
    let r = id.finish();
    assert_eq!((r.delta_ce, r.ce_recovered), (0.0, Some(1.0)));
    // Bad shapes / mixing batches with and without the zero pass.
    assert!(id.push_ce(&clean[..3], &clean[..3], None).is_err());
    assert!(id.push_ce(&clean, &clean, None).is_err());
    assert!(CeAccumulator::new(1).is_err());
}

/// Direct KL from explicitly normalized probabilities (no log-sum-exp).
fn kl_direct(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().map(|v| v.exp()).sum();
    let sq: f64 = q.iter().map(|v| v.exp()).sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (pa, qb) = (a.exp() / sp, b.exp() / sq);
            pa * (pa / qb).ln()
        })
        .sum()
}

#[test]
fn kl_is_zero_for_identical_logits_and_matches_direct() {
    let v = 7;
    let mut r = XorShift(42);
    let a: Vec<f32> = (0..3 * v).map(|_| 4.0 * r.f()).collect();
    let b: Vec<f32> = (0..3 * v).map(|_| 4.0 * r.f()).collect();
    assert!(kl_rows(&a, &a, v).iter().all(|&k| k == 0.0));
    let kl = kl_rows(&a, &b, v);
    for row in 0..3 {
        let p: Vec<f64> = a[row * v..(row + 1) * v]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let q: Vec<f64> = b[row * v..(row + 1) * v]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let want = kl_direct(&p, &q);
        assert!(want > 0.01);
        assert!(close(kl[row] as f64, want, 1e-6), "{} vs {want}", kl[row]);
    }
    // Two-point case with a +1000 shift (exp overflows without the shift):
    // P = (½, ½), Q = (¾, ¼): KL = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3).
    let p = [1000.0f32, 1000.0];
    let q = [1000.0 + 3f32.ln(), 1000.0];
    let k = kl_rows(&p, &q, 2)[0] as f64;
    // f32 spacing at 1000 is 6e-5, so use the logit gap actually stored.
    let gap = (q[0] - q[1]) as f64;
    assert!((gap - 3f64.ln()).abs() < 1e-4);
    let q0 = gap.exp() / (1.0 + gap.exp());
    let want = 0.5 * (0.5 / q0).ln() + 0.5 * (0.5 / (1.0 - q0)).ln();
    assert!(close(k, want, 1e-6), "{k} vs {want}");
    assert!((k - 0.5 * (4.0f64 / 3.0).ln()).abs() < 1e-4);
    // Through the accumulator (T = 3 rows of vocab 7): per position means.
    let mut acc = CeAccumulator::new(3).unwrap();
    acc.push_kl_logits(&a, &b, v).unwrap();
    let rep = acc.finish();
    let curve = rep.per_position.kl.unwrap();
    for t in 0..3 {
        assert!(close(curve[t], kl[t] as f64, 1e-12));
    }
    let mean = kl.iter().map(|&k| k as f64).sum::<f64>() / 3.0;
    assert!(close(rep.kl.unwrap(), mean, 1e-12));
    assert_eq!(rep.kl_tokens, 3);
    assert!(acc.push_kl_logits(&a[..v], &b[..v], v).is_err());
}

#[test]
fn report_files() {
    let rec = accumulate(ReconConfig {
        seq_len: Some(T),
        skip_position0: true,
    });
    let mut ce = CeAccumulator::new(T).unwrap();
    let c = vec![1.0f32; ROWS * (T - 1)];
    let s = vec![1.25f32; ROWS * (T - 1)];
    let z = vec![3.0f32; ROWS * (T - 1)];
    ce.push_ce(&c, &s, Some(&z)).unwrap();
    ce.push_kl(&[0.5f32; ROWS * T]).unwrap();
    let rep = EvalReport::new("tiny", Some(rec), Some(ce.finish()));
    let dir = tempfile::tempdir().unwrap();
    rep.write_all(dir.path()).unwrap();
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(js["schema"], "saelab.eval.v1");
    assert_eq!(js["ce"]["ce_recovered"], 0.875);
    assert_eq!(js["recon"]["skip_position0"], true);
    assert!(js["recon"].get("density").is_none());
    let pos = std::fs::read_to_string(dir.path().join("positions.csv")).unwrap();
    let lines: Vec<&str> = pos.lines().collect();
    assert_eq!(lines.len(), T + 1);
    assert!(lines[0].starts_with("position,tokens,mse"));
    // Last position: no CE (nothing to predict), KL present.
    assert!(lines[T].ends_with(",,,,,,0.5"), "{}", lines[T]);
    let feats = std::fs::read_to_string(dir.path().join("features.csv")).unwrap();
    assert_eq!(feats.lines().count(), NF + 1);
}
