#!/usr/bin/env python3
"""One tensor of every GGUF type saelab reads, and gguf-py's dequantization
of each, in one small GGUF file: tests/fixtures/lm/quant_types.gguf.

For each type T in F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K:
  q.T    a (2, 512) tensor stored as T
  ref.T  gguf-py's `gguf.quants.dequantize` of q.T, stored as F32
gguf-py quantizes the first eight from seeded normal values. It has no
quantizer for Q4_K and Q6_K, so those blocks are seeded random bytes with
finite f16 scale fields (dequantization is defined for any bytes, and random
bytes reach every code path: all 6-bit scales/mins, all quant values).
The Rust test (crates/lm/tests/gguf_quant_types.rs) dequantizes q.T with
saelab and compares it with ref.T. Deterministic: two runs give the same file.

usage: VENV/bin/python scripts/reference/gen_gguf_quant_fixtures.py [--out DIR]
(VENV: pip install gguf numpy; versions used: gguf 0.19.0, numpy 2.x)
"""
import argparse
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

SHAPE = (2, 512)
QUANTIZED = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# (block bytes, [(offset, count) of f16 fields]) per 256-element block.
RANDOM_BYTES = {
    "Q4_K": (144, [(0, 2)]),        # d, dmin, scales[12], qs[128]
    "Q6_K": (210, [(208, 1)]),      # ql[128], qh[64], scales[16] (i8), d
}


def random_k_blocks(rng, name):
    size, halves = RANDOM_BYTES[name]
    n_blocks = SHAPE[0] * SHAPE[1] // 256
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for b in range(n_blocks):
        for off, count in halves:
            scale = rng.uniform(0.002, 0.05, size=count).astype(np.float16)
            raw[b, off:off + 2 * count] = np.frombuffer(scale.tobytes(), dtype=np.uint8)
    return raw.reshape(SHAPE[0], -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/lm"))
    out = Path(ap.parse_args().out) / "quant_types.gguf"
    rng = np.random.default_rng(20261128)
    w = gguf.GGUFWriter(str(out), arch="quanttest")
    stored = {}
    for name in QUANTIZED:
        data = (rng.standard_normal(SHAPE) * 0.7).astype(np.float32)
        qt = getattr(Q, name)
        stored[name] = (gguf.quants.quantize(data, qt), qt)
    for name in RANDOM_BYTES:
        stored[name] = (random_k_blocks(rng, name), getattr(Q, name))
    for name, (raw, qt) in stored.items():
        w.add_tensor(f"q.{name}", raw, raw_dtype=qt)
    # Dequantize what was stored, as gguf-py reads it back.
    for name, (raw, qt) in stored.items():
        ref = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(SHAPE)
        assert np.isfinite(ref).all(), name
        w.add_tensor(f"ref.{name}", ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = gguf.GGUFReader(str(out))
    types = {t.name: t.tensor_type.name for t in r.tensors}
    for name in stored:
        assert types[f"q.{name}"] == name, (name, types[f"q.{name}"])
    print(f"wrote {out} ({out.stat().st_size} bytes): {', '.join(stored)}")


if __name__ == "__main__":
    main()
