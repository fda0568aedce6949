#!/usr/bin/env bash
# Harvest-forward throughput, saelab and PyTorch side by side in one run, same
# thread count. Needs a Python venv with torch + transformers + gguf (see
# scripts/reference/README.md): VENV=/path/to/venv [ROUNDS=1] bench/harvest.sh
# ROUNDS > 1 alternates the two sides that many times (this VM's speed
# drifts by ±10 % over minutes: compare each round's own ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-1}
VENV=${VENV:-/work/venv}
ASSETS=${SAELAB_ASSETS:-$PWD/assets}
GGUF="$ASSETS/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
cargo build --release -q -p saelab-lm --benches ${FEATURES:+--features $FEATURES}
for r in $(seq "$ROUNDS"); do
  echo "== round $r; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  RAYON_NUM_THREADS=$THREADS BENCH_REPS=$REPS SAELAB_ASSETS=$ASSETS \
    cargo bench -q -p saelab-lm --bench forward ${FEATURES:+--features $FEATURES} 2>/dev/null | grep -E "^saelab|skipped"
  OMP_NUM_THREADS=$THREADS "$VENV/bin/python" bench/harvest_torch.py --threads "$THREADS" --reps "$REPS" --smollm2 "$GGUF" 2>&1 \
    | grep -E '^torch'
done
