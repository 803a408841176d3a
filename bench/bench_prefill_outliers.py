"""One new prompt among cached children: HFPolicy's prefill with the outlier prefilled on its own
first (as shipped) vs one padded batch (every row padded to the prompt's length, as before).

This is the round a scheduler runs whenever a problem is admitted while others are mid-search
(more problems than --concurrency): the children need one token each, the new prompt all of it.
The model has SmolLM2-135M's shape (30 layers, width 576) with random weights, so nothing is
downloaded; proposals are one greedy token, so the time is the prefill's. CPU time, interleaved.

    python bench/bench_prefill_outliers.py [--children 31] [--prompt 250] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from qstar_native.policy import HFPolicy


class Tok:
    eos_token_id = 0

    def decode(self, ids):
        return "".join("\n" if i == 10 else "a" for i in ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=int, default=31)
    ap.add_argument("--prompt", type=int, default=250, help="tokens of each prompt")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True, eos_token_id=0)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"padded": [], "outlier first": []}
    for rep in range(args.repeats):
        for mode in (("padded", "outlier first") if rep % 2 == 0 else ("outlier first", "padded")):
            policy = HFPolicy(model, Tok(), num_candidates=1, temperature=0.0, max_step_tokens=1)
            if mode == "padded":
                policy._warm_outliers = lambda seqs, pins: np.zeros(len(seqs), np.int64)  # the batch as one padded prefill
            prompt = rng.integers(11, 49152, args.prompt).astype(np.int32)
            children = [np.concatenate([prompt, rng.integers(11, 49152, 20).astype(np.int32)]) for _ in range(args.children)]
            policy.forward_logits(children)  # cached, as a search's children are
            new = rng.integers(11, 49152, args.prompt).astype(np.int32)
            start = time.process_time()
            policy.propose([*children, new])
            times[mode].append(time.process_time() - start)
    a, b = statistics.median(times["padded"]), statistics.median(times["outlier first"])
    print(f"{args.children} cached children + 1 new prompt of {args.prompt} tokens, SmolLM2-135M shape, {args.threads} threads, "
          f"{args.repeats} repeats (CPU s, median)")  # fmt: skip
    print(f"  padded batch prefill : {a:.3f} s  {sorted(round(t, 3) for t in times['padded'])}")
    print(f"  outlier first        : {b:.3f} s  {sorted(round(t, 3) for t in times['outlier first'])}")
    print(f"  ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()
