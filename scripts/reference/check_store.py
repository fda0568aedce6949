#!/usr/bin/env python3
"""Cross-check saelab activation stores with the reference `safetensors` package.

Not used by saelab at run time, and not needed by the Rust test suite.

Usage:
  # 1. let the Rust test dump stores + the values its reader decoded
  SAELAB_STORE_DUMP_DIR=/tmp/store-xcheck \
      cargo test -p saelab-data store::tests::dump_for_python_cross_check
  # 2. compare
  python scripts/reference/check_store.py /tmp/store-xcheck
  # or just inspect any store directory
  python scripts/reference/check_store.py path/to/store
  # 3. record what Python read (after a passing compare) as the fixture the
  #    Rust test `store::tests::python_view_of_the_stores` checks in CI
  python scripts/reference/check_store.py /tmp/store-xcheck \
      --record tests/fixtures/store/python_view.json

Shards are loaded with `safetensors.numpy.load_file` (F32/F16). numpy has no
bfloat16, so BF16 shards are loaded with `safetensors.torch.load_file` and,
independently, decoded by hand from the raw bytes (bf16 = high half of f32).
"""

import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raw_tensors(path: Path) -> dict:
    """Parse the safetensors header by hand; return name -> (dtype, shape, bytes)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        out[name] = (info["dtype"], tuple(info["shape"]), data[base + s : base + e])
    return out


def load_shard(path: Path, dtype: str) -> dict:
    """All tensors of a shard as numpy (activations as float32)."""
    if dtype != "bf16":
        return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in load_np(str(path)).items()}
    # Independent decode of the raw bytes: bf16 bits are the top 16 bits of f32.
    manual = {}
    for name, (dt, shape, raw) in raw_tensors(path).items():
        if dt == "BF16":
            manual[name] = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            manual[name] = np.frombuffer(raw, dtype={"I32": "<i4", "F32": "<f4"}[dt]).reshape(shape)
    try:
        from safetensors.torch import load_file as load_pt
    except ImportError:  # no torch in the venv: the manual decode alone
        return manual
    pt = load_pt(str(path))
    out = {k: (v.float().numpy() if v.is_floating_point() else v.numpy()) for k, v in pt.items()}
    for name, m in manual.items():
        if not np.array_equal(m, out[name]):
            raise AssertionError(f"{path.name}/{name}: torch and manual decodes differ")
    return out


def check_manifest(store: Path) -> dict:
    m = json.loads((store / "manifest.json").read_text())
    assert m["format"] == "saelab-activation-store", m["format"]
    assert m["format_version"] == 1, m["format_version"]
    spec = m["spec"]
    rows = 0
    for s in m["shards"]:
        got = sha256(store / s["file"])
        if got != s["sha256"]:
            raise AssertionError(f"{s['file']}: checksum mismatch (expected {s['sha256']}, got {got})")
        rows += s["rows"]
    assert rows == m["rows"], (rows, m["rows"])
    assert m["tokens"] == rows * spec["seq_len"]
    return m


def inspect(store: Path) -> None:
    m = check_manifest(store)
    spec = m["spec"]
    print(f"{store}: {m['rows']} rows x {spec['seq_len']} tokens, d {spec['d']}, {spec['dtype']}, "
          f"hooks {spec['hooks']}, complete={m['complete']}, checksums OK")
    for s in m["shards"]:
        t = load_shard(store / s["file"], spec["dtype"])
        assert t["tokens"].dtype == np.int32 and t["tokens"].shape == (s["rows"], spec["seq_len"])
        desc = ", ".join(
            f"{h}: {t[h].shape} mean {t[h].mean():+.4f} std {t[h].std():.4f}" for h in spec["hooks"]
        )
        print(f"  {s['file']}: tokens {t['tokens'].shape}; {desc}")


def compare(dump: Path) -> int:
    expected = json.loads((dump / "expected.json").read_text())
    failures = 0
    for dtype, exp in expected.items():
        store = Path(exp["dir"])
        m = check_manifest(store)
        assert m["spec"]["dtype"] == dtype
        for sh in exp["shards"]:
            t = load_shard(store / sh["file"], dtype)
            problems = []
            tok = t["tokens"]
            if tok.dtype != np.int32:
                problems.append(f"tokens dtype {tok.dtype}")
            if int(tok.astype(np.int64).sum()) != sh["tokens_sum"]:
                problems.append("tokens sum")
            if tok[0].tolist() != sh["tokens_first_row"]:
                problems.append("tokens first row")
            sums = []
            for hook, h in sh["hooks"].items():
                a = t[hook]
                if list(a.shape) != h["shape"]:
                    problems.append(f"{hook} shape {a.shape} vs {h['shape']}")
                    continue
                a64 = a.astype(np.float64)
                s, ss = a64.sum(), (a64 * a64).sum()
                if not np.isclose(s, h["sum"], rtol=1e-9, atol=1e-9):
                    problems.append(f"{hook} sum {s!r} vs {h['sum']!r}")
                if not np.isclose(ss, h["sumsq"], rtol=1e-9, atol=1e-9):
                    problems.append(f"{hook} sumsq {ss!r} vs {h['sumsq']!r}")
                flat = a.reshape(-1, a.shape[-1])
                if not np.array_equal(flat[0], np.array(h["first_vector"], dtype=np.float32)):
                    problems.append(f"{hook} first vector")
                if not np.array_equal(flat[-1], np.array(h["last_vector"], dtype=np.float32)):
                    problems.append(f"{hook} last vector")
                # Independent rounding of the f32 source values (numpy f16
                # cast; bf16 round-to-nearest-even by hand).
                src = np.array(h["source_first_vector"], dtype=np.float32)
                if dtype == "f16":
                    src = src.astype(np.float16).astype(np.float32)
                elif dtype == "bf16":
                    bits = src.view(np.uint32).astype(np.uint64)
                    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
                    src = bits.astype(np.uint32).view(np.float32)
                if not np.array_equal(flat[0], src):
                    problems.append(f"{hook} first vector is not the {dtype} rounding of its f32 source")
                sums.append(f"{s:+.6f}")
            status = "OK" if not problems else "FAIL: " + "; ".join(problems)
            failures += bool(problems)
            print(f"{dtype:5} {sh['file']}: tokens {tuple(tok.shape)} {tok.dtype}, "
                  f"hook sums {', '.join(sums)} ... {status}")
    print("ALL OK" if failures == 0 else f"{failures} shard(s) FAILED")
    return 1 if failures else 0


def record(dump: Path, out: Path) -> None:
    """Python's view of the dumped stores: file hashes and decoded values."""
    expected = json.loads((dump / "expected.json").read_text())
    view = {}
    for dtype in expected:
        store = dump / f"store-{dtype}"
        m = check_manifest(store)
        shards = []
        for s in m["shards"]:
            t = load_shard(store / s["file"], dtype)
            hooks = {}
            for hook in m["spec"]["hooks"]:
                a = t[hook]
                a64 = a.astype(np.float64)
                flat = a.reshape(-1, a.shape[-1])
                hooks[hook] = {
                    "shape": list(a.shape),
                    "sum": float(a64.sum()),
                    "sumsq": float((a64 * a64).sum()),
                    "first_vector": [float(x) for x in flat[0]],
                    "last_vector": [float(x) for x in flat[-1]],
                }
            tok = t["tokens"]
            shards.append({
                "file": s["file"],
                "sha256": sha256(store / s["file"]),
                "tokens_sum": int(tok.astype(np.int64).sum()),
                "tokens_first_row": tok[0].tolist(),
                "hooks": hooks,
            })
        view[dtype] = {"manifest_sha256": sha256(store / "manifest.json"), "shards": shards}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(view, indent=1, sort_keys=True) + "\n")
    print(f"recorded {out}")


def main() -> int:
    args = sys.argv[1:]
    rec = None
    if "--record" in args:
        i = args.index("--record")
        rec = Path(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print(__doc__)
        return 2
    path = Path(args[0])
    if (path / "expected.json").exists():
        rc = compare(path)
        if rc == 0 and rec is not None:
            record(path, rec)
        return rc
    inspect(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
