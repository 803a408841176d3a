"""``qstar label``: Q-value labels by best of rollouts (the paper's section 4.2)."""

from __future__ import annotations

import argparse
import json
import time

from .common import CLIError, add_calculator, add_common, add_task, load_policy, load_task, setup_torch

EXAMPLES = """examples:
  qstar label --seeds 2000:2003 --out labels.jsonl
  qstar label --model my_model --data train.jsonl --task gsm8k --rollouts 8 --out labels.jsonl
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "label", help="label (state, step) pairs with Q-values by best of rollouts",
        description="Samples solutions from the policy, then labels every (state, next step) along them "
        "with the best outcome of --rollouts policy rollouts from the state after the step. Rows are "
        "appended to --out (JSONL) as they finish; rerunning resumes.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="2000:2003")
    add_common(p)
    add_calculator(p)
    p.add_argument("--out", required=True, help="label file (JSONL), created or resumed")
    p.add_argument("--trajectories", type=int, default=4, help="solutions sampled per problem (default 4)")
    p.add_argument("--rollouts", type=int, default=4, help="rollouts per (state, step) (default 4)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--chunk", type=int, default=20, help="problems labelled together (default 20)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..labels import LabelWriter, best_of_rollouts, sample_trajectories, state_actions
    from ..pretrained import search_setup

    for name in ("trajectories", "rollouts", "chunk"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    setup_torch(args)
    policy = load_policy(args)
    loaded = load_task(args, policy, purpose="train")
    calculator = None if args.calculator is None else args.calculator == "on"  # unset: the policy's qstar.json
    step_policy = search_setup(policy, seed=args.seed, calculator=calculator).step_policy
    max_steps = policy.settings.max_steps
    start, n_rows, positive = time.perf_counter(), 0, 0
    with LabelWriter(args.out) as writer:
        for lo in range(0, len(loaded.problems), args.chunk):
            chunk = loaded.problems[lo : lo + args.chunk]
            step_policy.reset_cache()
            trajectories = sample_trajectories(loaded.task, step_policy, chunk, n=args.trajectories, temperature=args.temperature, seed=args.seed, max_steps=max_steps)
            items = state_actions(trajectories)
            rows = best_of_rollouts(items, step_policy, loaded.task.outcome, n=args.rollouts, temperature=args.temperature, max_steps=max_steps, seed=args.seed, writer=writer, progress=False)
            n_rows += len(rows)
            positive += sum(r.label >= 1.0 for r in rows)
            print(json.dumps({"problems": lo + len(chunk), "of": len(loaded.problems), "rows": n_rows, "positive": positive,
                              "tokens_generated": step_policy.tokens_generated, "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    print(f"{n_rows} labels ({positive} with a successful rollout) for {len(loaded.problems)} problems ({loaded.name}) in {args.out}")
    return 0
