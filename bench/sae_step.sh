#!/usr/bin/env bash
# SAE training-step benchmark (issue #3): saelab and PyTorch (EleutherAI
# sparsify + a dense PyTorch TopK step) side by side in one run, same thread
# count, each side ROUNDS times interleaved, with the load average before each.
# Needs a venv with torch and `pip install eai-sparsify`:
#   VENV=/work/venv [THREADS=2] [REPS=5] [ROUNDS=2] [IMPLS=sparsify,dense] bench/sae_step.sh
# (IMPLS=sparsify,sparsify-bf16 adds sparsify under bf16 autocast, the
# reference for saelab's bf16 encoder.)
# (CARGO_TARGET_DIR is honoured as usual.)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-2}
IMPLS=${IMPLS:-sparsify,dense}
VENV=${VENV:-/work/venv}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
cargo bench -q -p saelab-sae --bench step --no-run 2>/dev/null
for r in $(seq "$ROUNDS"); do
  echo "== round $r: saelab; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  RAYON_NUM_THREADS=$THREADS cargo bench -q -p saelab-sae --bench step 2>/dev/null
  echo "== round $r: torch; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  OMP_NUM_THREADS=$THREADS "$VENV/bin/python" bench/sae_step_torch.py --threads "$THREADS" --reps "$REPS" --impls "$IMPLS" 2>&1
done
echo "== end; load: $(cut -d' ' -f1-3 /proc/loadavg)"
