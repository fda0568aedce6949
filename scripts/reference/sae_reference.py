"""Reference trajectories for the saelab SAE trainer (crates/sae).

An independent PyTorch (float64, autograd) implementation written from
shared/design/SPEC.md §2: input unit normalization, TopK / BatchTopK /
JumpReLU / Matryoshka BatchTopK (nested prefix losses) / ReLU with
decoder-norm-weighted L1, AuxK (BatchTopK-codebase variant), decoder unit norm with gradient
projection, torch.optim.Adam. From the same f32 initial weights and the same
three batches it records the parameters after each of 3 Adam steps;
crates/sae/tests/reference.rs replays them in Rust. `study_topk.*` is TopK
as the study's own code (bartbussmann/BatchTopK) trains it, transcribed
line by line (see `run_study_code`).

Never needed at build or test time: the output fixture is committed.

    /work/venv/bin/python scripts/reference/sae_reference.py \
        --out tests/fixtures/sae/reference_trajectory.safetensors
"""

import argparse
import json

import numpy as np
import torch
from safetensors.numpy import save_file

D, N, B, K, STEPS = 16, 64, 8, 4, 3
LR, BETAS, EPS = 5e-3, (0.9, 0.99), 1e-8
K_AUX, AUX_COEFF, DEAD_AFTER = 8, 1.0 / 32.0, 1
JR_BANDWIDTH, JR_INIT, JR_LAMBDA = 0.05, 0.1, 0.01
EMA = 0.01
# Matryoshka prefix sizes: saelab's default for n 64 (n/16, n/16, n/8, n/4, rest).
GROUPS = [4, 4, 8, 16, 32]
RELU_L1 = 0.01


def normalize(x):
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    std = xc.std(-1, keepdim=True)  # unbiased
    return xc / (std + 1e-5)


class JumpReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, theta):
        ctx.save_for_backward(pre, theta)
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        kern = ((pre - theta).abs() / JR_BANDWIDTH < 0.5).to(pre.dtype)
        g_pre = g * (pre > theta)
        g_theta = (-(theta / JR_BANDWIDTH) * kern * g).sum(0)
        return g_pre, g_theta


class StepFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, theta):
        ctx.save_for_backward(pre, theta)
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        kern = ((pre - theta).abs() / JR_BANDWIDTH < 0.5).to(pre.dtype)
        return torch.zeros_like(pre), (-(1.0 / JR_BANDWIDTH) * kern * g).sum(0)


def run(arch, init, batches):
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    trained = [k for k in p if not (arch in ("topk", "batchtopk", "matryoshka") and k == "b_enc")]
    opt = torch.optim.Adam([p[k] for k in trained], lr=LR, betas=BETAS, eps=EPS)
    dead = torch.zeros(N)
    threshold = 0.0
    out = {}
    for step, xb in enumerate(batches):
        x = normalize(torch.tensor(xb, dtype=torch.float64))
        opt.zero_grad()
        if arch == "jumprelu":
            pre = x @ p["W_enc"] + p["b_enc"]
            theta = p["log_threshold"].exp()
            z = JumpReLUFn.apply(pre, theta)
            xh = z @ p["W_dec"] + p["b_dec"]
            l0 = StepFn.apply(pre, theta).sum(-1).mean()
            loss = (xh - x).pow(2).mean() + JR_LAMBDA * l0
        elif arch == "relu":
            f = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
            xh = f @ p["W_dec"] + p["b_dec"]
            l1 = (f * p["W_dec"].norm(dim=-1)).sum(-1).mean()
            loss = (xh - x).pow(2).mean() + RELU_L1 * l1
        else:
            pre = (x - p["b_dec"]) @ p["W_enc"]
            acts = torch.relu(pre)
            if arch == "topk":
                t = torch.topk(acts, K, dim=-1)
                z = torch.zeros_like(acts).scatter(-1, t.indices, t.values)
            else:
                t = torch.topk(acts.flatten(), K * x.shape[0])
                z = torch.zeros_like(acts.flatten()).scatter(-1, t.indices, t.values).reshape(acts.shape)
            xh = z @ p["W_dec"] + p["b_dec"]
            if arch == "matryoshka":
                # Mean over the nested prefixes of each prefix's MSE.
                ends = np.cumsum(GROUPS)
                loss = sum(
                    (z[:, :m] @ p["W_dec"][:m] + p["b_dec"] - x).pow(2).mean() for m in ends
                ) / len(ends)
            else:
                loss = (xh - x).pow(2).mean()
            fired = (z > 0).any(0)
            dead = torch.where(fired, torch.zeros_like(dead), dead + 1)
            dmask = dead >= DEAD_AFTER
            if dmask.any():
                r = x - xh  # not detached (BatchTopK codebase)
                ka = min(K_AUX, int(dmask.sum()))
                ad = acts[:, dmask]
                ta = torch.topk(ad, ka, dim=-1)
                za = torch.zeros_like(ad).scatter(-1, ta.indices, ta.values)
                e = za @ p["W_dec"][dmask]
                loss = loss + AUX_COEFF * (e - r).pow(2).mean()
            if arch in ("batchtopk", "matryoshka"):
                pos = z[z > 0]
                if pos.numel() > 0:
                    threshold = (1 - EMA) * threshold + EMA * float(pos.min().detach())
        loss.backward()
        with torch.no_grad():
            w = p["W_dec"]
            wn = w / w.norm(dim=-1, keepdim=True)
            w.grad -= (w.grad * wn).sum(-1, keepdim=True) * wn
            w.copy_(wn)
        opt.step()
        with torch.no_grad():
            p["W_dec"].copy_(p["W_dec"] / p["W_dec"].norm(dim=-1, keepdim=True))
        for k in p:
            out[f"{arch}.step{step + 1}.{k}"] = p[k].detach().numpy().astype(np.float32)
        out[f"{arch}.step{step + 1}.loss"] = np.array([float(loss.detach())], dtype=np.float32)
    if arch in ("batchtopk", "matryoshka"):
        out[f"{arch}.threshold"] = np.array([threshold], dtype=np.float32)
    return out


def run_study_code(init, batches):
    """TopK as the study's own code trains it: a float64 transcription of
    bartbussmann/BatchTopK at b454c16 (`sae.py`: BaseAutoencoder.preprocess_input,
    TopKSAE.forward / get_loss_dict / get_auxiliary_loss,
    make_decoder_weights_and_grad_unit_norm, update_inactive_features;
    `training.py`: loss.backward, clip_grad_norm_, the decoder constraint,
    optimizer.step over sae.parameters()), config `input_unit_norm` True,
    `l1_coeff` 0, `max_grad_norm` 1e5, with this file's k, k_aux, dead_after
    and Adam settings. Unlike `run`, W_dec is renormalized only before the
    step: the next forward sees the rows Adam moved."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    params = [p["b_dec"], p["b_enc"], p["W_enc"], p["W_dec"]]  # sae.parameters() order
    opt = torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS)
    not_active = torch.zeros(N, dtype=torch.float64)
    out = {}
    for step, xb in enumerate(batches):
        x = torch.tensor(xb, dtype=torch.float64)
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.std(dim=-1, keepdim=True) + 1e-5)
        acts = torch.relu((x - p["b_dec"]) @ p["W_enc"])
        t = torch.topk(acts, K, dim=-1)
        acts_topk = torch.zeros_like(acts).scatter(-1, t.indices, t.values)
        x_rec = acts_topk @ p["W_dec"] + p["b_dec"]
        # update_inactive_features, before the auxiliary loss
        not_active += (acts_topk.sum(0) == 0).to(not_active.dtype)
        not_active[acts_topk.sum(0) > 0] = 0
        l2 = (x_rec - x).pow(2).mean()
        l1 = 0.0 * acts_topk.abs().sum(-1).mean()
        dead = not_active >= DEAD_AFTER
        if dead.sum() > 0:
            residual = x - x_rec
            ta = torch.topk(acts[:, dead], min(K_AUX, int(dead.sum())), dim=-1)
            acts_aux = torch.zeros_like(acts[:, dead]).scatter(-1, ta.indices, ta.values)
            aux = AUX_COEFF * (acts_aux @ p["W_dec"][dead] - residual).pow(2).mean()
        else:
            aux = torch.tensor(0.0, dtype=torch.float64)
        loss = l2 + l1 + aux
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100000.0)
        with torch.no_grad():
            wn = p["W_dec"] / p["W_dec"].norm(dim=-1, keepdim=True)
            p["W_dec"].grad -= (p["W_dec"].grad * wn).sum(-1, keepdim=True) * wn
            p["W_dec"].data = wn
        opt.step()
        opt.zero_grad()
        for k in p:
            out[f"study_topk.step{step + 1}.{k}"] = p[k].detach().numpy().astype(np.float32)
        out[f"study_topk.step{step + 1}.loss"] = np.array([float(loss.detach())], dtype=np.float32)
        out[f"study_topk.step{step + 1}.aux"] = np.array([float(aux.detach())], dtype=np.float32)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/sae/reference_trajectory.safetensors")
    args = ap.parse_args()
    rng = np.random.default_rng(1234)
    beta = np.sqrt(6.0 / N)
    w_enc = rng.uniform(-beta, beta, size=(D, N)).astype(np.float32)
    w_dec = w_enc.T / np.linalg.norm(w_enc.T, axis=1, keepdims=True)
    init = {
        "W_enc": w_enc,
        "W_dec": np.ascontiguousarray(w_dec, dtype=np.float32),
        "b_enc": np.zeros(N, dtype=np.float32),
        "b_dec": np.zeros(D, dtype=np.float32),
    }
    # Rows with their own offset and scale, so the normalization matters.
    batches = [
        (rng.normal(size=(B, D)) * rng.uniform(0.5, 3.0, size=(B, 1)) + rng.normal(size=(B, 1))).astype(np.float32)
        for _ in range(STEPS)
    ]
    out = {f"init.{k}": v for k, v in init.items()}
    for i, xb in enumerate(batches):
        out[f"batch{i}"] = xb
    out.update(run("topk", init, batches))
    out.update(run("batchtopk", init, batches))
    out.update(run("matryoshka", init, batches))
    out.update(run("relu", init, batches))
    out.update(run_study_code(init, batches))
    jr = dict(init)
    jr["log_threshold"] = np.full(N, np.log(JR_INIT), dtype=np.float32)
    out["init.log_threshold"] = jr["log_threshold"]
    out.update(run("jumprelu", jr, batches))
    meta = {
        "config": json.dumps(
            dict(d=D, n=N, b=B, k=K, steps=STEPS, lr=LR, betas=BETAS, eps=EPS, k_aux=K_AUX,
                 aux_coeff=AUX_COEFF, dead_after=DEAD_AFTER, jr_bandwidth=JR_BANDWIDTH,
                 jr_init=JR_INIT, jr_lambda=JR_LAMBDA, ema=EMA, groups=GROUPS, relu_l1=RELU_L1,
                 torch=torch.__version__)
        )
    }
    # safetensors writes raw buffers: every array must be C-contiguous.
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, args.out, metadata=meta)


if __name__ == "__main__":
    main()
