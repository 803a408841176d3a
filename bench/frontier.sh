#!/usr/bin/env bash
# Accuracy against generated tokens on one problem set: best-of-N (N = 1..32) by QVM and by
# majority vote, beam widths 2/4/8, Q* at 12/24/48/96 expansions, greedy. Two processes (one
# per core), then one table, the paired differences and the plot from their records.
#   bash bench/frontier.sh [SEEDS] [OUT_DIR] [N]   (default: the development split 900:901, all of it)
set -euo pipefail
SEEDS=${1:-900:901}; OUT=${2:-runs/frontier}; N=${3:-}
mkdir -p "$OUT"
A=greedy; B=""
for n in 1 2 4 8 16 32; do A="$A,best-of-n:$n"; B="$B,majority:$n"; done
B="${B#,},beam:2,beam:4,beam:8,qstar:12,qstar:24,qstar,qstar:96"
common=(--seeds "$SEEDS" --concurrency 64 --threads 1 --no-progress ${N:+--n "$N"})
qstar eval "${common[@]}" --methods "$A" --records "$OUT/a.jsonl" > "$OUT/a.log" 2>&1 &
first=$!
qstar eval "${common[@]}" --methods "$B" --records "$OUT/b.jsonl" > "$OUT/b.log" 2>&1
wait "$first"  # its failure stops the script too
qstar report "$OUT/a.jsonl" "$OUT/b.jsonl" --reference qstar_lam1_k4_min_fallback --plot "$OUT/frontier.png"
