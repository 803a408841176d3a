"""``qstar merge``: the record files of a sharded run (``qstar eval --shard I/N``) as one."""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, writable

EXAMPLES = """examples:
  for i in 0 1 2 3; do qstar eval --seeds 0:5 --shard $i/4 --records shard$i.jsonl & done; wait
  qstar merge shard*.jsonl --out run.jsonl && qstar report run.jsonl
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="join the record files of a sharded qstar eval run",
        description="Checks that the files are shards of one run (same settings, each shard once, no (method, problem) "
        "pair twice), writes their records as one record file, and lists every problem a shard was given and holds no "
        "record of (exit status 1 unless --allow-missing).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("files", nargs="+", help="record files written by qstar eval --shard I/N --records FILE")
    p.add_argument("--out", required=True, metavar="FILE", help="the merged record file (must not exist)")
    p.add_argument("--allow-missing", action="store_true", help="exit 0 even when records are missing (they are still listed)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..records import RecordFileError, RecordWriter, merge_records

    writable(args.out, "--out")
    try:
        header, records, missing = merge_records(args.files)
        with RecordWriter(args.out, {k: v for k, v in header.items() if k != "type"}) as writer:
            writer.write(records)
    except RecordFileError as e:
        raise CLIError(str(e)) from None
    print(f"{len(records)} records from {len(args.files)} shards written to {args.out}")
    if missing:
        shown = ", ".join(f"{m} on {i}" for m, i in missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        print(f"qstar: {len(missing)} records missing: {shown}; rerun those shards with --resume", file=sys.stderr)
        return 0 if args.allow_missing else 1
    return 0
