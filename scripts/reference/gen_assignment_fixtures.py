#!/usr/bin/env python3
"""Reference optima of the linear assignment problem, from scipy.

Writes crates/analysis/tests/fixtures/assignment/cases.json, which the Rust
test `crates/analysis/tests/matching.rs` compares against
(`saelab_analysis::matching::linear_sum_assignment` and, for the cases given
as vectors, the full `assign` pipeline on unit vectors).

Run (from the repository root; needs numpy and scipy):

    /work/venv/bin/python scripts/reference/gen_assignment_fixtures.py

Options: --out DIR (default crates/analysis/tests/fixtures/assignment).
Deterministic: the RNG is numpy's PCG64 seeded with 20250404 and every value
is rounded to a short decimal, so two runs give byte-identical files and the
JSON numbers parse to the same float64 in Rust and Python.

Each case holds:
  name, rows, cols, maximize (bool)
  either "matrix" (row-major float64 list, rows*cols)
      or "dim", "vectors_a" (rows*dim), "vectors_b" (cols*dim): the matrix is
      then the cosine matrix C[i,j] = a_i.b_j / (|a_i| |b_j|), computed in
      float64 (each row normalized by its float64 norm, then dot products)
  scipy_total: the optimum sum of matrix[r, c] over scipy's pairs (float64)
  scipy_rows, scipy_cols: scipy.optimize.linear_sum_assignment's answer
  ties (bool): true when the optimum is not unique, so only the total is
      comparable, not the pairs
"""

import argparse
import json
import os
import sys

import numpy as np
import scipy
from scipy.optimize import linear_sum_assignment

SEED = 20250404


def cosine(a, b):
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return an @ bn.T


def solve(name, m, maximize, ties, extra=None):
    r, c = linear_sum_assignment(m, maximize=maximize)
    case = {
        "name": name,
        "rows": int(m.shape[0]),
        "cols": int(m.shape[1]),
        "maximize": bool(maximize),
        "ties": bool(ties),
    }
    if extra is None:
        case["matrix"] = [float(x) for x in m.ravel()]
    else:
        case.update(extra)
    case["scipy_total"] = float(m[r, c].sum())
    case["scipy_rows"] = [int(x) for x in r]
    case["scipy_cols"] = [int(x) for x in c]
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument(
        "--out", default=os.path.join(root, "crates/analysis/tests/fixtures/assignment")
    )
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    cases = []

    def rand(rows, cols):
        return np.round(rng.uniform(-1.0, 1.0, size=(rows, cols)), 6)

    sq = rand(50, 50)
    cases.append(solve("square_50_max", sq, True, False))
    cases.append(solve("square_50_min", sq, False, False))
    cases.append(solve("rect_30x45_max", rand(30, 45), True, False))
    cases.append(solve("rect_45x30_max", rand(45, 30), True, False))
    cases.append(solve("rect_45x30_min", rand(45, 30), False, False))
    # Small integers: many ties, several optimal assignments.
    cases.append(solve("ties_40x40_int_max", rng.integers(0, 5, size=(40, 40)).astype(float), True, True))
    cases.append(solve("ties_25x40_int_min", rng.integers(0, 4, size=(25, 40)).astype(float), False, True))
    cases.append(solve("ties_40x25_int_max", rng.integers(0, 3, size=(40, 25)).astype(float), True, True))
    # Duplicated rows and a constant matrix: degenerate ties.
    dup = np.repeat(rand(6, 20), 3, axis=0)
    cases.append(solve("dup_rows_18x20_max", dup, True, True))
    cases.append(solve("const_12x9_max", np.full((12, 9), 0.25), True, True))
    # Cosine matrices of random unit vectors (the real use case).
    for name, na, nb, dim in [("cos_300x300_d16", 300, 300, 16), ("cos_120x200_d12", 120, 200, 12)]:
        a = np.round(rng.standard_normal((na, dim)), 4)
        b = np.round(rng.standard_normal((nb, dim)), 4)
        extra = {
            "dim": dim,
            "vectors_a": [float(x) for x in a.ravel()],
            "vectors_b": [float(x) for x in b.ravel()],
        }
        cases.append(solve(name, cosine(a, b), True, False, extra))

    os.makedirs(args.out, exist_ok=True)
    doc = {
        "generator": "scripts/reference/gen_assignment_fixtures.py",
        "seed": SEED,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
        "cases": cases,
    }
    path = os.path.join(args.out, "cases.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
