"""``qstar eval --ray``: the shards of one eval as Ray actors, then one merged record file.

Each of ``--ray-workers`` actors runs ``qstar eval ... --shard i/N --records RECORDS.shard-i-of-N.jsonl
--resume`` (the same command, its own shard). An actor that is lost (its process or node dies) is
replaced and its shard resubmitted; it resumes from its partial record file, so finished problems
are not run again. When every shard is done, the shards are merged (:func:`~qstar_native.records.merge_records`)
into ``--records`` and the table printed. On a cluster the record files must be on storage every
node sees (a shared filesystem), and every node needs the model and data paths the command names.
Ray is an optional extra (``pip install ray``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .common import CLIError

RAY_OPTIONS = {"--ray": "optional", "--ray-workers": 1, "--records": 1, "--output-path": 1, "--json": 1, "--plot": 1, "--resume": 0,
               "--no-progress": 0}  # fmt: skip
MAX_RESUBMITS = 3


def shard_argv(argv: list[str]) -> list[str]:
    """``argv`` without the options the driver handles itself (each shard gets its own records).

    >>> shard_argv(["eval", "--n", "5", "--ray", "--records", "r.jsonl", "--ray-workers=2", "--ray", "auto"])
    ['eval', '--n', '5']
    """
    out, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        takes = RAY_OPTIONS.get(name)
        if takes is None:
            out.append(argv[i])
        elif "=" not in argv[i]:
            if takes == "optional":
                i += int(i + 1 < len(argv) and not argv[i + 1].startswith("-"))
            else:
                i += int(takes)
        i += 1
    return out


def shard_path(records: str, i: int, n: int) -> Path:
    p = Path(records)
    return p.with_name(f"{p.name.removesuffix('.jsonl')}.shard-{i}-of-{n}.jsonl")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError  # ActorDiedError is a RayActorError
    except ImportError:
        raise CLIError("--ray needs Ray: pip install ray") from None
    from ..evaluation import format_table, reports_from_records
    from ..records import RecordFileError, RecordWriter, merge_records

    if args.records is None:
        raise CLIError("--ray writes one record file per shard next to --records FILE (or --output-path DIR); give it")
    if args.shard is not None:
        raise CLIError("--ray runs every shard itself; drop --shard")
    if os.path.exists(args.records) and not args.resume:
        raise CLIError(f"--records {args.records} already exists; resume it (--resume) or write to another file")
    base = shard_argv(argv)
    address = None if args.ray in (None, "local") else args.ray
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        n = args.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        runner = ray.remote(num_cpus=1, max_restarts=0)(_ShardRunner)
        jobs: dict[Any, tuple[int, Any, int]] = {}  # result ref -> (shard, actor handle: kept so the actor lives, tries)

        def submit(i: int, tries: int) -> None:
            actor = runner.remote()
            cmd = [*base, "--shard", f"{i}/{n}", "--records", str(shard_path(args.records, i, n)), "--resume", "--no-progress"]
            jobs[actor.run.remote(cmd)] = (i, actor, tries)

        for i in range(n):
            submit(i, 0)
        print(f"{n} shards on Ray ({address or 'a local instance'}); records in {shard_path(args.records, 0, n).name} ...", file=sys.stderr)
        while jobs:
            done, _ = ray.wait(list(jobs), num_returns=1)
            i, actor, tries = jobs.pop(done[0])
            try:
                code, err = ray.get(done[0])
            except (ActorUnavailableError, RayActorError) as e:
                if tries >= MAX_RESUBMITS:
                    raise CLIError(f"--ray: shard {i}/{n} was lost {tries + 1} times ({type(e).__name__}); giving up") from None
                print(f"qstar: shard {i}/{n} lost its actor ({type(e).__name__}); resubmitted, resuming from its record file", file=sys.stderr)
                submit(i, tries + 1)
                continue
            if code != 0:
                raise CLIError(f"--ray: shard {i}/{n} failed (exit status {code}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    finally:
        ray.shutdown()
    try:
        header, records, missing = merge_records([shard_path(args.records, i, n) for i in range(n)])
        if missing:
            raise CLIError(f"--ray: {len(missing)} records missing after every shard finished; rerun with --resume")
        tmp = Path(f"{args.records}.tmp")
        tmp.unlink(missing_ok=True)
        with RecordWriter(tmp, {k: v for k, v in header.items() if k != "type"}) as writer:
            writer.write(records)
        tmp.replace(args.records)
    except RecordFileError as e:
        raise CLIError(f"--ray: {e}") from None
    print(format_table(reports_from_records(records, header.get("methods", []))))
    print(f"{len(records)} records from {n} shards merged into {args.records}")
    return 0


class _ShardRunner:
    """A Ray actor: runs one shard's ``qstar eval`` in its own process."""

    def run(self, argv: list[str]) -> tuple[int, str]:
        import contextlib
        import io

        from . import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        return code, err.getvalue()
