"""What every ``qstar`` command shares: options, loading the policy and the task, errors."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESERVED_EVAL_SEEDS = range(0, 1000)
"""GSM-Symbolic seeds kept for evaluation: never train or label on them."""
CHECKED_EVAL_SEEDS = range(0, 20)
"""Held-out seeds whose questions are removed from training problems (the evaluation uses these)."""


class CLIError(Exception):
    """A user error: printed as ``qstar: error: ...`` with exit status 2, no traceback."""


def add_common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        p.add_argument("--model", metavar="DIR", help="Hugging Face causal-LM directory (default: the embedded default policy)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0 or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_calculator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calculator", choices=("on", "off"), default=None,
                   help="make every <<expr=value>> result exact after each step (default: the policy's qstar.json; the embedded default: on)")


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """--temperature, --process-reward and --calculator as arguments of
    :func:`qstar_native.pretrained.search_setup` (unset: the policy's qstar.json)."""
    return {
        "temperature": args.temperature,
        "process_reward": "default" if args.process_reward is None else {"none": None}.get(args.process_reward, args.process_reward),
        "calculator": None if args.calculator is None else args.calculator == "on",
    }


def add_search(p: argparse.ArgumentParser) -> None:
    """Options of the Q* scoring shared by solve and eval."""
    p.add_argument("--qvm", metavar="DIR", help="Q-value model directory (default: the embedded one with the default policy; 'none' for h = 0)")
    p.add_argument("--process-reward", choices=("annotations", "grounded", "none"), default=None,
                   help="g's step reward: annotations (-1 per wrong <<expr=value>>), grounded (also -1 per operand the context never states), none (default: the policy's qstar.json)")
    p.add_argument("--k", type=int, default=4, help="next steps proposed per expansion (default 4)")
    p.add_argument("--lam", type=float, default=1.0, help="weight of h in f = g + lam*h (default 1)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the policy's qstar.json)")
    add_calculator(p)


def load_qvm(args: argparse.Namespace, policy: Any) -> tuple[Any, str]:
    """The QVM named by --qvm (default: the embedded one with the embedded policy) and its name."""
    from ..pretrained import DEFAULT_QVM_DIR
    from ..pretrained import load_qvm as load

    name = args.qvm if args.qvm is not None else (str(DEFAULT_QVM_DIR) if args.model is None and DEFAULT_QVM_DIR.is_dir() else "none")
    try:
        return (None if name == "none" else load(name, policy)), name
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--qvm: {e}") from None


def add_task(p: argparse.ArgumentParser, *, seeds: str) -> None:
    p.add_argument("--task", default="gsm-symbolic", help="task: gsm-symbolic (default); with --data: gsm8k or math")
    p.add_argument("--data", metavar="FILE", help="JSONL problems in GSM8K format (question, answer with '#### N'), or MATH with --task math")
    p.add_argument("--seeds", default=seeds, help=f"GSM-Symbolic seeds START:STOP, 100 problems each (default {seeds})")
    p.add_argument("--n", type=int, default=None, help="use only the first N problems")


def parse_range(text: str, name: str) -> range:
    try:
        start, _, stop = text.partition(":")
        r = range(int(start), int(stop)) if stop else range(int(start), int(start) + 1)
    except ValueError:
        raise CLIError(f"{name} must look like START:STOP (e.g. 0:5), got {text!r}") from None
    if len(r) == 0 or r.start < 0:
        raise CLIError(f"{name} {text!r} is empty or negative; give START:STOP with 0 <= START < STOP")
    return r


def setup_torch(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def load_policy(args: argparse.Namespace) -> Any:
    from transformers.utils import logging as hf_logging

    from ..pretrained import load_policy as load

    hf_logging.disable_progress_bar()  # a 1 MB model needs no "Loading weights" bar

    try:
        return load(args.model, device=args.device)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


@dataclass
class LoadedTask:
    """The task adapted to the policy's tokens, its problems, and the source (prompt text etc.)."""

    task: Any  # MathTask
    problems: list[Any]
    name: str


def load_task(args: argparse.Namespace, policy: Any, *, purpose: str) -> LoadedTask:
    """``purpose``: "eval" warns on seeds outside the held-out range, "train" refuses held-out seeds."""
    from ..tasks import DatasetFormatError, GsmSymbolic, ProblemSet, load_gsm8k_jsonl, load_math_jsonl
    from ..tasks.math_task import MathTask

    template = policy.settings.prompt_template
    if args.data is not None:
        loaders = {"gsm8k": load_gsm8k_jsonl, "gsm-symbolic": load_gsm8k_jsonl, "math": load_math_jsonl}
        if args.task not in loaders:
            raise CLIError(f"unknown --task {args.task!r} for --data; pick one of {sorted(loaders)}")
        if not Path(args.data).is_file():
            raise CLIError(f"--data {args.data}: no such file")
        try:
            source: Any = ProblemSet(loaders[args.task](args.data), template)
        except (DatasetFormatError, ValueError) as e:
            raise CLIError(f"--data: {e}") from None
        problems = list(source.problems)
        name = Path(args.data).name
    else:
        if args.task != "gsm-symbolic":
            raise CLIError(f"unknown --task {args.task!r}; pick gsm-symbolic, or gsm8k / math with --data FILE")
        seeds = parse_range(args.seeds, "--seeds")
        overlap = [s for s in seeds if s in RESERVED_EVAL_SEEDS]
        if purpose == "train" and overlap:
            raise CLIError(f"--seeds {args.seeds} overlaps seeds 0..999, reserved for evaluation; label and train on seeds >= 1000 (e.g. --seeds 2000:2003)")
        if purpose == "eval" and len(overlap) < len(seeds):
            print(f"qstar: warning: --seeds {args.seeds} goes past 0..999, the held-out range; the default policy trained on seeds 1000..1435", file=sys.stderr)
        source = GsmSymbolic(prompt_template=template)
        problems = list(source.problems(seeds))
        if purpose == "train":  # a few templates repeat questions across seeds: keep held-out ones out
            held_out = {p.question for p in source.problems(CHECKED_EVAL_SEEDS)}
            kept = [p for p in problems if p.question not in held_out]
            if len(kept) < len(problems):
                print(f"qstar: dropped {len(problems) - len(kept)} problems whose question also occurs in held-out seeds {CHECKED_EVAL_SEEDS.start}..{CHECKED_EVAL_SEEDS.stop - 1}", file=sys.stderr)
            problems = kept
        name = f"gsm-symbolic seeds {seeds.start}:{seeds.stop}"
    if args.n is not None:
        if args.n < 1:
            raise CLIError(f"--n must be >= 1, got {args.n}")
        problems = problems[: args.n]
    return LoadedTask(MathTask(source, encode=policy.encode), problems, name)
