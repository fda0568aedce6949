"""PyTorch side of the SAE training-step benchmark (issue #3; bench/sae_step.sh).

Same problem as `cargo bench -p saelab-sae --bench step`: one TopK training
step, d 768, k 16, batch 4096, n 3072 and 12288, AuxK off and on, float32,
CPU, a fixed thread count (default 2). Two PyTorch implementations:

  sparsify-bf16  the same with the forward under torch.autocast("cpu",
            bfloat16) (oneDNN AVX512_BF16 on this CPU); not in the default
            --impls.
  sparsify  EleutherAI sparsify (PyPI `eai-sparsify`): its SparseCoder, one
            step exactly as its Trainer does it for loss_fn "fvu" with one
            micro-batch: set_decoder_norm_to_unit_norm, forward(x, y=x,
            dead_mask, total_variance) -> fvu (+ auxk_alpha * auxk_loss),
            backward, remove_gradient_parallel_to_decoder_directions,
            torch.optim.Adam step (lr 3e-4; what its trainer falls back to
            without bitsandbytes), zero_grad, dead-latent bookkeeping.
            On CPU it must use its eager sparse decoder (nn.functional
            .embedding_bag); the Triton decoder is disabled with
            SPARSIFY_DISABLE_TRITON=1 (the CUDA torch wheel ships Triton, but
            its kernels do not run on CPU). Its encoder is FusedEncoder:
            dense F.linear + topk forward, sparse index_add backward.
  dense     the study's TopK step written from SPEC.md §2.1/§2.3 the way the
            BatchTopK codebase does it (everything dense): input unit norm,
            a = ReLU((x~ - b_dec) W_enc + b_enc), top-k, scatter into dense
            codes, x~^ = z W_dec + b_dec, MSE (+ AuxK: top-k_a over the dead
            latents' dense columns, (1/32) * mean(e^ - r)^2), backward,
            decoder unit-norm + parallel-gradient removal, Adam (lr 3e-4,
            betas (0.9, 0.99)), dead counters.

AuxK "on" mirrors the Rust bench: every odd latent is made dead (its encoder
row scaled by 0.25 so it rarely wins the top-k but keeps positive
pre-activations; its dead counter set past the threshold). sparsify's k_aux is
d/2 = 384 with auxk_alpha 1/32 (the paper's); the dense step's k_aux is
min(512, |dead|) = 512 as in SPEC §2.1. Inputs: uniform(-1, 1), seeded, a
fresh batch every step (warm-up and timed steps use different batches).

Usage:
  OMP_NUM_THREADS=2 /work/venv/bin/python bench/sae_step_torch.py \
      [--threads 2] [--reps 5] [--warmup 2] [--ns 3072,12288] \
      [--impls sparsify,dense] [--aux off,on]
Prints one line per case (median and best of --reps timed steps after
--warmup steps) and a markdown table at the end.
Needs: torch 2.x, `pip install eai-sparsify` (tested with eai-sparsify 1.3.3,
torch 2.15.0).
"""
import argparse
import os
import platform
import time

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")

import torch  # noqa: E402

D, K, B = 768, 16, 4096


def batches(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(B, D, generator=g) * 2 - 1 for _ in range(count)]


# --------------------------------------------------------------------- sparsify
def sparsify_stepper(n, aux, autocast=False):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(49)
    sae = SparseCoder(D, SparseCoderConfig(num_latents=n, k=K), device="cpu",
                      dtype=torch.float32)
    opt = torch.optim.Adam(sae.parameters(), lr=3e-4)
    auxk_alpha = 1 / 32 if aux else 0.0
    threshold = 10_000_000  # sparsify's default dead_feature_threshold (tokens)
    since_fired = torch.zeros(n, dtype=torch.long)
    did_fire = torch.zeros(n, dtype=torch.bool)
    if aux:
        with torch.no_grad():
            sae.encoder.weight[1::2] *= 0.25
        since_fired[1::2] = threshold + 1

    def step(x):
        # Trainer: keep W_dec unit-norm, dead mask, whole-batch variance.
        sae.set_decoder_norm_to_unit_norm()
        dead_mask = since_fired > threshold if auxk_alpha > 0 else None
        total_variance = (x - x.mean(0)).pow(2).sum()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = sae(x=x, y=x, dead_mask=dead_mask, total_variance=total_variance)
        did_fire[out.latent_indices.flatten()] = True
        fvu = float(out.fvu.detach())  # its logging sync
        if auxk_alpha > 0:
            float(out.auxk_loss.detach())
        loss = out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            since_fired.add_(x.shape[0])
            since_fired[did_fire] = 0
            did_fire.zero_()
        return fvu, float(dead_mask.float().mean()) if dead_mask is not None else 0.0

    return step


# ------------------------------------------------------------------------ dense
def dense_stepper(n, aux):
    torch.manual_seed(49)
    beta = (6.0 / n) ** 0.5
    w_enc = torch.empty(D, n).uniform_(-beta, beta)
    w_dec = w_enc.t().clone()
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    if aux:
        w_enc[:, 1::2] *= 0.25
    W_enc = torch.nn.Parameter(w_enc)
    W_dec = torch.nn.Parameter(w_dec)
    b_enc = torch.nn.Parameter(torch.zeros(n))
    b_dec = torch.nn.Parameter(torch.zeros(D))
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=3e-4, betas=(0.9, 0.99), eps=1e-8)
    dead_after, k_aux_max, aux_coeff = 5, 512, 1 / 32
    not_active = torch.zeros(n, dtype=torch.long)
    if aux:
        not_active[1::2] = dead_after

    def step(x):
        mu = x.mean(-1, keepdim=True)
        xc = x - mu
        xt = xc / (xc.std(-1, keepdim=True) + 1e-5)
        acts = torch.relu((xt - b_dec) @ W_enc + b_enc)
        top = torch.topk(acts, K, dim=-1)
        z = torch.zeros_like(acts).scatter(-1, top.indices, top.values)
        xhat = z @ W_dec + b_dec
        loss = (xhat - xt).pow(2).mean()
        dead = not_active >= dead_after
        n_dead = int(dead.sum())
        if aux and n_dead > 0:
            r = xt - xhat
            acts_d = acts[:, dead]
            ta = torch.topk(acts_d, min(k_aux_max, n_dead), dim=-1)
            za = torch.zeros_like(acts_d).scatter(-1, ta.indices, ta.values)
            ehat = za @ W_dec[dead]
            loss = loss + aux_coeff * (ehat - r).pow(2).mean()
        loss.backward()
        with torch.no_grad():
            wn = W_dec / W_dec.norm(dim=-1, keepdim=True)
            W_dec.grad -= (W_dec.grad * wn).sum(-1, keepdim=True) * wn
            W_dec.data = wn
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            fired = z.sum(0) > 0
            not_active.add_((~fired).long())
            not_active[fired] = 0
        return float(loss.detach()), n_dead / n

    return step


IMPLS = {
    "sparsify": sparsify_stepper,
    # The same step with the forward under torch.autocast(bfloat16), as
    # GPU trainers run it (compare with saelab --encoder-precision bf16).
    "sparsify-bf16": lambda n, aux: sparsify_stepper(n, aux, autocast=True),
    "dense": dense_stepper,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ns", default="3072,12288")
    ap.add_argument("--impls", default="sparsify,dense")
    ap.add_argument("--aux", default="off,on")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        from importlib.metadata import version
        sp_ver = version("eai-sparsify")
    except Exception:  # noqa: BLE001
        sp_ver = "not installed"
    print(f"torch {torch.__version__}, eai-sparsify {sp_ver}, python {platform.python_version()}, "
          f"threads {torch.get_num_threads()}, SPARSIFY_DISABLE_TRITON="
          f"{os.environ.get('SPARSIFY_DISABLE_TRITON')}, load {os.getloadavg()[0]:.2f}")
    print(f"d {D}, k {K}, batch {B}; median and best of {a.reps} steps after {a.warmup} warm-up")
    xs = batches(a.warmup + a.reps)
    rows = []
    for n in [int(v) for v in a.ns.split(",")]:
        for impl in a.impls.split(","):
            for aux in a.aux.split(","):
                step = IMPLS[impl](n, aux == "on")
                for x in xs[:a.warmup]:
                    step(x)
                times = []
                for x in xs[a.warmup:]:
                    t0 = time.perf_counter()
                    loss, dead = step(x)
                    times.append(time.perf_counter() - t0)
                times.sort()
                med, best = times[len(times) // 2], times[0]
                print(f"{impl:8s} n {n:>5}: TopK step, AuxK {aux:>3}: median {med * 1e3:.1f} ms = "
                      f"{B / med:.0f} tokens/s, best {best * 1e3:.1f} ms = {B / best:.0f} tokens/s "
                      f"(loss {loss:.4f}, dead fraction {dead:.2f})", flush=True)
                rows.append((impl, n, aux, med, best))
                del step
    print()
    print("| impl | n | AuxK | median ms | median tokens/s | best tokens/s |")
    print("|---|---|---|---|---|---|")
    for impl, n, aux, med, best in rows:
        print(f"| {impl} | {n} | {aux} | {med * 1e3:.0f} | {B / med:,.0f} | {B / best:,.0f} |")


if __name__ == "__main__":
    main()
