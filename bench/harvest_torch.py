"""PyTorch/transformers reference for the harvest benchmark (bench/harvest.sh).

Same work as `cargo bench -p saelab-lm --bench forward`: a GPT-2-small-shaped
model (random weights) to blocks.8.hook_resid_pre and SmolLM2-135M (GGUF,
dequantized to f32 by transformers) to blocks.20.hook_resid_pre, batch 16x128,
float32, eager attention (SmolLM2 also with sdpa, transformers' default, under
--attn sdpa|both), tokens/s median and best over reps; then the same
model cast to bfloat16 entirely (`.to(torch.bfloat16)`: weights, residual
stream and norms in bf16 — the fast path a PyTorch user would take).

With --batches N each row is instead one timed run of N batches after a
warm-up (tokens/s over the whole run): bench/harvest_e2e.sh sets N so that
the forward covers as many tokens as the harvest it is compared with, and
both sides average over windows of similar length on a VM whose speed drifts.

Usage: VENV/bin/python bench/harvest_torch.py [--threads 2] [--reps 5] [--batches N] [--smollm2 PATH] [--attn eager|sdpa|both] [--skip-gpt2]
"""
import argparse
import os
import time

import torch
import transformers


def bench(name, fn, n_tokens, reps, threads, layer, batches=0):
    if batches:
        return bench_long(name, fn, n_tokens, batches, threads, layer)
    with torch.inference_mode():
        fn()
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            rates.append(n_tokens / (time.perf_counter() - t0))
    rates.sort()
    print(f"{name}: to blocks.{layer}.hook_resid_pre, batch 16x128, threads {threads}: "
          f"median {rates[len(rates) // 2]:.0f} tokens/s, best {rates[-1]:.0f} tokens/s ({reps} reps)")


def bench_long(name, fn, n_tokens, batches, threads, layer):
    with torch.inference_mode():
        fn()
        t0 = time.perf_counter()
        for _ in range(batches):
            fn()
        rate = batches * n_tokens / (time.perf_counter() - t0)
    print(f"{name}: to blocks.{layer}.hook_resid_pre, batch 16x128, threads {threads}: "
          f"{rate:.0f} tokens/s over {batches} batches ({batches * n_tokens} tokens)")


def smollm2_rows(a, attn, b, t):
    """The SmolLM2 rows, f32 then bf16, with attention `attn` (rows named
    "torch smollm2-135m[ bf16]", plus " sdpa" unless eager)."""
    folder, fname = os.path.split(a.smollm2)
    lm = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, dtype=torch.float32, attn_implementation=attn).eval()
    body = lm.model
    body.layers = body.layers[:20]
    ids = torch.randint(0, 49152, (b, t))
    tag = "" if attn == "eager" else f" {attn}"
    if a.precision in ("f32", "both"):
        bench(f"torch smollm2-135m{tag}", lambda: body(input_ids=ids).last_hidden_state, b * t, a.reps,
              a.threads, 20, a.batches)
    if a.precision in ("bf16", "both"):
        body = body.to(torch.bfloat16)
        bench(f"torch smollm2-135m bf16{tag}", lambda: body(input_ids=ids).last_hidden_state, b * t,
              a.reps, a.threads, 20, a.batches)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batches", type=int, default=0, help="one timed run of this many batches per row")
    ap.add_argument("--smollm2", default=None)
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa", "both"],
                    help="SmolLM2's attention: eager (as the GPT-2 rows), sdpa (transformers' default) or both")
    ap.add_argument("--skip-gpt2", action="store_true", help="only the SmolLM2 rows")
    ap.add_argument("--precision", default="both", choices=["f32", "bf16", "both"],
                    help="SmolLM2 rows in f32, bf16 or both (bf16 without bf16 hardware is slow)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, t = 16, 128
    if not a.skip_gpt2:
        # GPT-2 small shape, only the 8 blocks that precede blocks.8.hook_resid_pre.
        cfg = transformers.GPT2Config(n_layer=8, attn_implementation="eager")
        m = transformers.GPT2Model(cfg).eval()
        ids = torch.randint(0, 50257, (b, t))
        bench("torch gpt2-small-shaped", lambda: m(input_ids=ids).last_hidden_state, b * t, a.reps, a.threads, 8)
        m = m.to(torch.bfloat16)
        bench("torch gpt2-small-shaped bf16", lambda: m(input_ids=ids).last_hidden_state, b * t, a.reps, a.threads, 8)
        del m
    if a.smollm2 and os.path.exists(a.smollm2):
        for attn in (["eager", "sdpa"] if a.attn == "both" else [a.attn]):
            smollm2_rows(a, attn, b, t)
    else:
        print("torch smollm2: no --smollm2 file, skipped")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"MKL {torch.backends.mkl.is_available()}, oneDNN {torch.backends.mkldnn.is_available()}")


if __name__ == "__main__":
    main()
