//! Exact linear assignment (LAP) solvers, in the minimization form
//! `min Σ c(i, σ(i))` over one-to-one maps σ from rows into columns, for
//! rectangular problems with `rows ≤ cols` (callers transpose otherwise).
//!
//! Both solvers are the shortest-augmenting-path method with potentials
//! (Jonker–Volgenant / Crouse 2016, as in scipy's `linear_sum_assignment`):
//! rows are added one at a time; a Dijkstra search on reduced costs
//! `c(i,j) − u_i − v_j ≥ 0` finds the cheapest augmenting path to a free
//! column, then the potentials are updated so that the matched edges stay
//! tight. All costs and potentials are f64.
//!
//! - [`dense_sap`]: full matrix through a cost closure, O(rows²·cols)
//!   worst case, a linear scan per Dijkstra step (scipy's algorithm).
//! - [`sparse_sap`]: a CSR edge list with a binary heap; missing edges are
//!   forbidden. Errors with [`MatchError::Infeasible`] when some row cannot
//!   be matched.
//!
//! Both start from a row reduction (u_i = min_j c(i,j), v = 0) with a
//! greedy assignment of every row to its cheapest column when that column
//! is still free, which is dual-feasible and typically matches most rows
//! before any search. [`sparse_sap_warm`] instead restarts from a previous
//! solution after edges were added (square problems).
//!
//! **Dual certificate.** On return, (u, v) satisfy: reduced costs ≥ 0 on
//! every edge the solver saw (up to f64 rounding), = 0 on matched edges,
//! v_j ≤ 0 for all columns and v_j = 0 for unmatched columns. These are the
//! LP optimality conditions of the rectangular problem (rows: `Σ_j x_ij =
//! 1`, u free; columns: `Σ_i x_ij ≤ 1`, v ≤ 0), so Σu + Σv equals the
//! optimum, and any edge not seen by the solver whose reduced cost is ≥ 0
//! could not improve it (see `assignment.rs`).

use super::error::{MatchError, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NONE: usize = usize::MAX;

/// An optimal assignment with its dual potentials (minimization form).
#[derive(Clone, Debug, PartialEq)]
pub struct LapSolution {
    /// Column of each row (every row is matched since rows ≤ cols).
    pub col_of_row: Vec<usize>,
    /// Row potentials u.
    pub u: Vec<f64>,
    /// Column potentials v (≤ 0, 0 on unmatched columns).
    pub v: Vec<f64>,
}

impl LapSolution {
    /// Dual objective Σu + Σv (= the minimum total cost at optimality).
    pub fn dual_objective(&self) -> f64 {
        self.u.iter().sum::<f64>() + self.v.iter().sum::<f64>()
    }
}

/// A sparse LAP instance: row i's edges are `indptr[i]..indptr[i+1]` of
/// (`cols`, `cost`). Columns within a row need not be sorted but must be
/// distinct.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseGraph {
    /// Number of rows (≤ `n_cols`).
    pub n_rows: usize,
    /// Number of columns.
    pub n_cols: usize,
    /// CSR row pointers, length `n_rows + 1`.
    pub indptr: Vec<usize>,
    /// Column of each edge.
    pub cols: Vec<u32>,
    /// Cost of each edge (minimization).
    pub cost: Vec<f64>,
}

/// Dense shortest-augmenting-path solver for `rows ≤ cols`; `cost(i, j)`
/// must be finite.
pub fn dense_sap<C: Fn(usize, usize) -> f64>(
    n_rows: usize,
    n_cols: usize,
    cost: C,
) -> Result<LapSolution> {
    if n_rows > n_cols {
        return Err(MatchError::InvalidOption(format!(
            "dense_sap needs rows ≤ cols (got {n_rows} × {n_cols})"
        )));
    }
    let mut u = vec![0.0f64; n_rows];
    let mut v = vec![0.0f64; n_cols];
    let mut col4row = vec![NONE; n_rows];
    let mut row4col = vec![NONE; n_cols];
    // Row reduction + greedy start (v = 0 keeps v ≤ 0 and v = 0 on free
    // columns).
    for i in 0..n_rows {
        let mut best = f64::INFINITY;
        let mut arg = NONE;
        for j in 0..n_cols {
            let c = cost(i, j);
            if c < best {
                best = c;
                arg = j;
            }
        }
        if arg == NONE {
            return Err(MatchError::Infeasible { row: i });
        }
        u[i] = best;
        if row4col[arg] == NONE {
            row4col[arg] = i;
            col4row[i] = arg;
        }
    }
    let mut spc = vec![f64::INFINITY; n_cols];
    let mut path = vec![NONE; n_cols];
    let mut remaining = vec![0usize; n_cols];
    let mut sr = vec![false; n_rows];
    let mut sc = vec![false; n_cols];
    let mut sr_list: Vec<usize> = Vec::new();
    for cur in 0..n_rows {
        if col4row[cur] != NONE {
            continue;
        }
        // Dijkstra over columns with a linear scan (scipy's augmenting_path).
        let mut min_val = 0.0f64;
        let mut n_rem = n_cols;
        for (it, r) in remaining.iter_mut().enumerate() {
            // Reversed order, as scipy, so ties prefer lower column indices
            // last-in; any order is correct.
            *r = n_cols - it - 1;
        }
        sr.iter_mut().for_each(|x| *x = false);
        sc.iter_mut().for_each(|x| *x = false);
        spc.iter_mut().for_each(|x| *x = f64::INFINITY);
        sr_list.clear();
        let mut i = cur;
        let sink;
        loop {
            sr[i] = true;
            sr_list.push(i);
            let mut index = NONE;
            let mut lowest = f64::INFINITY;
            for (it, &j) in remaining[..n_rem].iter().enumerate() {
                let r = min_val + cost(i, j) - u[i] - v[j];
                if r < spc[j] {
                    path[j] = i;
                    spc[j] = r;
                }
                if spc[j] < lowest || (spc[j] == lowest && row4col[j] == NONE) {
                    lowest = spc[j];
                    index = it;
                }
            }
            min_val = lowest;
            if index == NONE || !min_val.is_finite() {
                return Err(MatchError::Infeasible { row: cur });
            }
            let j = remaining[index];
            sc[j] = true;
            n_rem -= 1;
            remaining[index] = remaining[n_rem];
            if row4col[j] == NONE {
                sink = j;
                break;
            }
            i = row4col[j];
        }
        // Potentials.
        u[cur] += min_val;
        for &r in &sr_list {
            if r != cur {
                u[r] += min_val - spc[col4row[r]];
            }
        }
        for j in 0..n_cols {
            if sc[j] {
                v[j] -= min_val - spc[j];
            }
        }
        // Augment.
        let mut j = sink;
        loop {
            let r = path[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == cur {
                break;
            }
        }
    }
    Ok(LapSolution {
        col_of_row: col4row,
        u,
        v,
    })
}

/// f64 → u64 with the same order (for heap keys; handles the tiny negative
/// reduced costs rounding can produce).
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// Sparse shortest-augmenting-path solver for `rows ≤ cols` on the edges of
/// `g`. Errors with [`MatchError::Infeasible`] naming a row that cannot be
/// matched (no perfect matching of the rows exists within the edges).
pub fn sparse_sap(g: &SparseGraph) -> Result<LapSolution> {
    sparse_sap_warm(g, None)
}

/// [`sparse_sap`] started from a previous solution `warm` on a subgraph of
/// `g` (same vertices, fewer edges), as after adding the edges a failed
/// certificate found. Used only for square problems (rows = cols); for
/// rectangular ones, or if `warm` does not fit, it starts cold, because a
/// column left unmatched must end with v = 0, which a warm start could
/// break.
pub fn sparse_sap_warm(g: &SparseGraph, warm: Option<&LapSolution>) -> Result<LapSolution> {
    let (nr, nc) = (g.n_rows, g.n_cols);
    if nr > nc {
        return Err(MatchError::InvalidOption(format!(
            "sparse_sap needs rows ≤ cols (got {nr} × {nc})"
        )));
    }
    if g.indptr.len() != nr + 1 || g.indptr[nr] != g.cols.len() || g.cols.len() != g.cost.len() {
        return Err(MatchError::Shape {
            what: "sparse assignment graph".into(),
            expected: nr + 1,
            got: g.indptr.len(),
        });
    }
    if let Some(&c) = g.cols.iter().find(|&&c| c as usize >= nc) {
        return Err(MatchError::InvalidOption(format!(
            "edge to column {c} but the graph has {nc} columns"
        )));
    }
    let (mut u, mut v, mut col4row, mut row4col);
    match warm
        .filter(|w| nr == nc && w.u.len() == nr && w.v.len() == nc && w.col_of_row.len() == nr)
    {
        Some(w) => {
            // Warm start (square problems only, where v is a free dual):
            // keep the previous potentials and matching, lower u_i where a
            // new edge made the dual infeasible, and unmatch those rows
            // (their matched edge is no longer tight).
            u = w.u.clone();
            v = w.v.clone();
            col4row = w.col_of_row.clone();
            row4col = vec![NONE; nc];
            for (i, &j) in col4row.iter().enumerate() {
                if j != NONE {
                    row4col[j] = i;
                }
            }
            for i in 0..nr {
                let e = g.indptr[i]..g.indptr[i + 1];
                let mut best = f64::INFINITY;
                for (&c, &w) in g.cols[e.clone()].iter().zip(&g.cost[e]) {
                    best = best.min(w - v[c as usize]);
                }
                if best == f64::INFINITY {
                    return Err(MatchError::Infeasible { row: i });
                }
                if best < u[i] {
                    u[i] = best;
                    if col4row[i] != NONE {
                        row4col[col4row[i]] = NONE;
                        col4row[i] = NONE;
                    }
                }
            }
        }
        None => {
            u = vec![0.0f64; nr];
            v = vec![0.0f64; nc];
            col4row = vec![NONE; nr];
            row4col = vec![NONE; nc];
            for i in 0..nr {
                let e = g.indptr[i]..g.indptr[i + 1];
                let mut best = f64::INFINITY;
                let mut arg = NONE;
                for (&c, &w) in g.cols[e.clone()].iter().zip(&g.cost[e]) {
                    if w < best || (w == best && (c as usize) < arg) {
                        best = w;
                        arg = c as usize;
                    }
                }
                if arg == NONE {
                    return Err(MatchError::Infeasible { row: i });
                }
                u[i] = best;
                if row4col[arg] == NONE {
                    row4col[arg] = i;
                    col4row[i] = arg;
                }
            }
        }
    }
    let mut dist = vec![f64::INFINITY; nc];
    let mut pred = vec![NONE; nc];
    let mut done = vec![false; nc];
    let mut touched: Vec<usize> = Vec::new();
    let mut finalized: Vec<usize> = Vec::new();
    let mut scanned: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u8, u32)>> = BinaryHeap::new();
    for cur in 0..nr {
        if col4row[cur] != NONE {
            continue;
        }
        heap.clear();
        let mut i = cur;
        let mut di = 0.0f64;
        let found = loop {
            scanned.push(i);
            let ui = u[i];
            let e = g.indptr[i]..g.indptr[i + 1];
            for (&c, &w) in g.cols[e.clone()].iter().zip(&g.cost[e]) {
                let j = c as usize;
                if done[j] {
                    continue;
                }
                let nd = di + w - ui - v[j];
                if nd < dist[j] {
                    if dist[j] == f64::INFINITY {
                        touched.push(j);
                    }
                    dist[j] = nd;
                    pred[j] = i;
                    // Free columns first among equal distances: ends the
                    // search as early as possible.
                    heap.push(Reverse((key(nd), (row4col[j] != NONE) as u8, c)));
                }
            }
            let mut next = None;
            while let Some(Reverse((kd, _, c))) = heap.pop() {
                let j = c as usize;
                if done[j] || key(dist[j]) != kd {
                    continue; // stale entry
                }
                next = Some(j);
                break;
            }
            let Some(j) = next else { break None };
            done[j] = true;
            finalized.push(j);
            if row4col[j] == NONE {
                break Some((j, dist[j]));
            }
            i = row4col[j];
            di = dist[j];
        };
        let Some((sink, delta)) = found else {
            return Err(MatchError::Infeasible { row: cur });
        };
        u[cur] += delta;
        for &r in &scanned[1..] {
            u[r] += delta - dist[col4row[r]];
        }
        for &j in &finalized {
            v[j] -= delta - dist[j];
        }
        let mut j = sink;
        loop {
            let r = pred[j];
            row4col[j] = r;
            std::mem::swap(&mut col4row[r], &mut j);
            if r == cur {
                break;
            }
        }
        for &j in &touched {
            dist[j] = f64::INFINITY;
            done[j] = false;
        }
        touched.clear();
        finalized.clear();
        scanned.clear();
    }
    Ok(LapSolution {
        col_of_row: col4row,
        u,
        v,
    })
}

/// Result of [`linear_sum_assignment`]: pairs sorted by row, and the total
/// of the matched entries.
#[derive(Clone, Debug, PartialEq)]
pub struct LsaResult {
    /// (row, column) pairs, min(rows, cols) of them, sorted by row.
    pub pairs: Vec<(usize, usize)>,
    /// Σ of the matrix entries at the pairs (f64).
    pub total: f64,
}

/// scipy-compatible `linear_sum_assignment` on a dense row-major matrix
/// (any shape; `maximize` as in scipy). Every entry must be finite.
pub fn linear_sum_assignment(
    matrix: &[f64],
    n_rows: usize,
    n_cols: usize,
    maximize: bool,
) -> Result<LsaResult> {
    if matrix.len() != n_rows * n_cols {
        return Err(MatchError::Shape {
            what: "assignment matrix".into(),
            expected: n_rows * n_cols,
            got: matrix.len(),
        });
    }
    if let Some(p) = matrix.iter().position(|v| !v.is_finite()) {
        return Err(MatchError::NonFiniteCost {
            row: p / n_cols,
            col: p % n_cols,
        });
    }
    let sign = if maximize { -1.0 } else { 1.0 };
    let transposed = n_rows > n_cols;
    let mut pairs: Vec<(usize, usize)> = if transposed {
        let sol = dense_sap(n_cols, n_rows, |i, j| sign * matrix[j * n_cols + i])?;
        sol.col_of_row
            .iter()
            .enumerate()
            .map(|(c, &r)| (r, c))
            .collect()
    } else {
        let sol = dense_sap(n_rows, n_cols, |i, j| sign * matrix[i * n_cols + j])?;
        sol.col_of_row.iter().copied().enumerate().collect()
    };
    pairs.sort_unstable();
    let total = pairs.iter().map(|&(r, c)| matrix[r * n_cols + c]).sum();
    Ok(LsaResult { pairs, total })
}

/// Exact assignment on a sparse matrix (CSR: row i holds `indices[e]`,
/// `weights[e]` for e in `indptr[i]..indptr[i+1]`); absent entries are
/// forbidden. Any shape: min(rows, cols) pairs. Errors with
/// [`MatchError::Infeasible`] if the smaller side cannot be fully matched.
pub fn sparse_linear_sum_assignment(
    n_rows: usize,
    n_cols: usize,
    indptr: &[usize],
    indices: &[u32],
    weights: &[f64],
    maximize: bool,
) -> Result<LsaResult> {
    if indptr.len() != n_rows + 1
        || indptr.windows(2).any(|w| w[0] > w[1])
        || indptr[n_rows] != indices.len()
        || indices.len() != weights.len()
    {
        return Err(MatchError::Shape {
            what: "sparse assignment matrix (indptr/indices/weights)".into(),
            expected: n_rows + 1,
            got: indptr.len(),
        });
    }
    for i in 0..n_rows {
        for e in indptr[i]..indptr[i + 1] {
            if !weights[e].is_finite() {
                return Err(MatchError::NonFiniteCost {
                    row: i,
                    col: indices[e] as usize,
                });
            }
        }
    }
    let sign = if maximize { -1.0 } else { 1.0 };
    let g = if n_rows <= n_cols {
        SparseGraph {
            n_rows,
            n_cols,
            indptr: indptr.to_vec(),
            cols: indices.to_vec(),
            cost: weights.iter().map(|w| sign * w).collect(),
        }
    } else {
        transpose_csr(n_rows, n_cols, indptr, indices, weights, sign)?
    };
    let sol = sparse_sap(&g)?;
    let mut pairs: Vec<(usize, usize)> = sol
        .col_of_row
        .iter()
        .enumerate()
        .map(|(r, &c)| if n_rows <= n_cols { (r, c) } else { (c, r) })
        .collect();
    pairs.sort_unstable();
    // Total from the graph (minimization costs, sign restored).
    let mut total = 0.0;
    for (r, &c) in sol.col_of_row.iter().enumerate() {
        let e = g.indptr[r]..g.indptr[r + 1];
        if let Some(p) = g.cols[e.clone()].iter().position(|&x| x as usize == c) {
            total += sign * g.cost[e.start + p];
        }
    }
    Ok(LsaResult { pairs, total })
}

fn transpose_csr(
    n_rows: usize,
    n_cols: usize,
    indptr: &[usize],
    indices: &[u32],
    weights: &[f64],
    sign: f64,
) -> Result<SparseGraph> {
    let mut count = vec![0usize; n_cols + 1];
    for &c in indices {
        let c = c as usize;
        if c >= n_cols {
            return Err(MatchError::InvalidOption(format!(
                "entry in column {c} but the matrix has {n_cols} columns"
            )));
        }
        count[c + 1] += 1;
    }
    for c in 0..n_cols {
        count[c + 1] += count[c];
    }
    let mut fill = count.clone();
    let mut cols = vec![0u32; indices.len()];
    let mut cost = vec![0.0f64; indices.len()];
    for r in 0..n_rows {
        for e in indptr[r]..indptr[r + 1] {
            let c = indices[e] as usize;
            cols[fill[c]] = r as u32;
            cost[fill[c]] = sign * weights[e];
            fill[c] += 1;
        }
    }
    Ok(SparseGraph {
        n_rows: n_cols,
        n_cols: n_rows,
        indptr: count,
        cols,
        cost,
    })
}
