#!/usr/bin/env bash
# Rebuilds python/qstar_native/data/default_qvm, the embedded default policy's Q-value model:
# best-of-rollouts labels on GSM-Symbolic seeds 2000..2003 (disjoint from the policy's training
# seeds 1000..1435 and from the held-out seeds 0..999; problems whose question also occurs in seeds
# 0..19 are dropped), in the calculator setting the default search uses, then an MLP head on the
# frozen policy's final hidden states. About 10 + 1 minutes on one CPU thread.
#   bash scripts/make_default_qvm.sh [LABELS_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
labels=${1:-labels_calc_2000_2004.jsonl}
qstar label --seeds 2000:2004 --calculator on --trajectories 4 --rollouts 4 --temperature 0.7 --seed 0 --threads 1 --out "$labels"
qstar train-qvm --labels "$labels" --seeds 2000:2004 --head mlp --width 32 --lr 1e-3 --seed 0 --threads 1 \
    --out python/qstar_native/data/default_qvm
