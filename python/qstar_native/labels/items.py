"""What gets labelled: (state, candidate step) pairs, taken from trajectories.

A :class:`Trajectory` is one complete (or cut-off) solution of a question; :func:`state_actions`
turns trajectories into the :class:`StateAction` pairs along them (state = question + steps so
far, action = the next step), deduplicated by text. :func:`sample_trajectories` draws the
policy's own trajectories, batched through :func:`~qstar_native.rollout.rollout_many`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..protocols import Policy, Task
from ..rollout import extend, propose_many, rollout_many
from ..types import TokenArray, as_tokens
from .rows import LabelRow, RowKey

__all__ = ["StateAction", "Trajectory", "sample_trajectories", "sibling_items", "state_actions"]


@dataclass(frozen=True)
class Trajectory:
    """A solution path of one question: its steps (Step-like: tokens, text, terminal) and the
    outcome reward of their concatenated text. ``count``: how many samples drew it."""

    question_id: str
    problem: Any
    root: TokenArray
    steps: tuple[Any, ...]
    reward: float
    count: int = 1

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)


@dataclass(frozen=True)
class StateAction:
    """A state (question ``root`` + ``steps``) and a candidate next step: one label to make."""

    question_id: str
    problem: Any
    root: TokenArray
    steps: tuple[Any, ...]
    candidate: Any

    @property
    def state(self) -> TokenArray:
        """Tokens of the state before the candidate."""
        return extend(self.root, self.steps)

    @property
    def next_state(self) -> TokenArray:
        """Tokens of the state after the candidate: where rollouts start."""
        return extend(self.root, self.steps + (self.candidate,))

    @property
    def text(self) -> str:
        """The completion so far, candidate included (steps' texts joined)."""
        return "".join(s.text for s in self.steps) + self.candidate.text

    def key(self, method: str) -> RowKey:
        return (method, self.question_id, tuple(s.text for s in self.steps), self.candidate.text)

    def row(self, label: float, method: str, meta: dict[str, Any] | None = None) -> LabelRow:
        return LabelRow(self.question_id, tuple(s.text for s in self.steps), self.candidate.text, float(label), method, dict(meta or {}))


def state_actions(trajectories: Iterable[Trajectory]) -> list[StateAction]:
    """Every (state, next step) along the trajectories, first occurrence kept (by text key).

    >>> from qstar_native.protocols import Step
    >>> a, b = Step([1], "a\\n"), Step([2], "b\\n", terminal=True)
    >>> t = Trajectory("q", None, as_tokens([0]), (a, b), reward=1.0)
    >>> [(len(x.steps), x.candidate.text) for x in state_actions([t, t])]
    [(0, 'a\\n'), (1, 'b\\n')]
    """
    out: list[StateAction] = []
    seen: set[RowKey] = set()
    for t in trajectories:
        root = as_tokens(t.root, f"root of trajectory {t.question_id!r}")
        for i, step in enumerate(t.steps):
            item = StateAction(t.question_id, t.problem, root, tuple(t.steps[:i]), step)
            key = item.key("")
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out


def sample_trajectories(
    task: Task,
    policy: Policy,
    problems: Sequence[Any],
    *,
    n: int,
    temperature: float,
    seed: int,
    max_steps: int,
) -> list[Trajectory]:
    """``n`` sampled solutions per problem from the policy (distinct paths, with counts), each
    scored with ``task.outcome``; all problems' rollouts batched together."""
    roots = [as_tokens(task.root(p), f"task.root(problems[{i}])") for i, p in enumerate(problems)]
    outs = rollout_many(policy, roots, n, max_steps=max_steps, temperature=temperature, seed=seed)
    return [
        Trajectory(task.problem_id(p), p, root, leaf.steps, float(task.outcome(p, leaf.text)), leaf.count)
        for p, root, out in zip(problems, roots, outs)
        for leaf in out.leaves
        if leaf.steps
    ]


def sibling_items(items: Sequence[StateAction], policy: Policy, *, k: int, temperature: float, seed: int) -> list[StateAction]:
    """``items`` plus, for every state among them, up to ``k`` further candidate steps the policy
    proposes there (its siblings), deduplicated by text. Labels of siblings are what teach a QVM
    to tell good steps from bad ones at the same state, not just easy questions from hard ones.

    The proposals use their own seed stream (``seed + 1``), so they are fresh samples, not the
    trajectory's own step again by construction.
    """
    out: list[StateAction] = []
    seen: set[RowKey] = set()
    states: dict[tuple[str, tuple[str, ...]], StateAction] = {}
    for it in items:
        key = it.key("")
        if key not in seen:
            seen.add(key)
            out.append(it)
        states.setdefault((it.question_id, tuple(s.text for s in it.steps)), it)
    reps = list(states.values())
    proposals = propose_many(policy, [it.state for it in reps], k, temperature=temperature, seed=seed + 1)
    for it, steps in zip(reps, proposals):
        for step in steps:
            sib = StateAction(it.question_id, it.problem, it.root, it.steps, step)
            key = sib.key("")
            if key not in seen:
                seen.add(key)
                out.append(sib)
    return out
