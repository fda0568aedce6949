#!/usr/bin/env bash
# Dense-product rate, saelab (f32 `ops::matmul`, every bf16 path this CPU
# has: AMX, AVX512_BF16) and PyTorch (f32 and bf16 matmul, MKL / oneDNN)
# side by side in one run, same thread count, on the forward-pass and SAE
# encoder shapes. Needs a venv with torch:
#   VENV=/work/venv [THREADS=2] [REPS=7] bench/gemm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
REPS=${REPS:-7}
VENV=${VENV:-/work/venv}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
echo "flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | xargs)"
cargo bench -q -p saelab-lm --bench bf16 --no-run
echo "== saelab; load: $(cut -d' ' -f1-3 /proc/loadavg)"
RAYON_NUM_THREADS=$THREADS BENCH_REPS=$REPS cargo bench -q -p saelab-lm --bench bf16
echo "== torch; load: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=$THREADS "$VENV/bin/python" bench/gemm_torch.py --threads "$THREADS" --reps "$REPS"
echo "== end; load: $(cut -d' ' -f1-3 /proc/loadavg)"
