"""Cross-check a harvested SmolLM2 store against HF transformers.

Reads the first rows of shard 0 of a store written by `saelab harvest` on the
SmolLM2 GGUF, runs transformers (GGUF dequantized to f32) on the stored token
ids, and compares the stored residuals at every hook of the store.

Usage: VENV/bin/python scripts/reference/check_harvest_vs_transformers.py STORE GGUF [ROWS]
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file


def main():
    store, gguf = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    man = json.load(open(os.path.join(store, "manifest.json")))
    sh = load_file(os.path.join(store, man["shards"][0]["file"]))
    tokens = torch.tensor(sh["tokens"][:rows].astype(np.int64))
    folder, name = os.path.split(gguf)
    m = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.inference_mode():
        hs = m(input_ids=tokens, output_hidden_states=True).hidden_states
    worst = 0.0
    for hook in man["spec"]["hooks"]:
        layer, site = hook.split(".")[1], hook.split(".")[2]
        assert site == "hook_resid_pre", "this check handles resid_pre hooks"
        want = hs[int(layer)].numpy()
        got = sh[hook][:rows].astype(np.float32)
        err = np.abs(got - want).max() / np.abs(want).max()
        worst = max(worst, err)
        print(f"{hook}: max|diff|/max|ref| = {err:.2e} over {rows} rows x {tokens.shape[1]} tokens")
    print("OK" if worst <= 1e-3 else "MISMATCH")


if __name__ == "__main__":
    main()
