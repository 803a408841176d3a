"""``qstar eval``: methods side by side on the same problems, policy and budget accounting."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .common import CLIError, add_common, add_search, add_task, load_policy, load_qvm, load_task, search_options, setup_torch

EXAMPLES = """examples:
  qstar eval --n 50
  qstar eval --seeds 0:5 --n 500 --methods greedy,best-of-n:16,beam:4,qstar --json eval.json --plot eval.png
  qstar eval --model my_model --qvm my_qvm --data test.jsonl --task gsm8k --methods greedy,qstar

methods (NAME or NAME:N):
  greedy          greedy chain of thought
  best-of-n[:N]   N sampled solutions (default 10), the one with the highest Q of its last step kept
  majority[:N]    N sampled solutions (default 10), majority vote over final answers
  beam[:W]        step-level beam search, W beams (default 4), k proposals each, ranked like Q*'s f
  qstar[:E]       Q*: A* on f = g + lam*h, at most E expansions (default 48)
"""

DEFAULT_METHODS = "greedy,best-of-n,beam,qstar"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate greedy, best-of-N, beam search and Q* side by side",
        description="Runs each method on the same problems with the same policy, process reward and QVM, "
        "and prints accuracy (95%% Wilson interval), generated and forwarded tokens and wall time per "
        "problem, then the paired difference of Q* against each other method (bootstrap 95%% interval "
        "and exact McNemar p).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="0:5")
    add_common(p)
    add_search(p)
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods (default {DEFAULT_METHODS})")
    p.add_argument("--num-solutions", type=int, default=1, help="Q* keeps searching until this many solutions, then answers with the best f (default 1)")
    p.add_argument("--fallback", action="store_true", help="when Q* ends its budget without a solution, complete its best open path greedily")
    p.add_argument("--json", metavar="FILE", help="write summaries, comparisons and per-problem records here")
    p.add_argument("--plot", metavar="PNG", help="write accuracy against generated tokens per method (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def build_methods(specs: str, *, k: int, lam: float, temperature: float, max_steps: int, reward: Any, value: Any, num_solutions: int = 1, fallback: bool = False) -> list[Any]:
    """Parses ``--methods`` into method objects (see EXAMPLES); unknown names raise CLIError."""
    from ..baselines import beam_search, best_of_n, greedy, qstar

    def number(name: str, arg: str, default: int) -> int:
        if not arg:
            return default
        if not arg.isdigit() or int(arg) < 1:
            raise CLIError(f"--methods: {name}:{arg} needs a positive integer after ':'")
        return int(arg)

    out: list[Any] = []
    for spec in [s.strip() for s in specs.split(",") if s.strip()]:
        name, _, arg = spec.partition(":")
        if name == "greedy" and not arg:
            out.append(greedy(max_steps=max_steps))
        elif name == "best-of-n":
            if value is None:
                raise CLIError("--methods best-of-n ranks by the QVM, and there is none (--qvm none); use majority")
            out.append(best_of_n(number(name, arg, 10), "qvm", value=value, temperature=temperature, max_steps=max_steps))
        elif name == "majority":
            out.append(best_of_n(number(name, arg, 10), "majority", temperature=temperature, max_steps=max_steps))
        elif name == "beam":
            width = number(name, arg, 4)
            out.append(beam_search(width, k, PathScore(reward, value, lam), temperature=temperature, max_steps=max_steps))
        elif name == "qstar":
            out.append(qstar(lam=lam, k=k, num_solutions=num_solutions, fallback=fallback, reward=reward, value=value, temperature=temperature, max_steps=max_steps, max_expansions=number(name, arg, 48)))
        else:
            raise CLIError(f"--methods: unknown method {spec!r}; pick from greedy, best-of-n[:N], majority[:N], beam[:W], qstar[:E]")
    if not out:
        raise CLIError("--methods is empty; e.g. --methods greedy,qstar")
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise CLIError(f"--methods lists a method twice: {names}")
    return out


class PathScore:
    """Beam search's ranking of a child: Q*'s f = min of the path's process rewards + lam * Q, so
    beam and Q* order states the same way and differ only in how they search."""

    def __init__(self, reward: Any, value: Any, lam: float) -> None:
        self.reward, self.value, self.lam = reward, value, lam
        self.__name__ = "PathScore"

    def __call__(self, nodes: list[Any], candidates: Any) -> list[list[float]]:
        from ..baselines.record import make_nodes
        from ..protocols import Step

        n_c = [len(c) for c in candidates]
        rs = self.reward(nodes, candidates) if self.reward is not None else [[0.0] * n for n in n_c]
        qs = self.value(nodes, candidates) if self.value is not None else [[0.0] * n for n in n_c]
        out = []
        for node, r_row, q_row in zip(nodes, rs, qs):
            g_so_far = 0.0
            if self.reward is not None and node.steps:
                # the rewards of the node's own steps, each scored given the steps before it
                prefix = [Step(s, "") for s in node.steps]
                root = node.tokens[: len(node.tokens) - sum(len(s) for s in node.steps)]
                past = self.reward(make_nodes(root, [prefix[:i] for i in range(len(prefix))]), [[s] for s in prefix])
                g_so_far = min(row[0] for row in past)
            out.append([min(g_so_far, r) + self.lam * q for r, q in zip(r_row, q_row)])
        return out


def run(args: argparse.Namespace) -> int:
    from ..evaluation import compare, evaluate, format_table
    from ..pretrained import search_setup

    if args.k < 1:
        raise CLIError(f"--k must be >= 1, got {args.k}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    setup_torch(args)
    policy = load_policy(args)
    qvm, qvm_dir = load_qvm(args, policy)
    loaded = load_task(args, policy, purpose="eval")
    if args.num_solutions < 1:
        raise CLIError(f"--num-solutions must be >= 1, got {args.num_solutions}")
    setup = search_setup(policy, qvm, seed=args.seed, **search_options(args))
    methods = build_methods(args.methods, k=args.k, lam=args.lam, temperature=setup.temperature, max_steps=policy.settings.max_steps,
                            reward=setup.reward, value=setup.value, num_solutions=args.num_solutions, fallback=args.fallback)
    sp, setting = setup.step_policy, setup.describe()
    print(f"{len(loaded.problems)} problems ({loaded.name}), policy {policy.path}, QVM {qvm_dir}, {setting}", file=sys.stderr)
    start = time.perf_counter()
    reports = [evaluate(loaded.task, m, sp, loaded.problems, seed=args.seed, progress=not args.no_progress) for m in methods]
    ref = next((r for r in reports if r.method.startswith("qstar")), None)
    comparisons = [compare(ref, r) for r in reports if ref is not None and r is not ref]
    print(format_table(reports))
    if comparisons:
        print(format_comparisons(comparisons))
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    if args.json is not None:
        doc = {"task": loaded.name, "policy": str(policy.path), "qvm": qvm_dir, "args": {k: v for k, v in vars(args).items() if k != "run"},
               "summaries": [asdict(r.summary) for r in reports], "comparisons": [asdict(c) for c in comparisons], "reports": [r.to_dict() for r in reports]}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"records written to {args.json}")
    if args.plot is not None:
        plot(reports, args.plot, title=f"{loaded.name}; {setting}")
        print(f"plot written to {args.plot}")
    return 0


def format_comparisons(comparisons: list[Any]) -> str:
    """One row per pair: accuracy difference, paired bootstrap 95% interval, McNemar p."""
    head = f"{'paired difference':<44} {'diff':>7} {'95% CI':>17} {'A only':>7} {'B only':>7} {'McNemar p':>10}"
    lines = [head, "-" * len(head)]
    for c in comparisons:
        ci = f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
        lines.append(f"{c.method_a + ' - ' + c.method_b:<44} {c.difference:>+7.3f} {ci:>17} {c.a_only:>7} {c.b_only:>7} {c.p_value:>10.2g}")
    return "\n".join(lines)


def plot(reports: list[Any], path: str, *, title: str) -> None:
    """Accuracy (95% interval bars) against mean generated tokens per problem, one point per
    method; methods of one family (best-of-n:4, best-of-n:16) joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    families: dict[str, list[Any]] = {}
    for r in reports:  # best_of_4_qvm and best_of_16_qvm are one family, best_of_16_majority another
        families.setdefault(re.sub(r"\d+", "N", r.method), []).append(r.summary)
    for sums in families.values():
        sums.sort(key=lambda s: s.mean_generated)
        x = [s.mean_generated for s in sums]
        y = [100 * s.accuracy for s in sums]
        err = [[100 * (s.accuracy - s.ci_low) for s in sums], [100 * (s.ci_high - s.accuracy) for s in sums]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=", ".join(s.method for s in sums))
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem (mean, log scale)")
    ax.set_ylabel("accuracy, % (95% Wilson interval)")
    ax.set_title(f"{title} (n = {reports[0].summary.n})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
