"""``qstar solve``: Q* on one question; prints the chosen path with f, g, h per step."""

from __future__ import annotations

import argparse

from .common import CLIError, add_common, add_search, load_policy, load_qvm, search_options, setup_torch

EXAMPLES = """examples:
  qstar solve "Ella receives 50 emails a day. 16% of those emails don't require any response. She responds to the rest. How many emails does Ella respond to in a 3 day work week?"
  qstar solve "..." --tree tree.html        # or tree.svg / tree.dot: the search tree, chosen path highlighted
  qstar solve "..." --model my_model --qvm my_qvm --k 6 --max-expansions 100
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve", help="solve one question with Q* and show the chosen reasoning path",
        description="Runs Q* (A* on f = g + lam*h: g the min of the steps' process rewards, h the QVM's "
        "Q of each step) on one question and prints the best path with f, g and h per step.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("question", help="the question (quote it)")
    add_common(p)
    add_search(p)
    p.add_argument("--max-expansions", type=int, default=48, help="expansion budget (default 48)")
    p.add_argument("--tree", metavar="FILE", help="write the search tree: .html, .svg or .dot")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrained import Solver

    if args.tree is not None and not args.tree.lower().endswith((".html", ".htm", ".svg", ".dot", ".gv")):
        raise CLIError(f"--tree {args.tree}: pick a .html, .svg or .dot file")
    for name in ("k", "max_expansions"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.question.strip():
        raise CLIError("the question is empty")
    setup_torch(args)
    policy = load_policy(args)
    qvm, _ = load_qvm(args, policy)
    solver = Solver(policy, qvm, lam=args.lam, k=args.k, max_expansions=args.max_expansions, seed=args.seed, **search_options(args))
    result = solver.solve(args.question)
    print(result)
    if args.tree is not None:
        try:
            print(f"search tree written to {result.write_tree(args.tree)}")
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--tree: {e}") from None
    return 0
