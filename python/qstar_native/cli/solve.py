"""``qstar solve``: Q* on one question; prints the chosen path with f, g, h per step."""

from __future__ import annotations

import argparse

from .common import CLIError, add_common, add_search, concurrency, load_policy, load_qvm, policy_settings, positive_int, search_options, setup_torch, writable

EXAMPLES = """examples:
  qstar solve "Ella receives 50 emails a day. 16% of those emails don't require any response. She responds to the rest. How many emails does Ella respond to in a 3 day work week?"
  qstar solve "..." --tree tree.html        # or tree.svg / tree.dot: the search tree, chosen path highlighted
  qstar solve "..." --model my_model --qvm my_qvm --k 6 --max-expansions 100
  qstar solve --file questions.txt                 # one question a line, all searched together
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve", help="solve one question with Q* and show the chosen reasoning path",
        description="Runs Q* (A* on f = g + lam*h: g the min of the steps' process rewards, h the QVM's "
        "Q of each step) on one question and prints the best path with f, g and h per step.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("question", nargs="*", help="the question(s) (quote each)")
    p.add_argument("--file", metavar="FILE", help="questions, one a line (UTF-8)")
    add_common(p)
    add_search(p)
    p.add_argument("--max-expansions", type=positive_int, default=48, help="expansion budget (default 48)")
    p.add_argument("--tree", metavar="FILE", help="write the search tree: .html, .svg or .dot (one question only)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrained import Solver

    questions = list(args.question)
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as f:
                questions += [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"--file {args.file}: {e}") from None
    if not questions or any(not q.strip() for q in questions):
        raise CLIError("give a non-empty question (or --file with one question a line)")
    if args.tree is not None:
        if not args.tree.lower().endswith((".html", ".htm", ".svg", ".dot", ".gv")):
            raise CLIError(f"--tree {args.tree}: pick a .html, .svg or .dot file")
        if len(questions) > 1:
            raise CLIError("--tree draws one search; give one question")
        writable(args.tree, "--tree")
    policy_settings(args)
    options = search_options(args)
    setup_torch(args)
    policy = load_policy(args)
    qvm = load_qvm(args, policy)
    solver = Solver(policy, qvm, lam=args.lam, k=args.k, max_expansions=args.max_expansions, seed=args.seed,
                    concurrency=concurrency(args), **options)  # fmt: skip
    results = solver.solve_many(questions)
    for q, result in zip(questions, results):
        if len(questions) > 1:
            print(f"\n{q}")
        print(result)
    if args.tree is not None:
        print(f"search tree written to {results[0].write_tree(args.tree)}")
    return 0
