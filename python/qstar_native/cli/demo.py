"""``qstar demo``: greedy vs A* with a scripted, error-prone proposer (no model needed)."""

from __future__ import annotations

import argparse

from .common import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="greedy vs A* on GSM-Symbolic with a scripted proposer (no model)",
        description="Greedy vs A* on GSM-Symbolic problems with a scripted, error-prone step proposer "
        "and the annotation-checking process reward.",
        epilog="example:\n  qstar demo --problems 30 --wrong 2 --seed 0", formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--problems", type=int, default=30, help="number of problems (at most 100)")
    p.add_argument("--wrong", type=int, default=2, help="corrupted proposals per state")
    p.add_argument("--seed", type=int, default=0, help="instantiation and shuffling seed")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.problems <= 100:
        raise CLIError(f"--problems must be between 1 and 100, got {args.problems}")
    from ..demo import run_demo

    print(run_demo(num_problems=args.problems, seed=args.seed, num_wrong=args.wrong))
    return 0
