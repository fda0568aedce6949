//! Exact one-to-one assignment between two vector sets, maximizing the
//! total cosine (rectangular allowed: min(n_A, n_B) pairs), and the
//! statistics built on it: R_H (fraction of matched pairs above τ) and the
//! Paulo & Belrose "shared" fraction.
//!
//! Internally the smaller side is the row side of a minimization LAP with
//! cost −S_ij ([`super::lap`]). Two paths:
//!
//! - **Dense**: the full cosine matrix (rows × cols f32) and
//!   [`dense_sap`]. Used for small problems
//!   ([`AssignmentOptions::dense_max_entries`]) and as the fallback.
//! - **Sparse**: a candidate graph holding, for every row, its top-m
//!   cosines, and for every column, its top-m rows (one blocked pass, see
//!   [`top_n_both`]), solved by [`sparse_sap`]. Optimality for the *full*
//!   dense problem is then proved with the dual: in the maximization form
//!   let a_i = −u_i (row profit) and p_j = −v_j ≥ 0 (column price). The
//!   solver guarantees S_ij ≤ a_i + p_j on candidate edges, with equality on
//!   matched edges, p_j = 0 on unmatched columns. If also S_ij ≤ a_i + p_j
//!   for every non-candidate (i, j), then (a, p) is feasible for the dual
//!   of the full problem (min Σa + Σp s.t. a_i + p_j ≥ S_ij, p ≥ 0) with the
//!   same objective as our matching, which is therefore optimal.
//!
//!   The check is cheap for most rows: a non-candidate (i, j) is neither in
//!   row i's top-m nor (i) in column j's top-m, so S_ij ≤ min(s_i, t_j),
//!   where s_i, t_j are the m-th largest values of row i and column j. Row i
//!   is certified if max_j (min(s_i, t_j) − p_j) ≤ a_i, computed for all
//!   rows in O(log n) each after sorting the columns by t_j. Only rows
//!   failing this bound get their full cosine rows recomputed (blocked
//!   GEMM) and checked exactly. Violating entries are added to the graph
//!   and the problem is re-solved (and m doubled if many rows violate, or
//!   if the candidate graph has no matching covering all rows), up to
//!   [`AssignmentOptions::max_rounds`]; then the dense solver, if the full
//!   matrix fits [`AssignmentOptions::dense_fallback_max_entries`].
//!
//! The certificate is exact for the cosine values as computed in f32 by
//! the GEMM, up to a tolerance of [`CERT_TOL`] per entry, i.e. the total is
//! within rows × 1e-9 of the optimum. (Two GEMM calls may round the same
//! cosine differently by an ulp; that is below the resolution of f32
//! cosines and does not affect the certificate's meaning.)

use super::error::{MatchError, Result};
use super::lap::{dense_sap, sparse_sap_warm, LapSolution, SparseGraph};
use super::topn::{gemm_tile, plan_blocks, top_n_both, TileConfig, TopN};
use super::vectors::{check_comparable, UnitVectors};
use rayon::prelude::*;
use serde::Serialize;

/// Tolerance of the dual certificate per entry (cosine units).
pub const CERT_TOL: f64 = 1e-9;

/// Which solver to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentStrategy {
    /// Dense below [`AssignmentOptions::dense_max_entries`], sparse above.
    Auto,
    /// Always the dense solver (needs the full matrix in memory).
    Dense,
    /// Always the sparse solver with certificate (dense only as fallback).
    Sparse,
}

/// Options of [`assign`].
#[derive(Clone, Debug, PartialEq)]
pub struct AssignmentOptions {
    /// Solver choice.
    pub strategy: AssignmentStrategy,
    /// `Auto` uses the dense solver when rows × cols ≤ this.
    pub dense_max_entries: usize,
    /// Initial number m of candidates per row (and per column).
    pub candidates: usize,
    /// Maximum number of sparse solves before falling back to dense.
    pub max_rounds: usize,
    /// The dense fallback is used only if rows × cols ≤ this (f32 entries;
    /// the default 2^28 is 1 GiB). Above it an uncertified sparse result is
    /// returned, flagged in its [`Certificate`].
    pub dense_fallback_max_entries: usize,
    /// Tiles of the blocked products.
    pub tile: TileConfig,
}

impl AssignmentOptions {
    /// Whether [`assign`] takes the sparse path first for these sizes.
    pub fn uses_sparse(&self, n_a: usize, n_b: usize) -> bool {
        match self.strategy {
            AssignmentStrategy::Dense => false,
            AssignmentStrategy::Sparse => true,
            AssignmentStrategy::Auto => n_a.saturating_mul(n_b) > self.dense_max_entries,
        }
    }
}

impl Default for AssignmentOptions {
    fn default() -> Self {
        AssignmentOptions {
            strategy: AssignmentStrategy::Auto,
            dense_max_entries: 1 << 20,
            candidates: 32,
            max_rounds: 8,
            dense_fallback_max_entries: 1 << 28,
            tile: TileConfig::default(),
        }
    }
}

/// Which path produced an assignment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssignmentPath {
    /// Dense solver on the full matrix.
    Dense {
        /// True when the sparse path was tried first and could not certify.
        fallback: bool,
        /// Sparse solves attempted before the fallback (0 if none).
        sparse_rounds: usize,
    },
    /// Sparse candidate graph with dual certificate.
    Sparse {
        /// Final number of top candidates per row / column.
        m: usize,
        /// Sparse solves run (1 if the first one was certified).
        rounds: usize,
        /// Edges of the final candidate graph.
        edges: usize,
        /// Edges added because the certificate found them violated.
        edges_added: usize,
        /// Rows whose full cosine row was recomputed (summed over rounds).
        rows_checked_exactly: usize,
    },
}

/// Proof of optimality attached to an assignment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Certificate {
    /// True if the dual is feasible for the full problem (within
    /// [`CERT_TOL`] per entry), i.e. the total is optimal.
    pub certified: bool,
    /// |primal − dual| objective (rounding only, ≈ 1e-12, when certified).
    pub dual_gap: f64,
    /// Largest dual violation S_ij − a_i − p_j (cosine units) among the
    /// non-candidate entries of the last check: 0 when certified. For an
    /// uncertified result it shows how far the dual is from feasible on the
    /// entries found; it is not a bound on the distance to the optimum.
    pub max_violation: f64,
}

/// A one-to-one assignment between A (n_a vectors) and B (n_b vectors).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    /// Size of A.
    pub n_a: usize,
    /// Size of B.
    pub n_b: usize,
    /// (index in A, index in B), min(n_a, n_b) of them, sorted by A index.
    pub pairs: Vec<(u32, u32)>,
    /// Cosine of each pair (f32 as computed by the GEMM).
    pub cosines: Vec<f32>,
    /// Σ cosines (f64): the maximized objective.
    pub total: f64,
    /// Which path produced it.
    pub path: AssignmentPath,
    /// Optimality certificate.
    pub certificate: Certificate,
}

impl Assignment {
    /// R_H: fraction of matched pairs with cosine > τ, over min(n_a, n_b)
    /// (0 when empty). R_H ≤ R since a pair's cosine is at most the query's
    /// max cosine.
    pub fn fraction_above(&self, threshold: f32) -> f64 {
        let n = self.n_a.min(self.n_b);
        if n == 0 {
            return 0.0;
        }
        self.cosines.iter().filter(|&&c| c > threshold).count() as f64 / n as f64
    }

    /// Partner in B of every A index (None if unmatched).
    pub fn partner_of_a(&self) -> Vec<Option<u32>> {
        let mut out = vec![None; self.n_a];
        for &(a, b) in &self.pairs {
            out[a as usize] = Some(b);
        }
        out
    }
}

/// Exact maximum-total-cosine assignment between A and B.
pub fn assign(a: &UnitVectors, b: &UnitVectors, opts: &AssignmentOptions) -> Result<Assignment> {
    assign_impl(a, b, opts, None)
}

/// [`assign`] reusing top-n profiles already computed for the same sets
/// (`b_in_a`: every B vector's top references in A; `a_in_b`: the
/// reverse, as [`top_n_both`]`(a, b, ..)` returns them), so the sparse path
/// needs no GEMM pass of its own when their k ≥ the candidate count m.
/// Profiles of the wrong shape or too short are ignored.
pub fn assign_with_profiles(
    a: &UnitVectors,
    b: &UnitVectors,
    opts: &AssignmentOptions,
    b_in_a: &TopN,
    a_in_b: &TopN,
) -> Result<Assignment> {
    assign_impl(a, b, opts, Some((b_in_a, a_in_b)))
}

fn assign_impl(
    a: &UnitVectors,
    b: &UnitVectors,
    opts: &AssignmentOptions,
    profiles: Option<(&TopN, &TopN)>,
) -> Result<Assignment> {
    check_comparable(a, b, "assignment vector sets")?;
    if opts.candidates == 0 {
        return Err(MatchError::InvalidOption(
            "assignment candidates (m) must be at least 1".into(),
        ));
    }
    if a.count > u32::MAX as usize || b.count > u32::MAX as usize {
        return Err(MatchError::InvalidOption(
            "vector sets must have fewer than 2^32 entries".into(),
        ));
    }
    // Rows = the smaller side, so every row is matched.
    let transposed = a.count > b.count;
    let (rows, cols) = if transposed { (b, a) } else { (a, b) };
    let (nr, nc) = (rows.count, cols.count);
    let dense_first = !opts.uses_sparse(nr, nc);
    let solved = if nr == 0 {
        Solved {
            col_of_row: Vec::new(),
            vals: Vec::new(),
            path: AssignmentPath::Dense {
                fallback: false,
                sparse_rounds: 0,
            },
            certificate: Certificate {
                certified: true,
                dual_gap: 0.0,
                max_violation: 0.0,
            },
        }
    } else if dense_first {
        solve_dense(rows, cols, &opts.tile, false, 0)?
    } else {
        // Row lists = the rows' top columns; column lists = the reverse.
        let pre = profiles.and_then(|(b_in_a, a_in_b)| {
            let (rl, cl) = if transposed {
                (b_in_a, a_in_b)
            } else {
                (a_in_b, b_in_a)
            };
            let fits =
                rl.n_queries == nr && rl.n_refs == nc && cl.n_queries == nc && cl.n_refs == nr;
            fits.then_some((rl, cl))
        });
        solve_sparse(rows, cols, opts, pre)?
    };
    let mut pairs: Vec<(u32, u32, f32)> = solved
        .col_of_row
        .iter()
        .zip(&solved.vals)
        .enumerate()
        .map(|(r, (&c, &v))| {
            if transposed {
                (c as u32, r as u32, v)
            } else {
                (r as u32, c as u32, v)
            }
        })
        .collect();
    pairs.sort_unstable_by_key(|p| p.0);
    let total = pairs.iter().map(|p| p.2 as f64).sum();
    Ok(Assignment {
        n_a: a.count,
        n_b: b.count,
        cosines: pairs.iter().map(|p| p.2).collect(),
        pairs: pairs.iter().map(|p| (p.0, p.1)).collect(),
        total,
        path: solved.path,
        certificate: solved.certificate,
    })
}

/// Solver output in row/column orientation.
struct Solved {
    col_of_row: Vec<usize>,
    vals: Vec<f32>,
    path: AssignmentPath,
    certificate: Certificate,
}

/// Full rows × cols cosine matrix, row-major (parallel over row blocks).
fn cosine_matrix(rows: &UnitVectors, cols: &UnitVectors, tile: &TileConfig) -> Vec<f32> {
    let (nr, nc, dim) = (rows.count, cols.count, rows.dim);
    let mut out = vec![0.0f32; nr * nc];
    let (qb, par_blocks) = plan_blocks(nr, tile);
    if nc == 0 {
        return out;
    }
    let work = |(b, chunk): (usize, &mut [f32])| {
        let q0 = b * qb;
        let nq = chunk.len() / nc;
        gemm_tile(
            &rows.data[q0 * dim..(q0 + nq) * dim],
            nq,
            &cols.data,
            nc,
            dim,
            chunk,
            !par_blocks,
        );
    };
    if par_blocks {
        out.par_chunks_mut(qb * nc).enumerate().for_each(work);
    } else {
        out.chunks_mut(qb * nc).enumerate().for_each(work);
    }
    out
}

fn solve_dense(
    rows: &UnitVectors,
    cols: &UnitVectors,
    tile: &TileConfig,
    fallback: bool,
    sparse_rounds: usize,
) -> Result<Solved> {
    let (nr, nc) = (rows.count, cols.count);
    let s = cosine_matrix(rows, cols, tile);
    let sol = dense_sap(nr, nc, |i, j| -(s[i * nc + j] as f64))?;
    let vals: Vec<f32> = sol
        .col_of_row
        .iter()
        .enumerate()
        .map(|(i, &j)| s[i * nc + j])
        .collect();
    let primal: f64 = vals.iter().map(|&v| -(v as f64)).sum();
    Ok(Solved {
        col_of_row: sol.col_of_row.clone(),
        vals,
        path: AssignmentPath::Dense {
            fallback,
            sparse_rounds,
        },
        certificate: Certificate {
            // The dense solver's dual is feasible on every entry by
            // construction.
            certified: true,
            dual_gap: (primal - sol.dual_objective()).abs(),
            max_violation: 0.0,
        },
    })
}

/// Candidate graph in CSR form with the cosine of each edge and the m-th
/// largest value of every row (s) and column (t) list.
struct Candidates {
    indptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f32>,
    /// Bound on non-candidate cosines of each row (−∞: row complete).
    s: Vec<f32>,
    /// Bound on non-candidate cosines of each column (−∞: column complete).
    t: Vec<f32>,
}

fn build_candidates(
    rows: &UnitVectors,
    cols: &UnitVectors,
    m: usize,
    extra: &[Vec<(u32, f32)>],
    tile: &TileConfig,
    pre: Option<(&TopN, &TopN)>,
) -> Result<Candidates> {
    let (nr, nc) = (rows.count, cols.count);
    let (m, kc) = (m.min(nc), m.min(nr));
    let (rt, ct) = match pre {
        // A top-K list cut to its first m entries is exactly the top-m list.
        Some((rl, cl)) if rl.k >= m && cl.k >= kc => (rl.truncated(m), cl.truncated(kc)),
        _ => top_n_both(cols, rows, m, kc, tile)?,
    };
    let mut per_row: Vec<Vec<(u32, f32)>> = (0..nr)
        .map(|i| {
            let (ix, vs) = rt.row(i);
            let mut v: Vec<(u32, f32)> = ix.iter().copied().zip(vs.iter().copied()).collect();
            v.extend_from_slice(&extra[i]);
            v
        })
        .collect();
    for j in 0..nc {
        let (ix, vs) = ct.row(j);
        for (&i, &v) in ix.iter().zip(vs) {
            per_row[i as usize].push((j as u32, v));
        }
    }
    per_row.par_iter_mut().for_each(|v| {
        v.sort_unstable_by_key(|e| e.0);
        v.dedup_by_key(|e| e.0);
    });
    let mut indptr = Vec::with_capacity(nr + 1);
    indptr.push(0);
    let total: usize = per_row.iter().map(Vec::len).sum();
    let mut ecols = Vec::with_capacity(total);
    let mut evals = Vec::with_capacity(total);
    for v in &per_row {
        for &(c, x) in v {
            ecols.push(c);
            evals.push(x);
        }
        indptr.push(ecols.len());
    }
    let s = (0..nr)
        .map(|i| {
            if rt.k >= nc {
                f32::NEG_INFINITY
            } else {
                rt.row(i).1[rt.k - 1]
            }
        })
        .collect();
    let t = (0..nc)
        .map(|j| {
            if ct.k >= nr {
                f32::NEG_INFINITY
            } else {
                ct.row(j).1[ct.k - 1]
            }
        })
        .collect();
    Ok(Candidates {
        indptr,
        cols: ecols,
        vals: evals,
        s,
        t,
    })
}

/// Rows that the cheap bound cannot certify: row i passes if
/// max_j (min(s_i, t_j) − p_j) ≤ a_i + tol.
fn rows_failing_bound(c: &Candidates, a: &[f64], p: &[f64]) -> Vec<usize> {
    let nc = p.len();
    // Columns sorted by t; prefix max of (t_j − p_j), suffix min of p_j.
    let mut order: Vec<usize> = (0..nc).collect();
    order.sort_unstable_by(|&x, &y| c.t[x].total_cmp(&c.t[y]));
    let ts: Vec<f64> = order.iter().map(|&j| c.t[j] as f64).collect();
    let mut pre = vec![f64::NEG_INFINITY; nc + 1]; // pre[k] = max over first k
    for (k, &j) in order.iter().enumerate() {
        pre[k + 1] = pre[k].max(c.t[j] as f64 - p[j]);
    }
    let mut suf = vec![f64::INFINITY; nc + 1]; // suf[k] = min p over k..
    for k in (0..nc).rev() {
        suf[k] = suf[k + 1].min(p[order[k]]);
    }
    (0..a.len())
        .into_par_iter()
        .filter(|&i| {
            let s = c.s[i] as f64;
            if s == f64::NEG_INFINITY {
                return false;
            }
            // Columns with t_j < s contribute t_j − p_j, the others s − p_j.
            let k = ts.partition_point(|&t| t < s);
            let bound = pre[k].max(s - suf[k]);
            bound > a[i] + CERT_TOL
        })
        .collect()
}

/// A non-candidate entry (row, column, cosine) violating the dual.
type Violation = (usize, u32, f32);

/// Recomputes the full cosine rows of `check` and returns the entries
/// violating the dual (S_ij > a_i + p_j + tol) that are not candidates,
/// per checked row, plus the largest violation.
fn exact_violations(
    rows: &UnitVectors,
    cols: &UnitVectors,
    c: &Candidates,
    check: &[usize],
    a: &[f64],
    p: &[f64],
    tile: &TileConfig,
) -> (Vec<(usize, u32, f32)>, f64) {
    let (nc, dim) = (cols.count, rows.dim);
    // Row blocks small enough that a block × all columns stays bounded.
    let blk = (tile.query_block * tile.ref_block / nc.max(1)).clamp(1, 256);
    let (_, par_blocks) = plan_blocks(
        check.len(),
        &TileConfig {
            query_block: blk,
            ref_block: tile.ref_block,
        },
    );
    let work = |chunk: &[usize]| {
        let mut q = Vec::with_capacity(chunk.len() * dim);
        for &i in chunk {
            q.extend_from_slice(rows.row(i));
        }
        let mut buf = vec![0.0f32; chunk.len() * nc];
        gemm_tile(&q, chunk.len(), &cols.data, nc, dim, &mut buf, !par_blocks);
        let mut found = Vec::new();
        let mut worst = 0.0f64;
        for (r, &i) in chunk.iter().enumerate() {
            let cand = &c.cols[c.indptr[i]..c.indptr[i + 1]];
            for (j, &sv) in buf[r * nc..(r + 1) * nc].iter().enumerate() {
                let viol = sv as f64 - a[i] - p[j];
                if viol > CERT_TOL && cand.binary_search(&(j as u32)).is_err() {
                    found.push((i, j as u32, sv));
                    worst = worst.max(viol);
                }
            }
        }
        (found, worst)
    };
    let parts: Vec<(Vec<Violation>, f64)> = if par_blocks {
        check.par_chunks(blk).map(work).collect()
    } else {
        check.chunks(blk).map(work).collect()
    };
    let worst = parts.iter().map(|p| p.1).fold(0.0, f64::max);
    (parts.into_iter().flat_map(|p| p.0).collect(), worst)
}

fn solve_sparse(
    rows: &UnitVectors,
    cols: &UnitVectors,
    opts: &AssignmentOptions,
    pre: Option<(&TopN, &TopN)>,
) -> Result<Solved> {
    let (nr, nc) = (rows.count, cols.count);
    let mut m = opts.candidates.clamp(1, nc);
    let mut extra: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nr];
    let mut cand: Option<Candidates> = None;
    let mut rounds = 0usize;
    let mut rows_checked = 0usize;
    let mut edges_added = 0usize;
    let mut last: Option<(LapSolution, Candidates, f64)> = None;
    // Previous solution, reused when only edges were added (same top-m).
    let mut warm: Option<LapSolution> = None;
    while rounds < opts.max_rounds.max(1) {
        rounds += 1;
        let c = match cand.take() {
            Some(c) => c,
            // The caller's profiles serve the first build only (m grows).
            None => build_candidates(
                rows,
                cols,
                m,
                &extra,
                &opts.tile,
                pre.filter(|_| rounds == 1),
            )?,
        };
        let g = SparseGraph {
            n_rows: nr,
            n_cols: nc,
            indptr: c.indptr.clone(),
            cols: c.cols.clone(),
            cost: c.vals.iter().map(|&v| -(v as f64)).collect(),
        };
        let sol = match sparse_sap_warm(&g, warm.as_ref()) {
            Ok(s) => s,
            Err(MatchError::Infeasible { .. }) => {
                // No matching covering every row within the candidates:
                // widen the graph.
                m = (m * 2).min(nc);
                warm = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        let a: Vec<f64> = sol.u.iter().map(|&u| -u).collect();
        let p: Vec<f64> = sol.v.iter().map(|&v| -v).collect();
        let failing = rows_failing_bound(&c, &a, &p);
        rows_checked += failing.len();
        let (viol, worst) = exact_violations(rows, cols, &c, &failing, &a, &p, &opts.tile);
        if viol.is_empty() {
            let vals = matched_values(&c, &sol.col_of_row);
            let primal: f64 = vals.iter().map(|&v| -(v as f64)).sum();
            return Ok(Solved {
                col_of_row: sol.col_of_row.clone(),
                certificate: Certificate {
                    certified: true,
                    dual_gap: (primal - sol.dual_objective()).abs(),
                    max_violation: 0.0,
                },
                vals,
                path: AssignmentPath::Sparse {
                    m,
                    rounds,
                    edges: c.cols.len(),
                    edges_added,
                    rows_checked_exactly: rows_checked,
                },
            });
        }
        let mut rows_hit: Vec<usize> = viol.iter().map(|v| v.0).collect();
        rows_hit.dedup();
        edges_added += viol.len();
        for &(i, j, v) in &viol {
            extra[i].push((j, v));
        }
        // Many violating rows: the top-m lists are too short overall, so
        // widening them is cheaper than adding edges round after round.
        let widen = rows_hit.len() * 8 > nr && m < nc;
        if widen {
            m = (m * 2).min(nc);
            warm = None;
            last = Some((sol, c, worst));
        } else {
            // Same top-m lists plus the new edges: rebuild only the CSR and
            // restart from the current solution.
            let c2 = add_edges(&c, &viol);
            warm = Some(sol.clone());
            last = Some((sol, c, worst));
            cand = Some(c2);
        }
    }
    if nr.saturating_mul(nc) <= opts.dense_fallback_max_entries {
        return solve_dense(rows, cols, &opts.tile, true, rounds);
    }
    // Too large for the dense fallback: return the last sparse solution,
    // flagged uncertified (or an infeasibility error if there is none).
    let Some((sol, c, worst)) = last else {
        return Err(MatchError::Infeasible { row: 0 });
    };
    let vals = matched_values(&c, &sol.col_of_row);
    let primal: f64 = vals.iter().map(|&v| -(v as f64)).sum();
    Ok(Solved {
        col_of_row: sol.col_of_row.clone(),
        certificate: Certificate {
            certified: false,
            dual_gap: (primal - sol.dual_objective()).abs(),
            max_violation: worst,
        },
        vals,
        path: AssignmentPath::Sparse {
            m,
            rounds,
            edges: c.cols.len(),
            edges_added,
            rows_checked_exactly: rows_checked,
        },
    })
}

/// Cosine of each row's matched edge.
fn matched_values(c: &Candidates, col_of_row: &[usize]) -> Vec<f32> {
    col_of_row
        .iter()
        .enumerate()
        .map(|(i, &j)| {
            let e = c.indptr[i]..c.indptr[i + 1];
            let p = c.cols[e.clone()]
                .binary_search(&(j as u32))
                .unwrap_or_else(|_| unreachable!("solver matched a non-edge"));
            c.vals[e.start + p]
        })
        .collect()
}

/// The candidate graph with extra edges (not already present) merged in,
/// keeping every row's columns sorted.
fn add_edges(c: &Candidates, new: &[(usize, u32, f32)]) -> Candidates {
    let nr = c.indptr.len() - 1;
    let mut add: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nr];
    for &(i, j, v) in new {
        add[i].push((j, v));
    }
    let mut indptr = Vec::with_capacity(nr + 1);
    indptr.push(0);
    let mut cols = Vec::with_capacity(c.cols.len() + new.len());
    let mut vals = Vec::with_capacity(c.cols.len() + new.len());
    for (i, extra) in add.iter_mut().enumerate() {
        let e = c.indptr[i]..c.indptr[i + 1];
        let mut row: Vec<(u32, f32)> = c.cols[e.clone()]
            .iter()
            .copied()
            .zip(c.vals[e].iter().copied())
            .collect();
        row.append(extra);
        row.sort_unstable_by_key(|x| x.0);
        row.dedup_by_key(|x| x.0);
        for (j, v) in row {
            cols.push(j);
            vals.push(v);
        }
        indptr.push(cols.len());
    }
    Candidates {
        indptr,
        cols,
        vals,
        s: c.s.clone(),
        t: c.t.clone(),
    }
}

/// The Paulo & Belrose (2025) "shared latent" statistics at threshold τ.
///
/// Definition used (`shared`): the decoder and the encoder vectors are
/// assigned independently (two exact assignments); a pair (i, j) is
/// *shared* if it appears in **both** assignments and both its decoder
/// cosine and its encoder cosine are > τ. `shared` is the count over
/// min(n_A, n_B). This follows SPEC §5 ("matched cosine > 0.7 under both
/// encoder and decoder matchings") and is the conservative reading: a latent
/// whose encoder and decoder match different partners is not shared.
///
/// `decoder_pairs_encoder_above` is the looser variant: decoder-assignment
/// pairs with decoder cosine > τ whose *encoder* cosine for the same pair
/// is > τ (whatever the encoder assignment did). shared ≤ this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedFraction {
    /// Threshold τ.
    pub threshold: f32,
    /// min(n_A, n_B).
    pub denominator: usize,
    /// Number of shared pairs (see the type's doc).
    pub shared_count: usize,
    /// shared_count / denominator.
    pub shared: f64,
    /// Fraction of decoder pairs with both cosines of that pair > τ.
    pub decoder_pairs_encoder_above: f64,
}

/// Computes [`SharedFraction`] from the decoder and encoder assignments of
/// the same two SAEs and their encoder vectors (to read the encoder cosine
/// of decoder pairs).
pub fn shared_fraction(
    decoder: &Assignment,
    encoder: &Assignment,
    enc_a: &UnitVectors,
    enc_b: &UnitVectors,
    threshold: f32,
) -> Result<SharedFraction> {
    if decoder.n_a != encoder.n_a
        || decoder.n_b != encoder.n_b
        || enc_a.count != decoder.n_a
        || enc_b.count != decoder.n_b
    {
        return Err(MatchError::InvalidOption(format!(
            "shared fraction needs assignments over the same latents \
             (decoder {}×{}, encoder {}×{}, encoder vectors {}×{})",
            decoder.n_a, decoder.n_b, encoder.n_a, encoder.n_b, enc_a.count, enc_b.count
        )));
    }
    check_comparable(enc_a, enc_b, "encoder features")?;
    let enc_partner = encoder.partner_of_a();
    let mut enc_cos = vec![f32::NEG_INFINITY; encoder.n_a];
    for (&(a, _), &c) in encoder.pairs.iter().zip(&encoder.cosines) {
        enc_cos[a as usize] = c;
    }
    let mut shared = 0usize;
    let mut loose = 0usize;
    for (&(a, b), &dc) in decoder.pairs.iter().zip(&decoder.cosines) {
        if dc <= threshold {
            continue;
        }
        if enc_partner[a as usize] == Some(b) && enc_cos[a as usize] > threshold {
            shared += 1;
        }
        if enc_a.cosine(a as usize, enc_b, b as usize) > threshold as f64 {
            loose += 1;
        }
    }
    let den = decoder.n_a.min(decoder.n_b);
    let frac = |x: usize| if den == 0 { 0.0 } else { x as f64 / den as f64 };
    Ok(SharedFraction {
        threshold,
        denominator: den,
        shared_count: shared,
        shared: frac(shared),
        decoder_pairs_encoder_above: frac(loose),
    })
}
