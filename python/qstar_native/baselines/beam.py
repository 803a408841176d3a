"""Step-level beam search: keep the ``width`` best partial solutions by a step scorer.

Each round, every live beam proposes ``k`` next steps (all beams in one ``propose`` call); the
children are scored (Q of (state, step) from a QVM, or a PRM's step reward) and the best
``width - finished`` of them survive (ties: earlier beam, earlier step). Terminal survivors are
finished solutions; the search ends when ``width`` solutions are finished, no beam is left, or
after ``max_steps``. The best finished solution by score is the answer (the best live beam when
none finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocols import StepPolicy, Task, check_proposals
from ..rollout import extend
from .record import Meter, ProblemRecord, StepScorer, check_scores, make_nodes

__all__ = ["BeamSearch", "beam_search"]


@dataclass(frozen=True)
class BeamSearch:
    """Step-level beam search (see the module docstring).

    Args:
        width: beams kept. k: next steps proposed per beam.
        score: the step scorer ranking children (e.g. a QVMScorer or PRMScorer).
        temperature: the proposals' sampling temperature. max_steps: depth limit.
    """

    width: int
    k: int
    score: StepScorer
    temperature: float = 0.9
    max_steps: int = 16

    def __post_init__(self) -> None:
        for name in ("width", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not callable(self.score):
            raise TypeError("score must be a StepScorer: (nodes, candidates) -> one float per candidate")

    @property
    def name(self) -> str:
        return f"beam_w{self.width}_k{self.k}"

    def __call__(self, task: Task, policy: StepPolicy, problem: Any, *, seed: int = 0) -> ProblemRecord:
        meter = Meter(policy)
        root = task.root(problem)
        beams: list[tuple[tuple[Any, ...], float]] = [((), 0.0)]
        finished: list[tuple[tuple[Any, ...], float]] = []
        rounds = 0
        while beams and len(finished) < self.width and rounds < self.max_steps:
            rounds += 1
            paths = [p for p, _ in beams]
            ks = [self.k] * len(paths)
            props = check_proposals(policy, policy.propose([extend(root, p) for p in paths], ks, temperature=self.temperature, seed=seed), ks)
            scores = check_scores("score", self.score(make_nodes(root, paths), props), props) if any(props) else [[] for _ in props]
            children = [(p + (s,), v) for p, ss, vs in zip(paths, props, scores) for s, v in zip(ss, vs)]
            # sorted() is stable: equal scores keep beam order, then step order
            keep = sorted(children, key=lambda c: -c[1])[: self.width - len(finished)]
            finished += [c for c in keep if c[0][-1].terminal]
            beams = [c for c in keep if not c[0][-1].terminal]
        pool = finished or beams
        best = max(pool, key=lambda c: c[1]) if pool else ((), 0.0)  # max keeps the first of equals
        text = "".join(s.text for s in best[0])
        return meter.record(task, problem, self.name, text, score=best[1], rounds=rounds, finished=len(finished))


def beam_search(width: int, k: int, score: StepScorer, **kw: Any) -> BeamSearch:
    """The step-level beam search method (see :class:`BeamSearch`)."""
    return BeamSearch(width=width, k=k, score=score, **kw)
