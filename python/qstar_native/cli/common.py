"""What every ``qstar`` command shares: its options, and turning library errors into one line.

Commands parse and check everything they can (methods, ranges, data files, output paths) before
loading a model, then call library functions; no algorithm lives here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A user error: printed as ``qstar: error: ...`` with exit status 2, no traceback."""


def finite(text: str) -> float:
    """argparse type: a finite float."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite; give a finite number")
    return v


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return v


def add_common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    if model:
        p.add_argument("--model", metavar="DIR", help="Hugging Face causal-LM directory (default: the embedded default policy)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0 or auto (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def add_calculator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calculator", choices=("on", "off"), default=None,
                   help="write every <<expr=value>> result during decode (default: the policy's qstar.json; the embedded default: on)")


def add_search(p: argparse.ArgumentParser) -> None:
    """Options of the Q* scoring shared by solve and eval."""
    p.add_argument("--qvm", metavar="DIR", help="Q-value model directory (default: the embedded one with the default policy; 'none' for h = 0)")
    p.add_argument("--process-reward", choices=("annotations", "grounded", "none"), default=None,
                   help="g's step reward: annotations (-1 per wrong <<expr=value>>), grounded (also -1 per operand the context never states), none (default: the policy's qstar.json)")
    p.add_argument("--k", type=positive_int, default=4, help="next steps proposed per expansion (default 4)")
    p.add_argument("--lam", type=finite, default=1.0, help="weight of h in f = g + lam*h (default 1)")
    p.add_argument("--temperature", type=finite, default=None, help="sampling temperature (default: the policy's qstar.json)")
    p.add_argument("--concurrency", type=positive_int, default=None, help="searches in flight at once (default 16 on CPU, 64 on GPU)")
    add_calculator(p)


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """--temperature, --process-reward and --calculator as arguments of
    :func:`qstar_native.pretrained.search_setup` (unset: the policy's qstar.json)."""
    if args.temperature is not None and args.temperature < 0:
        raise CLIError(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    return {
        "temperature": args.temperature,
        "process_reward": "default" if args.process_reward is None else {"none": None}.get(args.process_reward, args.process_reward),
        "calculator": None if args.calculator is None else args.calculator == "on",
    }


def concurrency(args: argparse.Namespace) -> int:
    if args.concurrency is not None:
        return int(args.concurrency)
    return 64 if str(args.device).startswith("cuda") else 16


def qvm_name(args: argparse.Namespace) -> str:
    """The QVM directory --qvm names ("none" when there is none): by default the embedded QVM
    with the embedded policy, none with a user's model."""
    from ..pretrained import DEFAULT_QVM_DIR

    if args.qvm is not None:
        return str(args.qvm)
    return str(DEFAULT_QVM_DIR) if args.model is None and DEFAULT_QVM_DIR.is_dir() else "none"


def load_qvm(args: argparse.Namespace, policy: Any) -> Any:
    from ..pretrained import load_qvm as load

    name = qvm_name(args)
    try:
        return None if name == "none" else load(name, policy)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--qvm: {e}") from None


def add_task(p: argparse.ArgumentParser, *, seeds: str) -> None:
    p.add_argument("--task", default="gsm-symbolic", help="task: gsm-symbolic (default); with --data: gsm8k or math")
    p.add_argument("--data", metavar="FILE", help="JSONL problems in GSM8K format (question, answer with '#### N'), or MATH with --task math")
    p.add_argument("--seeds", default=seeds, help=f"GSM-Symbolic seeds START:STOP, 100 problems each (default {seeds})")
    p.add_argument("--n", "--limit", dest="n", type=positive_int, default=None, help="use only the first N problems")


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
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def policy_settings(args: argparse.Namespace) -> Any:
    """The policy directory's ``qstar.json`` settings, read without loading the model."""
    from ..pretrained import DEFAULT_POLICY_DIR, PolicySettings

    directory = Path(args.model) if args.model is not None else DEFAULT_POLICY_DIR
    if not directory.is_dir():
        raise CLIError(f"--model {directory}: no such directory; pass a directory written by save_pretrained (config.json, weights, tokenizer)")
    if not (directory / "config.json").is_file():
        raise CLIError(f"--model {directory}: no config.json, so not a Hugging Face model directory (save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")
    try:
        return PolicySettings.read(directory)
    except ValueError as e:
        raise CLIError(str(e)) from None


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
    """The problems, their source (prompt text etc.) and a name; ``task(policy)`` adapts the
    source to the policy's tokens."""

    source: Any
    problems: list[Any]
    name: str

    def task(self, policy: Any) -> Any:
        from ..tasks.math_task import MathTask

        return MathTask(self.source, encode=policy.encode)


def load_task(args: argparse.Namespace, settings: Any, *, purpose: str) -> LoadedTask:
    """The problems named by --task/--data/--seeds/--n (``purpose``: "eval" warns on seeds past
    the held-out range, "train" refuses held-out seeds)."""
    from ..tasks.load import ProblemSourceError, load_problems

    seeds = None if args.data is not None else parse_range(args.seeds, "--seeds")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            src = load_problems(task=args.task, data=args.data, seeds=seeds, n=args.n, purpose=purpose, prompt_template=settings.prompt_template)
        except ProblemSourceError as e:
            raise CLIError(f"--{'data' if args.data is not None else 'seeds' if 'seeds' in str(e) else 'task'}: {e}") from None
    for w in caught:
        print(f"qstar: warning: {w.message}", file=sys.stderr)
    return LoadedTask(src.task, src.problems, src.name)


def writable(path: str | None, name: str) -> None:
    """An output path must be creatable now, before any model loads."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{name} {path} is a directory; give a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{name} {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CLIError(f"{name} {path}: not writable")
