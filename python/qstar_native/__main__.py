"""The ``qstar`` command line (also ``python -m qstar_native``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qstar",
        description="Q* deliberative planning on a native A* engine.",
        epilog="example:\n  qstar demo --problems 30 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run a small example search (greedy vs A*) on GSM-Symbolic with a scripted proposer",
        description="Greedy vs A* on GSM-Symbolic problems with a scripted, error-prone step proposer "
        "and the annotation-checking process reward.",
        epilog="example:\n  qstar demo --problems 30 --wrong 2 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--problems", type=int, default=30, help="number of problems (at most 100)")
    demo.add_argument("--wrong", type=int, default=2, help="corrupted proposals per state")
    demo.add_argument("--seed", type=int, default=0, help="instantiation and shuffling seed")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if not 1 <= args.problems <= 100:
            parser.error(f"--problems must be between 1 and 100, got {args.problems}")
        from .demo import run_demo

        print(run_demo(num_problems=args.problems, seed=args.seed, num_wrong=args.wrong))
    return 0


if __name__ == "__main__":
    sys.exit(main())
