"""``qstar label``: Q-value labels by best of rollouts (the paper's section 4.2)."""

from __future__ import annotations

import argparse
import os
import time

from .common import (
    CLIError, add_calculator, add_common, add_prompt, add_server, add_shard, add_steps, add_task, apply_shard, finite, load_task, plan_model,
    policy_options, policy_settings, positive_int, setup_error, setup_torch, writable,
)  # fmt: skip

EXAMPLES = """examples:
  qstar label --seeds 2000:2003 --out labels.jsonl
  qstar label --seeds 2000:2003 --siblings 4 --rollouts 8 --out labels.jsonl    # sibling steps too
  qstar label --model my_model --data train.jsonl --task gsm8k --rollouts 8 --out labels.jsonl
  qstar label --model SmolLM2.gguf --server http://gpu-box:8080 --shard 0/4 --out labels0.jsonl   # one of 4 jobs; cat the 4 files
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label", help="label (state, step) pairs with Q-values by best of rollouts",
        description="Samples solutions from the policy, then labels every (state, next step) along them (and, with "
        "--siblings, further steps proposed at the same states) with the best outcome of --rollouts policy rollouts "
        "from the state after the step. Rows are appended to --out (JSONL) as they finish; rerunning resumes.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="2000:2003")
    add_common(p)
    add_calculator(p)
    add_steps(p)
    add_prompt(p, fewshot=True)
    add_server(p, values=False)
    add_shard(p)
    p.add_argument("--out", required=True, help="label file (JSONL), created or resumed")
    p.add_argument("--trajectories", type=positive_int, default=4, help="solutions sampled per problem (default 4)")
    p.add_argument("--rollouts", type=positive_int, default=4, help="rollouts per (state, step) (default 4)")
    p.add_argument("--siblings", type=int, default=0, help="further steps proposed at each state and labelled too (default 0)")
    p.add_argument("--temperature", type=finite, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--chunk", type=positive_int, default=20, help="problems labelled together (default 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..labels import LabelWriter, label_problems
    from ..labels.rows import read_labels
    from ..policy.server import ServerError

    if args.siblings < 0:
        raise CLIError(f"--siblings must be >= 0, got {args.siblings}")
    if args.temperature < 0:
        raise CLIError(f"--temperature must be >= 0, got {args.temperature}")
    writable(args.out, "--out")
    if args.data is not None and os.path.exists(args.out) and os.path.samefile(args.out, args.data):
        raise CLIError(f"--out {args.out} is the --data file; labels go to a file of their own (e.g. labels.jsonl)")
    try:
        if os.path.exists(args.out):
            read_labels(args.out)  # a data file given by mistake fails here, before the model loads
    except ValueError as e:
        raise CLIError(f"--out {args.out} is not a label file ({e}); give a new path or a file written by qstar label") from None
    settings = policy_settings(args)
    loaded = load_task(args, settings, purpose="train")
    apply_shard(args, loaded)  # label files hold rows alone: the shards' files concatenate (cat) into one
    plan = plan_model(args, settings, loaded.fewshot)
    plan.check_task(loaded)
    setup_torch(args)
    policy = plan.load()
    calculator = None if args.calculator is None else args.calculator == "on"  # unset: the policy's qstar.json
    options = policy_options(args, loaded.task(policy))
    try:
        if args.server:
            if calculator:
                raise CLIError("--calculator on: the calculator writes into the decode, which runs on the server; use --calculator off")
            hf = policy.server_policy(args.server, api=args.server_api, seed=args.seed, **options)
        else:
            hf = policy.hf_policy(calculator=calculator, seed=args.seed, **options)
    except ValueError as e:
        raise setup_error(e) from None
    except ServerError as e:
        raise CLIError(f"--server: {e}") from None
    start = time.perf_counter()
    with LabelWriter(args.out) as writer:
        run_ = label_problems(loaded.task(policy), hf, loaded.problems, writer=writer, trajectories=args.trajectories, rollouts=args.rollouts,
                              siblings=args.siblings, temperature=args.temperature, max_steps=settings.max_steps, seed=args.seed,
                              chunk=args.chunk)  # fmt: skip
    print(f"{run_.rows} labels ({run_.positive} with a successful rollout) for {run_.problems} problems ({loaded.name}) in {args.out}, "
          f"{time.perf_counter() - start:.0f} s, {hf.tokens_generated} tokens generated")  # fmt: skip
    return 0
