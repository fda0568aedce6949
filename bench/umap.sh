#!/usr/bin/env bash
# UMAP of decoder directions (study Fig 18): saelab's umap_decoder example and
# umap-learn (scripts/reference/umap_trustworthiness.py) on the same rows, side
# by side, with scikit-learn's trustworthiness (k 10) of both embeddings.
#   [VENV=/work/venv] [SEED=49] bench/umap.sh SAE_DIR
#   [VENV=/work/venv] [SEED=49] bench/umap.sh --random N D   # seeded random unit rows
# The venv needs numpy scipy scikit-learn umap-learn. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/work/venv}
SEED=${SEED:-49}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(lscpu | grep -m1 'Model name' | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
cargo build -q --release -p saelab-analysis --example umap_decoder
BIN=$TARGET/release/examples/umap_decoder
if [ "${1:-}" = "--random" ]; then
  INPUT=(--random "$2" "$3" --rows-out "$OUT/rows.npy")
  SRC=$OUT/rows.npy
else
  INPUT=("$1")
  SRC=$1
fi
echo "== saelab; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "${INPUT[@]}" "$OUT/ours.npy" --seed "$SEED"
echo "== umap-learn; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$VENV/bin/python" scripts/reference/umap_trustworthiness.py "$SRC" "$OUT/ours.npy" --seed "$SEED" 2>&1 \
  | grep -v -i -e warn -e '^ *$'
echo "== end; load: $(cut -d' ' -f1-3 /proc/loadavg)"
