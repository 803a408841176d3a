"""The ``qstar`` command line (also ``python -m qstar_native``): one module per command."""

from __future__ import annotations

import argparse
import sys

from . import evaluate, label, merge, report, solve, train_qvm
from .common import CLIError

COMMANDS = (solve, evaluate, report, merge, label, train_qvm)
EXAMPLES = """examples:
  qstar eval --n 50
  qstar solve "Tyler is 20 years old. In two years his cousin Sarah will be thrice as old as Tyler is now. How old is Sarah now?" --tree tree.html
  qstar label --seeds 2000:2003 --out labels.jsonl && qstar train-qvm --labels labels.jsonl --out my_qvm
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstar",
        description="Q* deliberative planning on a native A* engine.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (qstar eval --ray hands it to each shard)
    try:
        return int(args.run(args))
    except CLIError as e:
        print(f"qstar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qstar: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `qstar report ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141
