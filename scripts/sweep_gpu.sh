#!/usr/bin/env bash
# Hyperparameter exploration on a GPU box (issue 6 groundwork): several small configs trained in
# parallel on one GPU, checkpoints evaluated greedily on 300 held-out problems (seeds 0:3).
# Results (train logs, eval JSON) go under $OUT. Token counts, not GPU time, are what transfer to CPU.
set -u
OUT=${OUT:-/tmp/sweep_out}; mkdir -p "$OUT"
CACHE=/tmp/gsm_train_1000_1436.jsonl
T0=$(date +%s)
python -c "
import sys; sys.path.insert(0,'scripts'); from train_policy import load_instances
print(len(load_instances(range(1000,1436), 16, '$CACHE')))" || exit 1
echo "data ready $(( $(date +%s) - T0 ))s"
common="--train-seeds 1000:1436 --data-cache $CACHE --device cuda --bf16 off --threads 1 --minutes 2.2 --log-every 50"
run() { name=$1; shift; python scripts/train_policy.py --out "$OUT/$name" $common "$@" > "$OUT/$name.log" 2>&1 & }
run A_h256L4_b32   --hidden 256 --layers 4 --batch-size 32 --lr 2e-3 --steps 2000 --save-every 500
run B_h128L4_b32   --hidden 128 --layers 4 --heads 4 --batch-size 32 --lr 3e-3 --steps 2000 --save-every 500
run C_h128L4_b16   --hidden 128 --layers 4 --heads 4 --batch-size 16 --lr 3e-3 --steps 3000 --save-every 750
run D_h192L4_b16   --hidden 192 --layers 4 --heads 4 --batch-size 16 --lr 3e-3 --steps 3000 --save-every 750
run E_h128L2_b16   --hidden 128 --layers 2 --heads 4 --batch-size 16 --lr 3e-3 --steps 3000 --save-every 750
run F_h256L4_rev   --hidden 256 --layers 4 --batch-size 32 --lr 2e-3 --steps 2000 --save-every 500 --reverse-results
wait
echo "train done $(( $(date +%s) - T0 ))s"
for d in "$OUT"/*/ "$OUT"/*/step_*/; do
  [ -f "$d/model.safetensors" ] || continue
  rev=""; case "$d" in *rev*) rev="--reverse-results";; esac
  tag=$(echo "$d" | sed "s#$OUT/##; s#/#_#g")
  python scripts/eval_greedy.py --model "$d" --seeds 0:3 --device cuda --batch-size 100 --show 0 $rev --json "$OUT/eval_$tag.json" > "$OUT/eval_$tag.log" 2>&1 &
done
wait
echo "eval done $(( $(date +%s) - T0 ))s"
for f in "$OUT"/eval_*.log; do echo "$f: $(grep greedy: $f)"; done
for d in "$OUT"/*/; do [ -f "$d/train_log.json" ] && python -c "
import json,sys; l=json.load(open('$d/train_log.json')); print('$d', l['params'], l['steps'], l['tokens'], round(l['final_loss'],3), l['tokens_per_s'], l['stop_reason'])"; done
find "$OUT" -name "*.safetensors" -delete
