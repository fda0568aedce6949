#!/usr/bin/env python3
"""numpy / scipy side of the feature-matching benchmark (issue #4).

Runs on the exact vectors the Rust benchmark generated and compares:
  * top-n: blocked float32 matmul (BLAS) + argpartition, top-4 of every
    query of B against A, timed end to end; checks the top-1 indices agree
    with Rust's (up to near-ties);
  * assignment: scipy.optimize.linear_sum_assignment(maximize=True) on the
    dense cosine matrix (float32 products, then float64 as scipy needs) of
    the first n vectors of A and B, for each n Rust solved; checks the
    optimum equals Rust's and reports time and memory peak (each size runs
    in a child process so its VmHWM is its own).

Usage (from the repository root):

    cargo bench -p saelab-analysis --bench matching -- --write-dir /tmp/matchbench
    /work/venv/bin/python bench/match_reference.py /tmp/matchbench [--skip-topn] [--max-assign N]

Threads: numpy's BLAS uses all cores unless OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS say otherwise; the Rust side uses rayon's default
(all cores). Report both with the machine description.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def topn_numpy(a, b, k=4, block=4096):
    """Top-k of every row of b against a (cosines of unit vectors)."""
    nb = b.shape[0]
    idx = np.empty((nb, k), dtype=np.int64)
    val = np.empty((nb, k), dtype=np.float32)
    for s in range(0, nb, block):
        s_ = b[s:s + block] @ a.T  # [block, na] float32
        part = np.argpartition(-s_, k - 1, axis=1)[:, :k]
        pv = np.take_along_axis(s_, part, axis=1)
        order = np.argsort(-pv, axis=1, kind="stable")
        idx[s:s + block] = np.take_along_axis(part, order, axis=1)
        val[s:s + block] = np.take_along_axis(pv, order, axis=1)
    return idx, val


def assign_child(d, n):
    """Child process: scipy LSA on n×n; prints a JSON line."""
    from scipy.optimize import linear_sum_assignment

    a = np.load(os.path.join(d, "a.npy"), mmap_mode="r")[:n]
    b = np.load(os.path.join(d, "b.npy"), mmap_mode="r")[:n]
    t0 = time.perf_counter()
    c = (np.asarray(a) @ np.asarray(b).T).astype(np.float64)
    t1 = time.perf_counter()
    r, col = linear_sum_assignment(c, maximize=True)
    t2 = time.perf_counter()
    total = float(c[r, col].sum())
    # VmHWM of this process (ru_maxrss would include the parent's peak,
    # which Linux carries across fork/exec).
    peak = float("nan")
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024.0
    print(json.dumps({"n": n, "matrix_seconds": t1 - t0, "lsa_seconds": t2 - t1,
                      "seconds": t2 - t0, "total": total, "vmhwm_mb": peak,
                      "cols": [int(x) for x in col]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--skip-topn", action="store_true")
    ap.add_argument("--max-assign", type=int, default=12288,
                    help="largest n to run scipy on (24576 needs a 4.8 GB float64 matrix and hours)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        assign_child(args.dir, args.child)
        return
    rust = json.load(open(os.path.join(args.dir, "rust_results.json")))
    print(f"# numpy {np.__version__}; Rust threads {rust.get('threads')}, n {rust['n']}, d {rust['d']}")
    if not args.skip_topn and "topn_seconds" in rust:
        a = np.load(os.path.join(args.dir, "a.npy"))
        b = np.load(os.path.join(args.dir, "b.npy"))
        n, d = a.shape
        topn_numpy(a[:512], b[:512])  # warm up BLAS
        t0 = time.perf_counter()
        idx, val = topn_numpy(a, b)
        dt = time.perf_counter() - t0
        flops = 2.0 * n * b.shape[0] * d
        rtop1 = np.load(os.path.join(args.dir, "top1_b_in_a.npy"))
        agree = float((rtop1 == idx[:, 0]).mean())
        print(f"top-4 {b.shape[0]}x{n} d {d}: numpy {dt:.2f} s ({flops / dt / 1e9:.1f} GFLOP/s) | "
              f"Rust {rust['topn_seconds']:.2f} s ({rust['topn_gflops']:.1f} GFLOP/s) | "
              f"speedup {dt / rust['topn_seconds']:.2f}x | top-1 index agreement {agree:.6f} | "
              f"mean top-1 numpy {val[:, 0].astype(np.float64).mean():.6f} Rust {rust['topn_mean_top1']:.6f}")
        if "gemm_square_gflops" in rust:
            best = max(rust["gemm_square_gflops"], rust["gemm_tile_gflops"], rust.get("gemm_per_thread_gflops", 0.0))
            print(f"Rust top-n rate / best measured gemm rate ({best:.1f} GFLOP/s): {rust['topn_gflops'] / best:.1%}")
        del a, b
    for r in rust.get("assignment", []):
        n = r["n"]
        if n > args.max_assign:
            print(f"assignment {n}: Rust {r['seconds']:.2f} s, VmHWM {r['vmhwm_mb']:.0f} MB, "
                  f"total {r['total']:.6f} (scipy skipped, --max-assign {args.max_assign})")
            continue
        out = subprocess.run([sys.executable, __file__, args.dir, "--child", str(n)],
                             check=True, capture_output=True, text=True).stdout
        s = json.loads(out.strip().splitlines()[-1])
        same = sum(int(x == y) for x, y in zip(s["cols"], r["cols_of_rows"]))
        print(f"assignment {n}x{n}: scipy {s['seconds']:.2f} s (matrix {s['matrix_seconds']:.2f} + "
              f"lsa {s['lsa_seconds']:.2f}), VmHWM {s['vmhwm_mb']:.0f} MB, total {s['total']:.6f} | "
              f"Rust {r['seconds']:.2f} s, VmHWM {r['vmhwm_mb']:.0f} MB, total {r['total']:.6f}, "
              f"certified {r['certified']} | |Δtotal| {abs(s['total'] - r['total']):.2e}, "
              f"same pairs {same}/{n} | speedup {s['seconds'] / r['seconds']:.1f}x")


if __name__ == "__main__":
    main()
