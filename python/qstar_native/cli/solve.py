"""``qstar solve``: Q* on one question; prints the chosen path with f, g, h per step."""

from __future__ import annotations

import argparse

from ..methods import QSTAR_EXPANSIONS
from .common import (
    CLIError, add_common, add_prompt, add_search, add_server, check_questions, check_qvm, concurrency, load_qvm, plan_model, policy_options, policy_settings,
    positive_int, search_options, server_options, setup_error, setup_torch, writable,
)  # fmt: skip

EXAMPLES = """examples:
  qstar solve "Ella receives 50 emails a day. 16% of those emails don't require any response. She responds to the rest. How many emails does Ella respond to in a 3 day work week?"
  qstar solve "..." --tree tree.html        # or tree.svg / tree.dot: the search tree, chosen path highlighted
  qstar solve "..." --model my_model --qvm my_qvm --k 6 --max-expansions 100
  qstar solve --file questions.txt                 # one question a line, all searched together
  qstar solve "..." --model Qwen/Qwen2.5-0.5B-Instruct --apply-chat-template --max-steps 8 --max-step-tokens 128
  qstar solve "..." --model model.gguf --apply-chat-template --server http://127.0.0.1:8080 --qvm none --calculator off
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
    add_prompt(p, fewshot=False)
    add_server(p)
    p.add_argument("--max-expansions", type=positive_int, default=QSTAR_EXPANSIONS, help=f"expansion budget (default {QSTAR_EXPANSIONS})")
    p.add_argument("--tree", metavar="FILE", help="write the search tree: .html, .svg or .dot (one question only)")
    p.set_defaults(run=run)


def read_questions(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name for messages, question) for each question argument and each non-blank --file line,
    checked: non-empty, UTF-8, at most --max-question-bytes."""
    items = [(f"question {i + 1}", q) for i, q in enumerate(args.question)]
    if args.file is not None:
        from ..tasks.jsonl import DatasetFormatError, read_lines

        try:
            items += [(f"--file {args.file}:{n}", line.strip()) for n, line in read_lines(args.file, max_line_bytes=args.max_question_bytes) if line.strip()]
        except FileNotFoundError:
            raise CLIError(f"--file {args.file}: no such file") from None
        except DatasetFormatError as e:
            raise CLIError(f"--file: {e}") from None
        if not items:
            raise CLIError(f"--file {args.file} holds no question; write one question a line")
    if not items:
        raise CLIError("give a non-empty question (or --file with one question a line)")
    if any(not q.strip() for _, q in items):
        raise CLIError("give a non-empty question (or --file with one question a line)")
    check_questions(items, args.max_question_bytes)
    return items


def run(args: argparse.Namespace) -> int:
    from ..policy.server import ServerError
    from ..solver import Solver

    items = read_questions(args)
    questions = [q for _, q in items]
    if args.tree is not None:
        if not args.tree.lower().endswith((".html", ".htm", ".svg", ".dot", ".gv")):
            raise CLIError(f"--tree {args.tree}: pick a .html, .svg or .dot file")
        if len(questions) > 1:
            raise CLIError("--tree draws one search; give one question")
        writable(args.tree, "--tree")
    settings = policy_settings(args)
    options = search_options(args) | policy_options(args) | server_options(args)
    options["greedy_first"] = args.greedy_first is not False  # Q*'s default (the development split's choice)
    check_qvm(args)
    plan = plan_model(args, settings)
    plan.check([plan.policy.prompt(q) for q in questions], [name for name, _ in items])
    setup_torch(args)
    policy = plan.load()
    qvm = load_qvm(args, policy)
    try:
        solver = Solver(policy, qvm, lam=args.lam, k=args.k, max_expansions=args.max_expansions, seed=args.seed,
                        concurrency=concurrency(args), **options)  # fmt: skip
    except ValueError as e:
        raise setup_error(e) from None
    except ServerError as e:
        raise CLIError(f"--server: {e}") from None
    results = solver.solve_many(questions)
    for q, result in zip(questions, results):
        if len(questions) > 1:
            print(f"\n{q}")
        print(result)
    if args.tree is not None:
        tree = results[0].search.tree or []
        print(f"search tree written to {results[0].write_tree(args.tree)} ({len(tree)} nodes)")
    return 0
