#!/usr/bin/env bash
# Second GPU exploration (issue 6): replica of the chosen CPU config, and what more tokens buy.
set -u
OUT=${OUT:-/tmp/sweep_out2}; mkdir -p "$OUT"
CACHE=/tmp/gsm_train_1000_1436.jsonl
T0=$(date +%s)
python -c "
import sys; sys.path.insert(0,'scripts'); from train_policy import load_instances
print(len(load_instances(range(1000,1436), 16, '$CACHE')))" || exit 1
common="--train-seeds 1000:1436 --data-cache $CACHE --device cuda --bf16 off --threads 1 --minutes 3.1 --log-every 100"
run() { name=$1; shift; python scripts/train_policy.py --out "$OUT/$name" $common "$@" > "$OUT/$name.log" 2>&1 & }
run G_h128L4_b16_3300  --hidden 128 --layers 4 --heads 4 --batch-size 16 --lr 3e-3 --steps 3300
run J_h128L4_b16_lr6e3 --hidden 128 --layers 4 --heads 4 --batch-size 16 --lr 6e-3 --steps 3300
run H_h256L4_b32_4000  --hidden 256 --layers 4 --batch-size 32 --lr 2e-3 --steps 4000
run I_h256L4_rev_4000  --hidden 256 --layers 4 --batch-size 32 --lr 2e-3 --steps 4000 --reverse-results
wait
echo "train done $(( $(date +%s) - T0 ))s"
python scripts/eval_greedy.py --model "$OUT/G_h128L4_b16_3300" --seeds 0:3 --device cuda --batch-size 100 --show 0 --samples 8 --temperature 0.7 > "$OUT/eval_G.log" 2>&1 &
python scripts/eval_greedy.py --model "$OUT/J_h128L4_b16_lr6e3" --seeds 0:3 --device cuda --batch-size 100 --show 0 > "$OUT/eval_J.log" 2>&1 &
python scripts/eval_greedy.py --model "$OUT/H_h256L4_b32_4000" --seeds 0:3 --device cuda --batch-size 100 --show 0 > "$OUT/eval_H.log" 2>&1 &
python scripts/eval_greedy.py --model "$OUT/I_h256L4_rev_4000" --seeds 0:3 --device cuda --batch-size 100 --show 0 --reverse-results > "$OUT/eval_I.log" 2>&1 &
wait
echo "eval done $(( $(date +%s) - T0 ))s"
for f in "$OUT"/eval_*.log; do echo "$f:"; grep -E "greedy:|pass@|majority@" $f; done
for d in "$OUT"/*/; do [ -f "$d/train_log.json" ] && python -c "
import json; l=json.load(open('$d/train_log.json')); print('$d', l['params'], l['steps'], l['tokens'], round(l['final_loss'],3), l['tokens_per_s'], l['stop_reason'])"; done
find "$OUT" -name "*.safetensors" -delete
