"""Problems per CPU-minute with many problems in flight: continuous batching against one at a time.

Each (method, concurrency) runs in a fresh process (so peak RSS is its own) on the embedded
default, one torch thread, the same ``--n`` GSM-Symbolic problems; runs are interleaved over
``--repeats`` (all settings once, then again). Reported per setting: problems per CPU-minute
(CPU time of the evaluation itself, process start and model load excluded; median and range over
repeats), model forward calls per problem, peak RSS, and the ratio to concurrency 1 (one problem
at a time, the baseline). Records are checked equal across concurrencies (wall time aside).

    python bench/bench_scheduler.py                     # greedy, beam:4, qstar; concurrency 1, 4, 16, 64
    python bench/bench_scheduler.py --n 32 --concurrency 1,16 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from qstar_native.evaluation import evaluate
from qstar_native.methods import parse_methods
from qstar_native.pretrained import DEFAULT_QVM_DIR, load_policy, load_qvm, search_setup
from qstar_native.tasks.load import load_problems
from qstar_native.tasks.math_task import MathTask
method, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
policy = load_policy(None)
setup = search_setup(policy, load_qvm(DEFAULT_QVM_DIR, policy))
src = load_problems(seeds=range(0, 5), n=n, prompt_template=policy.settings.prompt_template)
[m] = parse_methods(method, k=4, lam=1.0, temperature=setup.temperature, max_steps=policy.settings.max_steps)
cpu = time.process_time()
[report] = evaluate(MathTask(src.task, encode=policy.encode), [m], setup.expand, src.problems, decode=policy.decode, concurrency=concurrency)
cpu = time.process_time() - cpu
records = [(r.question_id, r.completion, r.tokens_generated, r.tokens_forwarded) for r in report.records]
print(json.dumps({"cpu_s": cpu, "calls": setup.policy.forward_calls, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "accuracy": report.summary.accuracy, "records": records}))
"""


def run(method: str, n: int, concurrency: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(n), str(concurrency)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="greedy,beam:4,qstar")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    methods, levels = args.methods.split(","), [int(c) for c in args.concurrency.split(",")]
    runs: dict[tuple[str, int], list[dict]] = {(m, c): [] for m in methods for c in levels}
    for _ in range(args.repeats):
        for c in levels:
            for m in methods:
                runs[(m, c)].append(run(m, args.n, c))
    print(f"{platform.machine()} python {platform.python_version()}; embedded default, 1 torch thread, {args.n} problems "
          f"(gsm-symbolic seeds 0:5), {args.repeats} interleaved repeats")  # fmt: skip
    print("| method | concurrency | problems per CPU-minute, median [min, max] | vs concurrency 1 | forward calls per problem | peak RSS MB | same records |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        base = statistics.median(60 * args.n / r["cpu_s"] for r in runs[(m, levels[0])])
        for c in levels:
            rs = runs[(m, c)]
            rate = [60 * args.n / r["cpu_s"] for r in rs]
            same = all(r["records"] == runs[(m, levels[0])][0]["records"] for r in rs)
            print(f"| {m} | {c} | {statistics.median(rate):.0f} [{min(rate):.0f}, {max(rate):.0f}] | {statistics.median(rate) / base:.2f}x | "
                  f"{rs[0]['calls'] / args.n:.1f} | {max(r['rss_mb'] for r in rs):.0f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
