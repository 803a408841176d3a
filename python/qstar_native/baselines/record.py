"""What every method returns for one problem, and the one way budgets are measured.

All methods measure the same way: the policy's ``tokens_generated`` and ``tokens_forwarded``
counters are read before and after the problem, and the wall clock around it. Scorers (QVM, PRM)
are not counted in these tokens: their cost is the same per scored step for every method and is
reported by the scorers themselves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..engine import as_tokens
from ..protocols import StepPolicy, Task
from ..rollout import extend
from ..types import Node

__all__ = ["Meter", "ProblemRecord", "StepScorer", "make_nodes"]

StepScorer = Callable[[list[Node], Sequence[Sequence[Any]]], Sequence[Sequence[float]]]
"""``(nodes, candidates) -> one float per candidate of each node``: the shape of
``qstar_native.value`` reward and value functions (QVMScorer, PRMScorer, logprob_reward...)."""


@dataclass(frozen=True)
class ProblemRecord:
    """One method's result on one problem.

    ``correct`` is ``reward >= 1.0`` (a full outcome reward); ``answer`` is ``task.answer`` of the
    completion; ``extra`` holds method-specific facts (expansions, stop reason, votes...).
    """

    question_id: str
    method: str
    completion: str
    answer: str | None
    reward: float
    correct: bool
    tokens_generated: int
    tokens_forwarded: int
    wall_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Meter:
    """Measures one problem: counter deltas of the policy and wall time.

    >>> class P: tokens_generated = 5; tokens_forwarded = 9
    >>> p = P(); m = Meter(p); p.tokens_generated += 3
    >>> m.generated
    3
    """

    def __init__(self, policy: StepPolicy) -> None:
        for attr in ("tokens_generated", "tokens_forwarded"):
            if not isinstance(getattr(policy, attr, None), (int, np.integer)):
                raise TypeError(f"policy {type(policy).__name__} has no int counter {attr!r}; a StepPolicy counts its tokens")
        self.policy = policy
        self._gen0, self._fwd0 = int(policy.tokens_generated), int(policy.tokens_forwarded)
        self._t0 = time.perf_counter()

    @property
    def generated(self) -> int:
        return int(self.policy.tokens_generated) - self._gen0

    @property
    def forwarded(self) -> int:
        return int(self.policy.tokens_forwarded) - self._fwd0

    def record(self, task: Task, problem: Any, method: str, completion: str, **extra: Any) -> ProblemRecord:
        """The record of this problem, its completion scored by the task (timing stops here)."""
        wall = time.perf_counter() - self._t0
        reward = float(task.outcome(problem, completion))
        return ProblemRecord(
            question_id=task.problem_id(problem),
            method=method,
            completion=completion,
            answer=task.answer(completion),
            reward=reward,
            correct=reward >= 1.0,
            tokens_generated=self.generated,
            tokens_forwarded=self.forwarded,
            wall_seconds=wall,
            extra=extra,
        )


def make_nodes(root: Any, paths: Sequence[Sequence[Any]]) -> list[Node]:
    """Search-style nodes for states root + path (so value-package scorers can score them)."""
    root_arr = as_tokens(root, "root")
    out = []
    for i, steps in enumerate(paths):
        tokens = extend(root_arr, steps)
        out.append(Node(id=i, problem=0, depth=len(steps), g=0.0, h=0.0, f=0.0, tokens=tokens, steps=[as_tokens(s.tokens) for s in steps]))
    return out


def check_scores(name: str, out: Any, candidates: Sequence[Sequence[Any]]) -> list[list[float]]:
    """One finite float per candidate, or a ValueError naming the scorer argument."""
    if out is None or len(out) != len(candidates):
        raise ValueError(f"{name} returned {None if out is None else len(out)} lists for {len(candidates)} nodes; return one list per node")
    rows = []
    for i, (vals, cands) in enumerate(zip(out, candidates)):
        row = [float(v) for v in vals]
        if len(row) != len(cands) or not all(np.isfinite(row)):
            raise ValueError(f"{name} returned {row} for node {i} with {len(cands)} candidates; return one finite float per candidate")
        rows.append(row)
    return rows
