"""``qstar report``: the table, paired comparisons and plot, remade from record files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CLIError, writable

EXAMPLES = """examples:
  qstar report run.jsonl
  qstar report greedy_bestof.jsonl qstar.jsonl --reference qstar_lam1_k4_min_fallback --plot frontier.png
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables and paired comparisons from record files (qstar eval --records)",
        description="Reads record files (several runs are merged by method and paired by question id) and prints "
        "the accuracy table and the paired differences of the reference method against each other one.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("files", nargs="+", help="record files (.jsonl from qstar eval --records, or older --json documents)")
    p.add_argument("--reference", help="the method compared against the others (default: the first Q* method)")
    p.add_argument("--plot", metavar="PNG", help="write accuracy against generated tokens per method")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import format_comparisons, format_table
    from ..records import RecordFileError
    from ..evaluation import load_reports, plot

    writable(args.plot, "--plot")
    try:
        reports, comparisons = load_reports(args.files, reference=args.reference)
    except RecordFileError as e:
        raise CLIError(str(e)) from None
    if not reports:
        raise CLIError("the files hold no records")
    print(format_table(reports))
    if comparisons:
        print(format_comparisons(comparisons))
    if args.plot is not None:
        names = [Path(f).name for f in args.files]
        plot(reports, args.plot, title=", ".join(names) if len(names) <= 2 else f"{len(names)} record files")
        print(f"plot written to {args.plot}")
    return 0
