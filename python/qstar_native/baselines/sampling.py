"""Baselines that sample whole solutions: greedy chain of thought and best-of-N.

Best-of-N draws N solutions (one rollout tree, one ``propose`` call per depth) and keeps one,
ranked by the QVM (Q of the last step), by a PRM (its step rewards aggregated), or by majority
vote over final answers. Ties go to the solution drawn first (depth-first order), so runs repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from ..protocols import StepPolicy, Task
from ..rollout import Completion, greedy_steps, rollout
from ..types import Aggregate
from .record import Meter, ProblemRecord, StepScorer, check_scores, make_nodes

__all__ = ["BestOfN", "Greedy", "aggregate", "best_of_n", "greedy"]


def aggregate(values: Sequence[float], how: Aggregate) -> float:
    """Combines step rewards like the engine's g: min, max, sum, mean, product, last, zero.

    >>> aggregate([0.5, 0.2, 0.9], "min"), aggregate([0.5, 0.2], "product"), aggregate([], "min")
    (0.2, 0.1, 0.0)
    """
    if how == "zero" or not values:
        return 0.0
    fns: dict[str, Callable[[list[float]], float]] = {"min": min, "max": max, "sum": math.fsum, "mean": lambda v: math.fsum(v) / len(v), "product": math.prod, "last": lambda v: v[-1]}
    if how not in fns:
        raise ValueError(f"aggregate={how!r}; pick one of {sorted(fns) + ['zero']}")
    return float(fns[how](list(values)))


@dataclass(frozen=True)
class Greedy:
    """Greedy chain of thought: the policy's most likely step (temperature 0) until a terminal
    step or ``max_steps``."""

    max_steps: int = 16

    @property
    def name(self) -> str:
        return "greedy"

    def __call__(self, task: Task, policy: StepPolicy, problem: Any, *, seed: int = 0) -> ProblemRecord:
        meter = Meter(policy)
        steps = greedy_steps(policy, task.root(problem), max_steps=self.max_steps, seed=seed)
        return meter.record(task, problem, self.name, "".join(s.text for s in steps), steps=len(steps))


@dataclass(frozen=True)
class BestOfN:
    """N sampled solutions, one kept.

    Args:
        n: solutions sampled. temperature: their sampling temperature.
        rank: ``"majority"`` (most common ``task.answer``, count-weighted), ``"qvm"`` (``value`` of
            the last step: Q(s_T-1, a_T)), ``"prm"`` (``reward`` of every step, aggregated with
            ``aggregate``; the paper's GSM8K PRM aggregate is min).
        value / reward: scorers (:data:`StepScorer`) for ``"qvm"`` / ``"prm"``.
    """

    n: int
    rank: Literal["majority", "qvm", "prm"] = "majority"
    temperature: float = 0.9
    max_steps: int = 16
    value: StepScorer | None = None
    reward: StepScorer | None = None
    aggregate: Aggregate = "min"

    def __post_init__(self) -> None:
        if self.rank not in ("majority", "qvm", "prm"):
            raise ValueError(f"rank={self.rank!r}; pick 'majority', 'qvm' (needs value=) or 'prm' (needs reward=)")
        if self.rank == "qvm" and self.value is None:
            raise ValueError("rank='qvm' needs value= (a StepScorer such as QVMScorer)")
        if self.rank == "prm" and self.reward is None:
            raise ValueError("rank='prm' needs reward= (a StepScorer such as PRMScorer)")

    @property
    def name(self) -> str:
        return f"best_of_{self.n}_{self.rank}"

    def __call__(self, task: Task, policy: StepPolicy, problem: Any, *, seed: int = 0) -> ProblemRecord:
        meter = Meter(policy)
        root = task.root(problem)
        leaves = list(rollout(policy, root, n=self.n, max_steps=self.max_steps, temperature=self.temperature, seed=seed).leaves)
        if not leaves:
            return meter.record(task, problem, self.name, "", scores=[])
        if self.rank == "majority":
            scores = self._votes(task, leaves)
        elif self.rank == "qvm":
            assert self.value is not None  # checked in __post_init__
            scores = self._last_step(self.value, root, leaves)
        else:
            scores = self._path(root, leaves)
        best = max(range(len(leaves)), key=lambda i: (scores[i], -i))  # ties: drawn first
        return meter.record(task, problem, self.name, leaves[best].text, scores=scores, distinct=len(leaves))

    @staticmethod
    def _votes(task: Task, leaves: list[Completion]) -> list[float]:
        answers = [task.answer(c.text) for c in leaves]
        votes: dict[str, int] = {}
        for a, c in zip(answers, leaves):
            if a is not None:
                votes[a] = votes.get(a, 0) + c.count
        return [float(votes[a]) if a is not None else -1.0 for a in answers]

    @staticmethod
    def _last_step(scorer: StepScorer, root: Any, leaves: list[Completion]) -> list[float]:
        with_steps = [i for i, c in enumerate(leaves) if c.steps]
        nodes = make_nodes(root, [leaves[i].steps[:-1] for i in with_steps])
        cands = [[leaves[i].steps[-1]] for i in with_steps]
        got = check_scores("value", scorer(nodes, cands), cands) if nodes else []
        scores = [-math.inf] * len(leaves)
        for i, row in zip(with_steps, got):
            scores[i] = row[0]
        return scores

    def _path(self, root: Any, leaves: list[Completion]) -> list[float]:
        pairs = [(i, t) for i, c in enumerate(leaves) for t in range(len(c.steps))]
        nodes = make_nodes(root, [leaves[i].steps[:t] for i, t in pairs])
        cands = [[leaves[i].steps[t]] for i, t in pairs]
        assert self.reward is not None  # checked in __post_init__
        got = check_scores("reward", self.reward(nodes, cands), cands) if nodes else []
        per_leaf: list[list[float]] = [[] for _ in leaves]
        for (i, _), row in zip(pairs, got):
            per_leaf[i].append(row[0])
        return [aggregate(v, self.aggregate) if v else -math.inf for v in per_leaf]


def greedy(*, max_steps: int = 16) -> Greedy:
    """The greedy chain-of-thought method (see :class:`Greedy`)."""
    return Greedy(max_steps=max_steps)


def best_of_n(n: int, rank: Literal["majority", "qvm", "prm"] = "majority", **kw: Any) -> BestOfN:
    """The best-of-N method (see :class:`BestOfN`).

    >>> best_of_n(8, "majority").name
    'best_of_8_majority'
    """
    return BestOfN(n=n, rank=rank, **kw)
