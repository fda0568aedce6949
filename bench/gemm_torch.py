"""PyTorch matmul on the shapes of `cargo bench -p saelab-lm --bench bf16`
(bench/gemm.sh runs both in one run): f32 and bf16 `x @ W` with W stored
as the bench stores it ([in, out], or [out, in] transposed for the W^T
rows), GFLOP/s median (best) over reps after one warm-up. The bf16 product
writes a bf16 output (saelab's writes f32): the usual PyTorch bf16 path.
Run with ONEDNN_VERBOSE=1 to see which oneDNN kernel torch picks.

Usage: VENV/bin/python bench/gemm_torch.py [--threads 2] [--reps 7]
"""
import argparse
import time

import torch

SHAPES = [
    ("gpt2 c_attn", 2048, 2304, 768, False),
    ("gpt2 c_fc", 2048, 3072, 768, False),
    ("gpt2 mlp c_proj", 2048, 768, 3072, False),
    ("smollm2 gate_up (W^T)", 2048, 3072, 576, True),
    ("smollm2 down (W^T)", 2048, 576, 1536, True),
    ("smollm2 qkv (W^T)", 2048, 960, 576, True),
    ("sae encoder (W^T)", 4096, 12288, 768, True),
]


def rate(flop, fn, reps):
    fn()
    r = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        r.append(flop / (time.perf_counter() - t0) / 1e9)
    r.sort()
    return r[len(r) // 2], r[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| shape | m×n×k | torch f32 | torch bf16 |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for name, m, n, k, t in SHAPES:
            x = torch.randn(m, k, generator=g)
            w = torch.randn(n, k, generator=g).t() if t else torch.randn(k, n, generator=g)
            out = torch.empty(m, n)
            flop = 2.0 * m * n * k
            f32 = rate(flop, lambda: torch.matmul(x, w, out=out), args.reps)
            xb, wb = x.bfloat16(), w.bfloat16()
            outb = torch.empty(m, n, dtype=torch.bfloat16)
            b16 = rate(flop, lambda: torch.matmul(xb, wb, out=outb), args.reps)
            print(f"| torch {name} | {m}×{n}×{k} | {f32[0]:.1f} ({f32[1]:.1f}) | {b16[0]:.1f} ({b16[1]:.1f}) |")


if __name__ == "__main__":
    main()
