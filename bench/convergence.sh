#!/usr/bin/env bash
# Convergence of TopK seed pairs (issue #14, item 1): trains each recipe's
# seed pair (49, 50; same data order) on one store with snapshots at growing
# token budgets, then `saelab converge` measures the decoder-feature overlap
# (τ 0.7, both directions, MMCS, assignment R_H) and the training FVU at each
# snapshot: convergence.{json,md,svg} in OUT/converge.
#   bench/convergence.sh STORE HOOK OUT RECIPE...
# A RECIPE is  name:lr:tokens:batch[:extra train flags, comma-separated]  e.g.
#   lr3e-3:3e-3:12582912:1024   warm:3e-3:8388608:4096:--lr-warmup-steps,200
# Snapshots are taken at 1M, 2M, 4M, 8M, 16M, 32M tokens below the run's end.
# Runs resume (rerun the same command after a kill); finished ones are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=$1 HOOK=$2 OUT=$3
shift 3
BIN=${SAELAB:-${CARGO_TARGET_DIR:-target}/release/saelab}
[ -x "$BIN" ] || cargo build -q --release -p saelab
echo "machine: $(nproc) cores, $(lscpu | grep -m1 'Model name' | cut -d: -f2 | xargs), $(date -u +%FT%TZ)"
RUNS=()
for r in "$@"; do
  IFS=: read -r name lr tokens batch extra <<<"$r"
  snaps=()
  for s in 1048576 2097152 4194304 8388608 16777216 33554432; do
    [ "$s" -lt "$tokens" ] && snaps+=("$s")
  done
  IFS=, read -r -a flags <<<"${extra:-}"
  echo "== $name: lr $lr, $tokens tokens, batch $batch ${flags[*]:-}; start $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg)"
  "$BIN" train --store "$STORE" --hook "$HOOK" --arch topk --n "${N:-2304}" --k 16 \
    --seed 49 --seed 50 --lr "$lr" --tokens "$tokens" --batch "$batch" --b-dec-init geometric-median \
    --snapshot-tokens "$(IFS=,; echo "${snaps[*]}")" --log-every 8 \
    ${flags[@]+"${flags[@]}"} --out "$OUT/$name" 2>&1 | grep -v '^\s*$' | tail -2
  RUNS+=("$OUT/$name")
done
echo "== converge; $(date -u +%T)"
"$BIN" converge "${RUNS[@]}" --out "$OUT/converge"
echo "== end $(date -u +%T)"
