"""``qstar eval``: methods side by side on the same problems, policy and budget accounting."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from .common import (
    CLIError, add_common, add_prompt, add_search, add_server, add_shard, add_task, apply_shard, check_qvm, concurrency, load_qvm, load_task, output_dir, plan_model,
    policy_options, policy_settings, positive_int, qvm_name, search_options, server_options, setup_error, setup_torch, writable,
)  # fmt: skip

EXAMPLES = """examples:
  qstar eval --n 50
  qstar eval --seeds 0:5 --n 500 --methods greedy,best-of-n:16,beam:4,qstar --records run.jsonl --plot eval.png
  qstar eval --seeds 0:5 --n 500 --records run.jsonl --resume          # continue an interrupted run
  qstar eval --seeds 0:5 --shard 2/8 --records shard2.jsonl             # one of 8 jobs; then: qstar merge shard*.jsonl --out run.jsonl
  qstar eval --seeds 0:5 --records run.jsonl --ray ray://head:10001 --ray-workers 8   # the 8 shards on a Ray cluster
  qstar eval --model my_model --qvm my_qvm --data test.jsonl --task gsm8k --methods greedy,qstar
  qstar eval --model Qwen/Qwen2.5-0.5B-Instruct --apply-chat-template --data test.jsonl --task gsm8k --limit 50 --output-path runs/qwen
  qstar eval --task humaneval --model SmolLM2-135M-Instruct.Q4_1.gguf --apply-chat-template --qvm none --methods greedy,majority:8
  qstar eval --model SmolLM2-135M-Instruct.Q4_1.gguf --server http://127.0.0.1:8080 --qvm none --methods greedy,qstar   # llama-server

methods (NAME or NAME:N):
  greedy             greedy chain of thought
  best-of-n[:N]      N sampled solutions (default 10), the one with the highest Q of its last step kept (needs a QVM)
  best-of-n-prm[:N]  N sampled solutions (default 10), the one with the best process reward g kept
  majority[:N]       N sampled solutions (default 10), majority vote over final answers
  beam[:W]           step-level beam search, W beams (default 4), k proposals each, ranked by Q*'s f
  qstar[:E]          Q*: A* on f = g + lam*h, at most E expansions (default 48); h = Q of the step that made the node
  qstar-lookahead[:E] Q* with the paper's h: max Q over the k steps proposed at the node (one proposal round early)
"""

DEFAULT_METHODS = "greedy,best-of-n,beam,qstar"
DEFAULT_METHODS_NO_QVM = "greedy,majority,beam,qstar"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate greedy, best-of-N, beam search and Q* side by side",
        description="Runs each method on the same problems with the same policy, process reward and QVM, many "
        "problems in flight, and prints accuracy (95% Wilson interval), generated and forwarded tokens and wall "
        "time per problem, then the paired difference of Q* against each other method (bootstrap 95% interval "
        "and exact McNemar p). With --records every finished record is on disk at once; Ctrl-C keeps them and "
        "prints the table so far, and --resume continues the run.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="0:5")
    add_common(p)
    add_search(p)
    add_prompt(p, fewshot=True)
    add_server(p)
    add_shard(p)
    p.add_argument("--methods", default=None, help=f"comma-separated methods (default {DEFAULT_METHODS}; without a QVM {DEFAULT_METHODS_NO_QVM})")
    p.add_argument("--num-solutions", type=positive_int, default=1, help="Q* keeps searching until this many solutions, then answers with the best f (default 1)")
    p.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="when Q* ends its budget without a solution, complete its best open path greedily (default on: it won on the "
                   "development split; --no-fallback answers nothing, as plain A* does)")
    p.add_argument("--records", metavar="FILE", help="append every finished record here (JSON Lines, with the run's settings as a header)")
    p.add_argument("--resume", action="store_true", help="continue --records FILE: skip the (method, problem) pairs it holds")
    p.add_argument("--json", metavar="FILE", help="write summaries, comparisons and every record as one JSON document at the end")
    p.add_argument("--plot", metavar="PNG", help="write accuracy against generated tokens per method (needs matplotlib)")
    p.add_argument("--output-path", metavar="DIR", help="write records.jsonl, results.json, table.txt and plot.png (with matplotlib) "
                   "into DIR, created if missing; --records/--json/--plot still name their own files")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the eval as --ray-workers shards on Ray actors (a lost actor's shard is resubmitted and resumes from "
                   "its record file), then merge them into --records; ADDRESS of a running cluster, or none for a local instance "
                   "(pip install ray)")  # fmt: skip
    p.add_argument("--ray-workers", type=positive_int, default=None, metavar="N", help="shards (one actor each) with --ray (default: the cluster's CPUs; --resume needs the same N)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..methods import MethodSpecError, parse_methods

    # Everything that can be checked is checked before the model loads.
    out_dir = output_dir(args.output_path, "--output-path")
    table_path = None
    if out_dir is not None:
        args.records = args.records or str(out_dir / "records.jsonl")
        args.json = args.json or str(out_dir / "results.json")
        table_path = out_dir / "table.txt"
        if args.plot is None:
            try:
                import matplotlib  # noqa: F401

                args.plot = str(out_dir / "plot.png")
            except ImportError:
                print(f"qstar: warning: no plot in {out_dir}: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    if args.resume and args.records is None:
        raise CLIError("--resume continues a --records FILE (or --output-path DIR); give it")
    if args.ray is not None:
        from .ray_eval import run as run_on_ray

        return run_on_ray(args, getattr(args, "argv", []))
    for path, name in ((args.records, "--records"), (args.json, "--json"), (args.plot, "--plot")):
        writable(path, name)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    settings = policy_settings(args)
    has_qvm = qvm_name(args) != "none"
    options = search_options(args)
    served = server_options(args)
    loaded = load_task(args, settings, purpose="eval")
    shard = apply_shard(args, loaded)
    temperature = settings.temperature if options["temperature"] is None else options["temperature"]
    try:
        methods = parse_methods(default_methods(args) if args.methods is None else args.methods, k=args.k, lam=args.lam, temperature=temperature,
                                max_steps=settings.max_steps, num_solutions=args.num_solutions, fallback=args.fallback, has_qvm=has_qvm,
                                aggregate=loaded.aggregate, greedy_first=args.greedy_first is not False)  # fmt: skip
    except MethodSpecError as e:
        raise CLIError(f"--methods: {e}") from None
    check_qvm(args)
    plan = plan_model(args, settings, loaded.fewshot)
    plan.check_task(loaded)
    hf_options = policy_options(args, loaded.task(plan.policy))
    fresh = args.records is not None and (not os.path.exists(args.records) or os.path.getsize(args.records) == 0)
    writer = _writer(args, loaded, methods, options, settings, shard)

    from ..evaluation import compare, evaluate, format_comparisons, format_table, reports_from_records
    from ..policy.server import ServerError
    from ..pretrained import search_setup

    setup_torch(args)
    try:
        policy = plan.load()
        qvm = load_qvm(args, policy)
        try:
            setup = search_setup(policy, qvm, seed=args.seed, **options, **served, **hf_options)
        except ValueError as e:
            raise setup_error(e) from None
        except ServerError as e:
            raise CLIError(f"--server: {e}") from None
    except CLIError:
        if writer is not None:  # the model did not load: leave no header-only file behind
            writer.close()
            if fresh:
                os.remove(args.records)
        raise
    print(f"{len(loaded.problems)} problems ({loaded.name}), policy {policy.path}, QVM {qvm_name(args)}, {setup.describe()}", file=sys.stderr)
    start = time.perf_counter()
    names = [m.name for m in methods]
    stopped = False
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        reports = evaluate(loaded.task(policy), methods, setup.expand, loaded.problems, decode=policy.decode, seed=args.seed,
                           concurrency=concurrency(args), writer=writer, progress=not args.no_progress)  # fmt: skip
    except KeyboardInterrupt:
        stopped = True
        if writer is None:
            print("qstar: interrupted; without --records nothing was kept", file=sys.stderr)
            return 130
        reports = reports_from_records(writer.records, names)
        print(f"qstar: interrupted; {len(writer.records)} finished records are in {writer.path} (--resume continues)", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if writer is not None:
            writer.close()
    ref = next((r for r in reports if r.method.startswith("qstar")), None)
    comparisons = [compare(ref, r, common=True) for r in reports if ref is not None and r is not ref and r.records and ref.records]
    text = format_table(reports) + ("\n" + format_comparisons(comparisons) if comparisons else "")
    print(text)
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    if table_path is not None:
        table_path.write_text(f"{len(loaded.problems)} problems ({loaded.name}), policy {policy.path}, QVM {qvm_name(args)}, {setup.describe()}\n"
                              f"{text}\n", encoding="utf-8")  # fmt: skip
        print(f"table written to {table_path}")
    if args.json is not None:
        _write_json(args.json, loaded, policy, args, reports, comparisons)
    if args.plot is not None and not stopped:
        from ..evaluation import plot

        plot(reports, args.plot, title=f"{loaded.name}; {setup.describe()}")
        print(f"plot written to {args.plot}")
    return 130 if stopped else 0


def default_methods(args: argparse.Namespace) -> str:
    """The methods run without --methods: best-of-n needs a QVM, so without one (a user's model
    and no --qvm, or --qvm none) majority vote takes its place."""
    return DEFAULT_METHODS if qvm_name(args) != "none" else DEFAULT_METHODS_NO_QVM


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _writer(args: argparse.Namespace, loaded: Any, methods: list[Any], options: dict[str, Any], settings: Any, shard: tuple[int, int] | None) -> Any:
    if args.records is None:
        return None
    from ..records import RecordFileError, RecordWriter

    qvm = "default" if args.qvm is None and args.model is None else qvm_name(args)  # no machine paths in record files
    header = {"task": loaded.name, "model": args.model or "default", "qvm": qvm, "seed": args.seed, "k": args.k, "lam": args.lam,
              "methods": [m.name for m in methods], "search": {k: v for k, v in options.items()}}  # fmt: skip
    # What else changes the records (a file written before these existed resumes: only shared keys are compared).
    header["policy"] = {"dtype": args.dtype, "max_steps": settings.max_steps, "max_step_tokens": settings.max_step_tokens, "top_p": settings.top_p,
                        "min_p": args.min_p, "greedy_first": {None: "qstar", True: "all", False: "none"}[args.greedy_first], "chat_template": args.apply_chat_template,
                        "system_instruction": args.system_instruction, "num_fewshot": args.num_fewshot}  # fmt: skip
    header["served"] = bool(args.server)  # a key of its own: files written before it existed still resume
    if shard is not None:  # what qstar merge checks: the shard's problems, so a lost one is reported
        header["shard"] = {"index": shard[0], "count": shard[1], "ids": [p.id for p in loaded.problems]}
    try:
        return RecordWriter(args.records, header, resume=args.resume)
    except RecordFileError as e:
        raise CLIError(f"--records: {e}") from None


def _write_json(path: str, loaded: Any, policy: Any, args: argparse.Namespace, reports: list[Any], comparisons: list[Any]) -> None:
    import json
    from dataclasses import asdict

    doc = {"task": loaded.name, "policy": str(policy.path), "qvm": qvm_name(args), "args": {k: v for k, v in vars(args).items() if k != "run"},
           "summaries": [asdict(r.summary) for r in reports], "comparisons": [asdict(c) for c in comparisons],
           "reports": [{"method": r.method, "records": [x.to_dict() for x in r.records]} for r in reports]}  # fmt: skip
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"records written to {path}")
