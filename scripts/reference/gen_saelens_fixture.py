#!/usr/bin/env python3
"""Writes tiny SAELens-v6-layout SAEs plus reference codes, for
crates/analysis/tests/eval_saelens_fixture.rs.

Output (default crates/analysis/tests/fixtures/saelens_tiny/):
  <name>/sae_weights.safetensors, <name>/cfg.json   one SAE per case
  reference.json   {"generator", "d_in", "d_sae", "inputs": [[f32; d]; B],
                    "cases": {name: {"codes": [[f32; n]; B],
                                     "recon": [[f32; d]; B], "note"}}}

Cases (d 16, n 48, float32):
  standard          standard/ReLU, apply_b_dec_to_input = true
  standard_no_bdec  standard/ReLU, apply_b_dec_to_input = false
  jumprelu          jumprelu, apply_b_dec_to_input = false (Gemma Scope style)
  topk_layer_norm   topk k 6, apply_b_dec_to_input = true,
                    normalize_activations = "layer_norm"

With sae-lens importable (`pip install sae-lens`, used for the committed
fixture: sae-lens 6.54.12) the SAEs are built, saved (`save_model`) and
reloaded (`SAE.load_from_disk`) by SAELens itself, the codes are its
`encode` and the reconstructions its `forward` (decode of the codes, with
the layer-norm undone). Without it, the same files are written with
safetensors + json and both come from a numpy transcription of SAELens 6.x
(`process_sae_in` -> `x @ W_enc + b_enc` -> activation; `codes @ W_dec +
b_dec`, times the input's std plus its mean for layer_norm), and
`generator` says so.

Weights are drawn so no pre-activation lies within 1e-3 of a decision
boundary (0, a JumpReLU threshold, the k-th / (k+1)-th TopK gap), so f32
rounding differences between implementations cannot flip a code.

Usage: gen_saelens_fixture.py [--out DIR] [--seed 7]
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

D, N, B, K = 16, 48, 8, 6
MARGIN = 1e-3

CASES = {
    # gpt2-small-res-jb style: its SAELens registry entry sets
    # model_from_pretrained_kwargs.center_writing_weights = true.
    "standard": dict(architecture="standard", apply_b_dec_to_input=True,
                     normalize_activations="none",
                     model_kwargs={"center_writing_weights": True}),
    "standard_no_bdec": dict(architecture="standard", apply_b_dec_to_input=False,
                             normalize_activations="none"),
    "jumprelu": dict(architecture="jumprelu", apply_b_dec_to_input=False,
                     normalize_activations="none"),
    "topk_layer_norm": dict(architecture="topk", apply_b_dec_to_input=True,
                            normalize_activations="layer_norm", k=K),
}


def draw(rng, arch):
    w = {
        "W_enc": rng.normal(0, 0.4, (D, N)).astype(np.float32),
        "W_dec": rng.normal(0, 0.3, (N, D)).astype(np.float32),
        "b_enc": rng.normal(-0.3, 0.3, N).astype(np.float32),
        "b_dec": rng.normal(0, 0.5, D).astype(np.float32),
    }
    if arch == "jumprelu":
        w["threshold"] = rng.uniform(0.05, 0.6, N).astype(np.float32)
    return w


# --- numpy transcription of SAELens 6.x encode (fallback reference) -------
def numpy_encode(case, w, x):
    x = x.astype(np.float64)
    if case["normalize_activations"] == "layer_norm":
        # run_time_activation_ln_in: mu, x - mu, std (unbiased), / (std + 1e-5)
        mu = x.mean(-1, keepdims=True)
        x = x - mu
        x = x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if case["apply_b_dec_to_input"]:
        x = x - w["b_dec"]
    pre = x @ w["W_enc"] + w["b_enc"]
    return pre, activate(case, w, pre)


def numpy_decode(case, w, x, codes):
    out = codes.astype(np.float64) @ w["W_dec"] + w["b_dec"]
    if case["normalize_activations"] == "layer_norm":
        # run_time_activation_ln_out: x * std + mu of the encoded input
        x = x.astype(np.float64)
        mu = x.mean(-1, keepdims=True)
        out = out * ((x - mu).std(-1, ddof=1, keepdims=True) + 1e-5) + mu
    return out


def activate(case, w, pre):
    arch = case["architecture"]
    if arch == "standard":
        return np.maximum(pre, 0)
    if arch == "jumprelu":
        return np.maximum(pre, 0) * (pre > w["threshold"])
    if arch == "topk":
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=-1)[:, : case["k"]]
        rows = np.arange(pre.shape[0])[:, None]
        out[rows, idx] = np.maximum(pre[rows, idx], 0)
        return out
    raise ValueError(arch)


def safe(case, w, pre):
    """No pre-activation within MARGIN of a decision boundary."""
    if np.min(np.abs(pre)) < MARGIN:
        return False
    if case["architecture"] == "jumprelu" and np.min(np.abs(pre - w["threshold"])) < MARGIN:
        return False
    if case["architecture"] == "topk":
        s = -np.sort(-pre, axis=-1)
        if np.min(s[:, K - 1] - s[:, K]) < MARGIN:
            return False
    # Every case should have some firing and some silent latents.
    acts = activate(case, w, pre)
    return 0 < np.count_nonzero(acts) < acts.size


def extra_meta(case):
    if "model_kwargs" in case:
        return {"model_from_pretrained_kwargs": case["model_kwargs"]}
    return {}


def write_plain(dirp, case, w):
    from safetensors.numpy import save_file

    save_file({k: v for k, v in w.items()}, str(dirp / "sae_weights.safetensors"))
    cfg = {
        "d_in": D, "d_sae": N, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": case["apply_b_dec_to_input"],
        "normalize_activations": case["normalize_activations"],
        "reshape_activations": "none",
        "metadata": {"model_name": "tiny", "hook_name": "blocks.0.hook_resid_pre",
                     "context_size": 8, "prepend_bos": True, **extra_meta(case)},
        "architecture": case["architecture"],
    }
    if "k" in case:
        cfg["k"] = case["k"]
        cfg["rescale_acts_by_decoder_norm"] = False
    (dirp / "cfg.json").write_text(json.dumps(cfg))


def saelens_write_and_encode(dirp, case, w, x):
    import torch
    from sae_lens import SAE, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, \
        StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    common = dict(d_in=D, d_sae=N, dtype="float32", device="cpu",
                  apply_b_dec_to_input=case["apply_b_dec_to_input"],
                  normalize_activations=case["normalize_activations"],
                  metadata=SAEMetadata(model_name="tiny",
                                       hook_name="blocks.0.hook_resid_pre",
                                       context_size=8, prepend_bos=True,
                                       **extra_meta(case)))
    arch = case["architecture"]
    if arch == "standard":
        sae = StandardSAE(StandardSAEConfig(**common))
    elif arch == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(**common))
    else:
        sae = TopKSAE(TopKSAEConfig(k=case["k"], **common))
    with torch.no_grad():
        for k, v in w.items():
            getattr(sae, k).copy_(torch.from_numpy(v))
    sae.save_model(dirp)
    loaded = SAE.load_from_disk(dirp)
    with torch.no_grad():
        codes = loaded.encode(torch.from_numpy(x)).numpy()
        recon = loaded(torch.from_numpy(x)).numpy()
    return codes, recon


def main():
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parents[2]
    ap.add_argument("--out", default=root / "crates/analysis/tests/fixtures/saelens_tiny")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    try:
        import sae_lens

        generator = f"sae-lens {sae_lens.__version__} (save_model, load_from_disk, encode, forward)"
        use_saelens = True
    except ImportError:
        generator = "numpy transcription of SAELens 6.x encode and decode (sae-lens not installed)"
        use_saelens = False

    rng = np.random.default_rng(args.seed)
    # Residual-like inputs: an offset (so b_dec / centring matter) plus noise.
    x = (rng.normal(0, 1.5, (B, D)) + rng.normal(0, 2.0, D)).astype(np.float32)
    ref = {"generator": generator, "d_in": D, "d_sae": N,
           "inputs": x.tolist(), "cases": {}}
    for name, case in CASES.items():
        for _ in range(1000):
            w = draw(rng, case["architecture"])
            pre, codes_np = numpy_encode(case, w, x)
            if safe(case, w, pre):
                break
        else:
            raise RuntimeError(f"no safe draw for {name}")
        dirp = out / name
        dirp.mkdir()
        recon_np = numpy_decode(case, w, x, codes_np)
        if use_saelens:
            codes, recon = saelens_write_and_encode(dirp, case, w, x)
            # The transcription must agree with SAELens itself.
            assert np.allclose(codes, codes_np, atol=1e-4), name
            assert np.allclose(recon, recon_np, atol=1e-4), name
        else:
            write_plain(dirp, case, w)
            codes, recon = codes_np, recon_np
        ref["cases"][name] = {
            "codes": np.asarray(codes, dtype=np.float32).tolist(),
            "recon": np.asarray(recon, dtype=np.float32).tolist(),
            "nonzeros": int(np.count_nonzero(codes)),
            "config": case,
        }
        print(f"{name}: {np.count_nonzero(codes)} nonzeros of {codes.size}")
    (out / "reference.json").write_text(json.dumps(ref, indent=1))
    print(f"wrote {out} with {generator}")


if __name__ == "__main__":
    main()
