#!/usr/bin/env python
"""Train the small GSM-Symbolic policy model from scratch (issue 6): tokenizer + LlamaForCausalLM.

Data (deterministic): every template instantiated with the training seeds (default 1000..1999,
``--train-seeds 1000:2000``); seeds 0..999 are reserved for held-out evaluation and never used
for training. Template 0098 has only ~400 distinct questions, so different seeds can give the
same text: every training instance whose question text equals a question of the check seeds
(default ``--check-seeds 0:20``, i.e. the first 2,000 held-out problems, which
``scripts/eval_greedy.py`` draws from) is dropped, and the count is logged.

Format: prompt = ``question + "\\n"`` (no BOS, no instruction), target = ``"\\n".join(steps)``
followed by EOS; the loss is on the target tokens only. One reasoning step per line, the last
line ``#### N``.

Tokenizer: byte-level BPE trained with ``tokenizers`` on the training text (digits split one per
token by ``Digits(individual_digits=True)``), special tokens ``<pad> <s> </s>``; saved as
``tokenizer.json`` loadable with ``PreTrainedTokenizerFast``/``AutoTokenizer``.

Training: AdamW, linear warmup then cosine decay to 10% over ``--steps`` optimizer steps (the
schedule depends on steps, never on the clock, so a run is reproducible); ``--minutes`` is only a
safety stop. Batches are length-bucketed (shuffled, then sorted inside windows of 64 batches) to
cut padding. bf16 autocast on CPU (``--bf16``) is faster here; master weights stay float32.

Output dir: ``config.json``, ``model.safetensors``, ``generation_config.json``, tokenizer files,
``train_log.json`` (args, seed, git commit, data counts, loss curve, tokens/s).

Example (the default policy, see python/qstar_native/data/default_policy/README.md):

    python scripts/train_policy.py --out python/qstar_native/data/default_policy --steps 3000 --minutes 40
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

SPECIALS = ["<pad>", "<s>", "</s>"]
_ANNOT = re.compile(r"<<([^=<>]*)=([^<>]*)>>")


def import_tasks() -> None:
    """Make ``qstar_native.tasks`` importable even where the compiled ``_core`` is not built (the
    tasks need none of it): on ImportError the package is registered without running its __init__."""
    try:
        import qstar_native  # noqa: F401
    except ImportError:
        import importlib.util

        for name in [m for m in sys.modules if m == "qstar_native" or m.startswith("qstar_native.")]:
            del sys.modules[name]
        init = ROOT / "python" / "qstar_native" / "__init__.py"
        spec = importlib.util.spec_from_file_location("qstar_native", init, submodule_search_locations=[str(init.parent)])
        sys.modules["qstar_native"] = importlib.util.module_from_spec(spec)


def seed_range(text: str) -> range:
    a, _, b = text.partition(":")
    if not b:
        raise argparse.ArgumentTypeError(f"expected START:STOP (stop exclusive), got {text!r}")
    return range(int(a), int(b))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--train-seeds", type=seed_range, default=seed_range("1000:2000"), help="START:STOP, must not meet 0:1000")
    p.add_argument("--check-seeds", type=seed_range, default=seed_range("0:20"), help="held-out seeds whose questions are removed from training")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training instances (0: all)")
    p.add_argument("--data-cache", default="", help="JSONL of instances (written if missing, read if present)")
    p.add_argument("--workers", type=int, default=1, help="processes for instantiating the data")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--tokenizer-docs", type=int, default=20000, help="instances used to train the tokenizer")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=0, help="MLP width (0: 8/3 * hidden, rounded to 16)")
    p.add_argument("--ctx", type=int, default=384, help="max sequence length (longer instances are dropped)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (sets the cosine schedule)")
    p.add_argument("--minutes", type=float, default=0.0, help="safety stop after this many minutes of training (0: none)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--bf16", choices=["on", "off"], default="on", help="bf16 autocast (CPU or CUDA)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (leave cores for others)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--reverse-results", action="store_true",
                   help="experimental: write each <<expr=value>> value with its digits reversed (NOT for the default policy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=0, help="also save a checkpoint under out/step_N every N steps")
    args = p.parse_args(argv)
    if args.train_seeds.start < 1000 and args.train_seeds.stop > 0:
        p.error("--train-seeds must not overlap the reserved held-out seeds 0:1000")
    return args


# ---------------------------------------------------------------------------------------- data


def _instantiate_seed(seed: int) -> list[dict]:
    import_tasks()
    from qstar_native.tasks.gsm_symbolic import GsmSymbolic

    return [{"id": p.id, "question": p.question, "answer": p.answer, "steps": list(p.steps)}
            for p in GsmSymbolic().problems([seed])]


def load_instances(seeds: range, workers: int, cache: str) -> list[dict]:
    if cache and os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        want = {f"-{s}" for s in seeds}
        rows = [r for r in rows if "-" + r["id"].rsplit("-", 1)[1] in want]
        if len(rows) != 100 * len(seeds):
            raise SystemExit(f"{cache} holds {len(rows)} of the {100 * len(seeds)} instances of seeds {seeds}; delete it")
        return rows
    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers) as pool:
            chunks = pool.map(_instantiate_seed, list(seeds), chunksize=4)
    else:
        chunks = [_instantiate_seed(s) for s in seeds]
    rows = [r for c in chunks for r in c]
    if cache:
        tmp = cache + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, cache)
    return rows


def reverse_results(step: str) -> str:
    """``<<2*13=26>>26`` -> ``<<2*13=62>>26``: only the value inside the annotation is reversed."""
    return _ANNOT.sub(lambda m: f"<<{m[1]}={m[2][::-1]}>>", step)


def unreverse_results(text: str) -> str:
    return reverse_results(text)  # reversing is its own inverse


def target_text(steps: list[str], reverse: bool = False) -> str:
    if reverse:
        steps = [reverse_results(s) for s in steps]
    return "\n".join(steps)


# ------------------------------------------------------------------------------------ tokenizer


def train_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=100_000)


# ----------------------------------------------------------------------------------------- misc


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    # data
    rows = load_instances(args.train_seeds, args.workers, args.data_cache)
    held = {r["question"] for r in load_instances(args.check_seeds, args.workers, "")}
    n_all = len(rows)
    rows = [r for r in rows if r["question"] not in held]
    n_overlap = n_all - len(rows)
    assert not any(r["question"] in held for r in rows)
    if args.limit:
        rows = rows[: args.limit]
    t_data = time.time() - t_start

    tok_rows = rows[: args.tokenizer_docs]
    tokenizer = train_tokenizer([r["question"] + "\n" + target_text(r["steps"], args.reverse_results) for r in tok_rows], args.vocab)
    eos = tokenizer.eos_token_id
    prompts = tokenizer([r["question"] + "\n" for r in rows], add_special_tokens=False)["input_ids"]
    targets = tokenizer([target_text(r["steps"], args.reverse_results) for r in rows], add_special_tokens=False)["input_ids"]
    seqs, n_prompt = [], []
    for pr, tg in zip(prompts, targets):
        if len(pr) + len(tg) + 1 <= args.ctx:
            seqs.append(pr + tg + [eos])
            n_prompt.append(len(pr))
    n_too_long = len(rows) - len(seqs)
    lengths = [len(s) for s in seqs]
    t_tok = time.time() - t_start - t_data
    print(f"data: {n_all} instances, {n_overlap} dropped (question in held-out check seeds), {n_too_long} longer than "
          f"{args.ctx}; {len(seqs)} used, mean {np.mean(lengths):.0f} tokens; vocab {len(tokenizer)}; "
          f"{t_data:.0f}s data, {t_tok:.0f}s tokenizer", flush=True)

    inter = args.intermediate or int(round(args.hidden * 8 / 3 / 16)) * 16
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=inter,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
                         max_position_embeddings=args.ctx, tie_word_embeddings=True, rope_theta=10000.0,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M params (hidden {args.hidden}, {args.layers} layers, mlp {inter})", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        prog = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))

    rng = random.Random(args.seed)
    pad = tokenizer.pad_token_id
    dev_type = "cuda" if str(args.device).startswith("cuda") else "cpu"
    curve: list[dict] = []
    batches: list[list[int]] = []
    tokens = answer_tokens = 0
    step, epoch, stop_reason = 0, 0, "steps"
    t0 = time.time()
    window_loss, window_n = 0.0, 0

    def save(path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)

    model.train()
    while step < args.steps:
        if not batches:
            batches = make_batches(lengths, args.batch_size, rng)
            epoch += 1
        idx = batches.pop()
        L = max(lengths[i] for i in idx)
        ids = torch.full((len(idx), L), pad, dtype=torch.long)
        labels = torch.full((len(idx), L), -100, dtype=torch.long)
        mask = torch.zeros((len(idx), L), dtype=torch.long)
        for r, i in enumerate(idx):
            s = torch.tensor(seqs[i])
            ids[r, : len(s)] = s
            mask[r, : len(s)] = 1
            labels[r, n_prompt[i] : len(s)] = s[n_prompt[i] :]
        ids, labels, mask = ids.to(args.device), labels.to(args.device), mask.to(args.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=args.bf16 == "on"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        tokens += sum(lengths[i] for i in idx)
        answer_tokens += sum(lengths[i] - n_prompt[i] for i in idx)
        window_loss += loss.item()
        window_n += 1
        elapsed = time.time() - t0
        if step % args.log_every == 0 or step == args.steps:
            entry = {"step": step, "epoch": epoch, "tokens": tokens, "loss": window_loss / window_n,
                     "lr": lr_at(step - 1), "elapsed_s": round(elapsed, 1), "tokens_per_s": round(tokens / elapsed, 1)}
            curve.append(entry)
            print(json.dumps(entry), flush=True)
            window_loss, window_n = 0.0, 0
        if args.save_every and step % args.save_every == 0 and step < args.steps:
            save(out / f"step_{step}")
        if args.minutes and elapsed > args.minutes * 60:
            stop_reason = "minutes"
            break
    train_s = time.time() - t0
    model.eval()
    save(out)
    log = {
        "args": {k: (f"{v.start}:{v.stop}" if isinstance(v, range) else v) for k, v in vars(args).items()},
        "seed": args.seed, "git_commit": git_commit(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "params": n_params,
        "config": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "intermediate": inter,
                   "vocab": len(tokenizer), "ctx": args.ctx},
        "data": {"train_seeds": f"{args.train_seeds.start}:{args.train_seeds.stop}", "instances": n_all,
                 "dropped_overlap_with_check_seeds": n_overlap,
                 "check_seeds": f"{args.check_seeds.start}:{args.check_seeds.stop}",
                 "dropped_too_long": n_too_long, "used": len(seqs), "mean_tokens": float(np.mean(lengths)),
                 "distinct_held_out_questions": len(held)},
        "steps": step, "epochs_started": epoch, "stop_reason": stop_reason, "tokens": tokens, "answer_tokens": answer_tokens,
        "train_seconds": round(train_s, 1), "tokens_per_s": round(tokens / train_s, 1),
        "final_loss": curve[-1]["loss"] if curve else None, "curve": curve,
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
    print(f"done: {step} steps, {tokens} tokens in {train_s:.0f}s ({tokens / train_s:.0f} tok/s), "
          f"final loss {log['final_loss']}, stop: {stop_reason}", flush=True)
    return log


if __name__ == "__main__":
    main()
