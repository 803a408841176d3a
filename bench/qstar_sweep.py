"""Q* settings side by side on one problem set (a development split): accuracy, generated tokens,
distinct children per expansion, tree headroom (a correct solution anywhere in Q*'s tree) and
searches that ended without an answer, next to baselines run on the same problems.

Variants may run in separate processes (one per core) and be compared afterwards: each variant's
records carry its label in the method name, so ``qstar report DIR/*.jsonl --reference 'NAME'``
prints the joint table and the paired differences.

Each ``--variant`` is ``key=value`` pairs: Q* fields (lam, k, temperature, max_expansions,
num_solutions, fallback, vote, batch_size, greedy_first) and policy options (min_p, top_p). One
model load serves all; each variant's records go to ``--out DIR/<label>.jsonl``.

    python bench/qstar_sweep.py --seeds 990:1000 --n 200 --qvm my_qvm \\
        --baselines greedy,majority:10,beam:4 --variant "lam=1,k=4" --variant "lam=1,k=4,greedy_first=1"
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from qstar_native.evaluation import evaluate, format_table
from qstar_native.methods import QStar, parse_methods
from qstar_native.pretrained import DEFAULT_QVM_DIR, load_policy, load_qvm, search_setup
from qstar_native.records import RecordWriter
from qstar_native.tasks.load import load_problems
from qstar_native.tasks.math_task import MathTask

POLICY_KEYS = {"min_p": float, "top_p": float}
QSTAR_KEYS = {"lam": float, "k": int, "temperature": float, "max_expansions": int, "num_solutions": int, "batch_size": int,
              "fallback": lambda v: bool(int(v)), "vote": lambda v: bool(int(v)), "greedy_first": lambda v: bool(int(v))}  # fmt: skip


def parse_variant(text: str) -> tuple[dict, dict]:
    qstar, policy = {}, {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key in POLICY_KEYS:
            policy[key] = POLICY_KEYS[key](value)
        elif key in QSTAR_KEYS:
            qstar[key] = QSTAR_KEYS[key](value)
        else:
            raise SystemExit(f"--variant {text!r}: unknown key {key!r}; known: {sorted(POLICY_KEYS) + sorted(QSTAR_KEYS)}")
    return qstar, policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="990:1000")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--qvm", default="default", help="a QVM directory (default: the shipped one)")
    ap.add_argument("--baselines", default="greedy")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--calculator", choices=("on", "off"), default="on")
    ap.add_argument("--out", default=None, help="directory for per-variant record files")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    start, stop = (int(x) for x in args.seeds.split(":"))
    policy = load_policy(None)
    qvm = load_qvm(DEFAULT_QVM_DIR if args.qvm == "default" else args.qvm, policy)
    src = load_problems(seeds=range(start, stop), n=args.n, prompt_template=policy.settings.prompt_template)
    task = MathTask(src.task, encode=policy.encode)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    calc = args.calculator == "on"
    runs: list[tuple[str, dict, list]] = []  # (label, policy options, methods)
    base = search_setup(policy, qvm, calculator=calc)
    runs.append(("baselines", {}, parse_methods(args.baselines, k=4, lam=1.0, temperature=base.temperature, max_steps=policy.settings.max_steps)))
    for v in args.variant:
        q, p = parse_variant(v)
        q.setdefault("temperature", base.temperature)
        q.setdefault("k", 4)
        q.setdefault("max_expansions", 48)
        runs.append((v.replace(",", "_").replace("=", ""), p, [QStar(max_steps=policy.settings.max_steps, **q)]))
    reports = []
    rows = []
    for label, popts, methods in runs:
        setup = search_setup(policy, qvm, calculator=calc, **popts)
        writer = RecordWriter(out / f"{label}.jsonl", {"seeds": args.seeds, "n": args.n, "qvm": args.qvm, "variant": label}) if out else None
        t = time.perf_counter()
        got = evaluate(task, methods, setup.expand, src.problems, decode=policy.decode, concurrency=args.concurrency, writer=writer, progress=False)
        if writer:
            writer.close()
            if label != "baselines":  # name the variant in its records, so `qstar report` pairs files of several variants
                path = out / f"{label}.jsonl"
                lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
                for line in lines:
                    if line.get("type") == "record":
                        line["method"] = f"{line['method']}[{label}]"
                path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        for r in got:
            r = r if label == "baselines" else replace(r, method=f"{r.method}[{label}]")
            reports.append(r)
            ex = [rec.extra for rec in r.records]
            if label != "baselines":
                rows.append((r.method, statistics.mean(e["distinct"] for e in ex), statistics.mean(e["tree_correct"] for e in ex),
                             statistics.mean(not rec.completion for rec in r.records)))  # fmt: skip
        print(f"{label}: {time.perf_counter() - t:.0f} s", flush=True)
    print(format_table(reports))
    print("| Q* variant | distinct children / expansion | tree headroom | no answer |")
    print("|---|---|---|---|")
    for name, d, tc, none in rows:
        print(f"| {name} | {d:.2f} | {tc:.1%} | {none:.1%} |")


if __name__ == "__main__":
    main()
