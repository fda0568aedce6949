#!/usr/bin/env python3
"""scipy side of the exact-assignment benchmark on real trained SAEs (issue #4).

Reads the decoder matrices of two SAE directories (SAELens layout:
`sae_weights.safetensors` with `W_dec` [n, d], as `saelab train` writes),
normalizes the rows explicitly, builds the dense cosine matrix (float32
product, float64 for scipy) and runs
`scipy.optimize.linear_sum_assignment(maximize=True)`. Prints the time, the
memory peak (VmHWM) and the optimal total, to compare with

    /usr/bin/time -v saelab match A B --vectors decoder --assignment --out DIR

whose `match.json` gives the assignment total (`assignment.total`) and path.

Usage: VENV/bin/python bench/match_real_scipy.py A_DIR B_DIR
"""

import sys
import time

import numpy as np
from safetensors.numpy import load_file
from scipy.optimize import linear_sum_assignment


def unit_rows(path):
    w = load_file(f"{path}/sae_weights.safetensors")["W_dec"].astype(np.float32)
    n = np.linalg.norm(w.astype(np.float64), axis=1, keepdims=True)
    return (w / np.maximum(n, 1e-8)).astype(np.float32)


def vmhwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    a, b = unit_rows(sys.argv[1]), unit_rows(sys.argv[2])
    t0 = time.perf_counter()
    c = (a @ b.T).astype(np.float64)
    t1 = time.perf_counter()
    r, col = linear_sum_assignment(c, maximize=True)
    t2 = time.perf_counter()
    total = float(c[r, col].sum())
    above = float((c[r, col] > 0.7).mean())
    print(f"scipy: n_a {a.shape[0]} n_b {b.shape[0]} d {a.shape[1]}: matrix {t1 - t0:.2f} s, "
          f"lsa {t2 - t1:.2f} s, total {t2 - t0:.2f} s, VmHWM {vmhwm_mb():.0f} MB, "
          f"optimum {total:.6f}, R_H {above:.4f}")


if __name__ == "__main__":
    main()
