#!/usr/bin/env bash
# `saelab harvest` end to end (tokenization, forward passes, shard writes and
# hashes: the binary's own "tokens/s" line) beside the transformers forward
# alone over as many tokens (TOKENS / 2048 batches of 16 x 128, one timed run
# after a warm-up), same machine, same thread count, alternated ROUNDS times:
# SmolLM2 to blocks.20.hook_resid_pre on the offline wiki corpus, 131,072
# tokens, f32 and bf16; transformers with eager attention and with sdpa (its
# default), each in both precisions. (The GPT-2-small shape has no offline
# weights, so it has no end to end row; bench/harvest.sh compares its
# forward.)
# BF16_TOKENS (default TOKENS) sets the bf16 rows' count on both sides: on a
# CPU without bf16 hardware torch's bf16 forward runs at a few percent of
# its f32 rate (Zen 3: 15 GFLOP/s), so a smaller count keeps the run short.
# Needs the venv of scripts/reference/README.md:
#   VENV=/path/to/venv [ROUNDS=2] [TOKENS=131072] [BF16_TOKENS=TOKENS] bench/harvest_e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
TOKENS=${TOKENS:-131072}
BF16_TOKENS=${BF16_TOKENS:-$TOKENS}
VENV=${VENV:-/work/venv}
ASSETS=${SAELAB_ASSETS:-$PWD/assets}
GGUF="$ASSETS/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
cargo build --release -q -p saelab
saelab() {
  rm -rf "$OUT/store"
  RAYON_NUM_THREADS=$THREADS SAELAB_ASSETS=$ASSETS target/release/saelab harvest \
    --tokens "$2" --hook blocks.20.hook_resid_pre --precision "$1" --out "$OUT/store" 2>&1 \
    | grep -oE '[0-9]+ tokens/s' | sed "s/^/saelab harvest $1: /"
}
torch() {
  OMP_NUM_THREADS=$THREADS "$VENV/bin/python" bench/harvest_torch.py --threads "$THREADS" \
    --batches $(($2 / 2048)) --attn both --smollm2 "$GGUF" --skip-gpt2 --precision "$1" 2>&1 \
    | grep -E '^torch smollm2'
}
for r in $(seq "$ROUNDS"); do
  echo "== round $r; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  saelab f32 "$TOKENS"
  saelab bf16 "$BF16_TOKENS"
  torch f32 "$TOKENS"
  torch bf16 "$BF16_TOKENS"
  saelab f32 "$TOKENS"
  saelab bf16 "$BF16_TOKENS"
done
