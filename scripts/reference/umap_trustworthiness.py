#!/usr/bin/env python3
"""Reference check of saelab's UMAP of decoder directions (study Fig 18).

    umap_trustworthiness.py (SAE_DIR | ROWS.npy) OURS.npy [--seed 49]

Loads W_dec [n, d] from SAE_DIR/sae_weights.safetensors (or `sae.safetensors`,
or a rows .npy written by the umap_decoder example's --rows-out), normalises
the rows, runs umap-learn (metric cosine, n_neighbors 15, min_dist 0.1,
random_state = seed) and prints scikit-learn's trustworthiness (k 10, cosine
on the rows) of umap-learn's embedding and of OURS.npy (n x 2), with times.
Development-only: the project never runs Python at build or test time.
"""
import argparse
import json
import os
import struct
import time

import numpy as np


def read_safetensors(path, name):
    """One tensor of a .safetensors file as float32 (F32 / F16 / BF16)."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        info = header[name]
        start, end = info["data_offsets"]
        f.seek(8 + hlen + start)
        raw = f.read(end - start)
    dtype = info["dtype"]
    if dtype == "F32":
        a = np.frombuffer(raw, "<f4")
    elif dtype == "F16":
        a = np.frombuffer(raw, "<f2").astype(np.float32)
    elif dtype == "BF16":
        a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        raise SystemExit(f"{path}: {name} has unsupported dtype {dtype}")
    return a.reshape(info["shape"]).astype(np.float32)


def load_rows(src):
    if src.endswith(".npy"):
        return np.load(src).astype(np.float32)
    for fname, tensor in (("sae_weights.safetensors", "W_dec"), ("sae.safetensors", "W_dec")):
        path = os.path.join(src, fname)
        if os.path.exists(path):
            return read_safetensors(path, tensor)
    raise SystemExit(f"{src}: no sae_weights.safetensors or sae.safetensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", help="SAE directory or rows .npy")
    ap.add_argument("ours", help="our n x 2 embedding (.npy)")
    ap.add_argument("--seed", type=int, default=49)
    args = ap.parse_args()

    import umap
    from sklearn.manifold import trustworthiness

    rows = load_rows(args.src)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    ours = np.load(args.ours)
    assert ours.shape == (unit.shape[0], 2), f"{args.ours}: shape {ours.shape}"
    print(f"rows {unit.shape[0]}  dims {unit.shape[1]}  umap-learn {umap.__version__}")

    t = time.time()
    ref = umap.UMAP(
        n_neighbors=15, min_dist=0.1, metric="cosine", random_state=args.seed
    ).fit_transform(unit)
    print(f"umap_learn_seconds {time.time() - t:.3f}  (includes numba JIT)")

    t = time.time()
    t_ref = trustworthiness(unit, ref, n_neighbors=10, metric="cosine")
    t_ours = trustworthiness(unit, ours, n_neighbors=10, metric="cosine")
    print(f"sklearn_trust_seconds {time.time() - t:.3f}")
    print(f"trustworthiness_k10 umap-learn {t_ref:.4f}")
    print(f"trustworthiness_k10 ours       {t_ours:.4f}")
    print(f"difference (ours - umap-learn) {t_ours - t_ref:+.4f}")


if __name__ == "__main__":
    main()
