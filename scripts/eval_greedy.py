#!/usr/bin/env python
"""Greedy accuracy (and optionally pass@k / majority@k) of a policy on held-out GSM-Symbolic problems.

Problems: every template at each seed of ``--seeds`` (default 0:3, i.e. 300 problems; seeds
0..999 are reserved for evaluation and ``scripts/train_policy.py`` drops any training instance
whose question text equals a question of seeds 0..19). Prompt = ``question + "\\n"``; the answer
after the last ``####`` is checked with ``GsmSymbolic.is_correct``. Generation is batched
``model.generate`` with left padding. Prints accuracy with a Wilson 95% interval.

    python scripts/eval_greedy.py --model python/qstar_native/data/default_policy --seeds 0:3
    python scripts/eval_greedy.py --model DIR --seeds 0:3 --samples 8 --temperature 0.7   # + pass@8, maj@8
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "scripts"))


def wilson(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def fmt(name: str, correct: int, n: int) -> str:
    lo, hi = wilson(correct, n)
    return f"{name}: {correct}/{n} = {100 * correct / n:.1f}% (Wilson 95% CI {100 * lo:.1f}-{100 * hi:.1f}%)"


def generate(model, tokenizer, prompts: list[str], *, batch_size: int, max_new_tokens: int, ctx: int,
             samples: int = 1, temperature: float = 0.0, device: str = "cpu") -> list[list[str]]:
    import torch

    tokenizer.padding_side = "left"
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(enc[i]))
    outs: list[list[str]] = [[] for _ in prompts]
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        L = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), L), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), L), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, L - len(enc[i]) :] = torch.tensor(enc[i])
            mask[r, L - len(enc[i]) :] = 1
        new = max(1, min(max_new_tokens, ctx - L))
        kw = dict(do_sample=False) if samples == 1 and temperature == 0 else dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new,
                                 num_return_sequences=samples, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, **kw)
        texts = tokenizer.batch_decode(gen[:, L:], skip_special_tokens=True)
        for r, i in enumerate(idx):
            outs[i] = texts[r * samples : (r + 1) * samples]
    return outs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "python/qstar_native/data/default_policy"))
    p.add_argument("--seeds", default="0:3", help="START:STOP held-out seeds (within 0:1000)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N problems")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=320)
    p.add_argument("--samples", type=int, default=0, help="k for pass@k / majority@k (0: greedy only)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reverse-results", action="store_true", help="the model writes <<expr=value>> values reversed")
    p.add_argument("--json", default="", help="write the results (and every completion) here")
    p.add_argument("--show", type=int, default=2, help="print this many completions")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train_policy import import_tasks

    import_tasks()
    from qstar_native.tasks.gsm_symbolic import GsmSymbolic
    from qstar_native.tasks.math_answers import extract_answer

    torch.set_num_threads(args.threads)
    a, _, b = args.seeds.partition(":")
    seeds = range(int(a), int(b))
    if seeds.stop > 1000:
        print("warning: seeds >= 1000 may be training seeds; held-out seeds are 0..999", file=sys.stderr)
    task = GsmSymbolic()
    problems = list(task.problems(seeds))
    if args.limit:
        problems = problems[: args.limit]
    log_path = Path(args.model) / "train_log.json"
    if log_path.exists():
        check = json.loads(log_path.read_text())["data"]["check_seeds"]
        c0, c1 = (int(x) for x in check.split(":"))
        if not (c0 <= seeds.start and seeds.stop <= c1):
            print(f"warning: training removed overlapping questions only for seeds {check}; {args.seeds} is not inside", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(args.device).eval()
    ctx = int(model.config.max_position_embeddings)
    prompts = [pr.question + "\n" for pr in problems]
    post = (lambda t: t)
    if args.reverse_results:
        from train_policy import unreverse_results  # noqa: F811
        post = unreverse_results

    torch.manual_seed(args.seed)
    t0 = time.time()
    greedy = [o[0] for o in generate(model, tokenizer, prompts, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                     ctx=ctx, device=args.device)]
    t_greedy = time.time() - t0
    ok = [task.is_correct(pr, post(c)) for pr, c in zip(problems, greedy)]
    n = len(problems)
    result = {"model": args.model, "seeds": args.seeds, "n": n, "greedy_correct": sum(ok),
              "greedy_acc": sum(ok) / n, "greedy_wilson95": wilson(sum(ok), n), "greedy_seconds": round(t_greedy, 1)}
    print(fmt("greedy", sum(ok), n) + f"  [{t_greedy:.0f}s]")
    for pr, c in list(zip(problems, greedy))[: args.show]:
        print(f"--- {pr.id} (answer {pr.answer})\n{c}")
    if args.samples:
        k = args.samples
        sampled = generate(model, tokenizer, prompts, batch_size=max(1, args.batch_size // k), max_new_tokens=args.max_new_tokens,
                           ctx=ctx, samples=k, temperature=args.temperature, device=args.device)
        pass_k = maj_k = 0
        for pr, outs in zip(problems, sampled):
            outs = [post(o) for o in outs]
            pass_k += any(task.is_correct(pr, o) for o in outs)
            answers = [x for x in (extract_answer(o) for o in outs) if x is not None]
            if answers:
                top = Counter(answers).most_common(1)[0][0]  # ties: first seen
                maj_k += task.is_correct(pr, f"#### {top}")
        print(fmt(f"pass@{k} (T={args.temperature})", pass_k, n))
        print(fmt(f"majority@{k} (T={args.temperature})", maj_k, n))
        result.update({f"pass@{k}": pass_k / n, f"majority@{k}": maj_k / n, "temperature": args.temperature})
    if args.json:
        result["completions"] = [{"id": pr.id, "answer": pr.answer, "greedy": c, "correct": o} for pr, c, o in zip(problems, greedy, ok)]
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
