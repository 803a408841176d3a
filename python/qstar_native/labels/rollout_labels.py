"""Q-value labels from completions (the paper's section 4.2, two of its three ways).

- :func:`best_of_rollouts`: from the state after (s, a), ``n`` rollouts of the policy itself;
  label = the best outcome among them (an estimate of Q* that improves with ``n``: with every
  path tried it is exactly the best reachable outcome).
- :func:`stronger_model_completion`: a stronger policy completes from (s, a); label = the outcome
  of its completion (the mean over its completions when ``n > 1``).

Both roll out a whole batch of items together (one ``propose`` call per depth level) and write
through :class:`~qstar_native.labels.LabelWriter`, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..protocols import Policy
from ..rollout import rollout_many
from ..types import Tokens
from ._loop import label_items
from .items import StateAction
from .rows import LabelRow, LabelWriter

__all__ = ["LabelRun", "Outcome", "best_of_rollouts", "label_problems", "stronger_model_completion"]

Outcome = Callable[[Any, str], float]
"""``outcome(problem, completion_text) -> reward`` (e.g. ``MathTask.outcome``)."""


def _rollout_outcomes(
    items: list[StateAction],
    policy: Policy,
    outcome: Outcome,
    *,
    n: int,
    temperature: float,
    max_steps: int,
    seed: int,
    starts: list[Tokens] | None = None,
) -> list[list[tuple[float, int]]]:
    """Per item, the (outcome, count) of each distinct completion; a terminal candidate is its
    own completion (no rollout)."""
    out: list[list[tuple[float, int]]] = [[] for _ in items]
    open_idx = [i for i, it in enumerate(items) if not it.candidate.terminal]
    for i, it in enumerate(items):
        if it.candidate.terminal:
            out[i] = [(float(outcome(it.problem, it.text)), n)]
    if open_idx:
        states = [items[i].next_state if starts is None else starts[i] for i in open_idx]
        rolled = rollout_many(policy, states, n, max_steps=max_steps, temperature=temperature, seed=seed)
        for i, r in zip(open_idx, rolled):
            it = items[i]
            out[i] = [(float(outcome(it.problem, it.text + leaf.text)), leaf.count) for leaf in r.leaves]
    return out


def best_of_rollouts(
    items: Sequence[StateAction],
    policy: Policy,
    outcome: Outcome,
    *,
    n: int,
    temperature: float,
    max_steps: int,
    seed: int = 0,
    writer: LabelWriter | None = None,
    batch_size: int = 32,
    method: str = "best_of_rollouts",
    progress: bool = True,
) -> list[LabelRow]:
    """Label = the best outcome of ``n`` policy rollouts from the state after each candidate.

    Args:
        items: the (state, candidate) pairs, e.g. ``state_actions(sample_trajectories(...))``.
        policy: the policy that rolls out (the paper: the policy being searched with).
        outcome: ``outcome(problem, completion_text) -> reward``.
        n: rollouts per item. temperature: sampling temperature (the paper: 0.9 math, 0.2 code).
        max_steps: steps per rollout; a rollout cut off here is scored as it stands.
        seed: sampling seed; with a Policy honouring the protocol's contract, labels depend
            only on (item, n, temperature, seed), so resumed runs match uninterrupted ones.
        writer: where rows go (and are resumed from); None keeps them in memory.
        batch_size: items rolled out together.

    Returns:
        One row per item, in item order (rows already in ``writer`` are returned, not remade).
    """
    def label(batch: list[StateAction]) -> list[float]:
        per_item = _rollout_outcomes(batch, policy, outcome, n=n, temperature=temperature, max_steps=max_steps, seed=seed)
        return [max(r for r, _ in results) for results in per_item]

    meta = {"rollouts": n, "temperature": temperature, "seed": seed}
    return label_items(items, label, method=method, writer=writer, batch_size=batch_size, progress=progress, meta=meta)


def stronger_model_completion(
    items: Sequence[StateAction],
    strong_policy: Policy,
    outcome: Outcome,
    *,
    max_steps: int,
    temperature: float = 0.0,
    n: int = 1,
    seed: int = 0,
    encode: Callable[[StateAction], Tokens] | None = None,
    writer: LabelWriter | None = None,
    batch_size: int = 32,
    method: str = "stronger_model",
    progress: bool = True,
) -> list[LabelRow]:
    """Label = the outcome of a stronger policy's completion from the state after each candidate
    (greedy by default; with ``n > 1`` samples, the count-weighted mean outcome).

    Args:
        encode: the state after the candidate in the strong policy's tokens, when its vocabulary
            differs from the policy's (e.g. ``lambda it: strong_tok.encode(prompt(it.problem) + it.text)``);
            by default ``item.next_state`` is used as it is.
        Other arguments as in :func:`best_of_rollouts`.
    """
    def label(batch: list[StateAction]) -> list[float]:
        starts = None if encode is None else [encode(it) for it in batch]
        per_item = _rollout_outcomes(batch, strong_policy, outcome, n=n, temperature=temperature, max_steps=max_steps, seed=seed, starts=starts)
        return [sum(r * c for r, c in results) / sum(c for _, c in results) for results in per_item]

    meta = {"completions": n, "temperature": temperature, "seed": seed, "model": type(strong_policy).__name__}
    return label_items(items, label, method=method, writer=writer, batch_size=batch_size, progress=progress, meta=meta)


@dataclass(frozen=True)
class LabelRun:
    """What :func:`label_problems` made: rows (all of them, old and new) and how many are positive."""

    rows: int
    positive: int
    problems: int


def label_problems(
    task: Any,
    policy: Policy,
    problems: Sequence[Any],
    *,
    writer: LabelWriter,
    trajectories: int = 4,
    rollouts: int = 4,
    siblings: int = 0,
    temperature: float = 0.7,
    max_steps: int = 12,
    seed: int = 0,
    chunk: int = 20,
    progress: bool = True,
) -> LabelRun:
    """Best-of-rollouts labels for problems, chunk by chunk (``qstar label``): ``trajectories``
    sampled solutions per problem, every (state, step) along them, plus ``siblings`` further
    proposals at each of those states, each labelled by ``rollouts`` rollouts. Rows go to
    ``writer`` as they finish; a rerun resumes."""
    from .._progress import progress_bar
    from .items import sample_trajectories, sibling_items, state_actions

    for name, v in (("trajectories", trajectories), ("rollouts", rollouts), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(siblings, bool) or not isinstance(siblings, int) or siblings < 0:
        raise ValueError(f"siblings must be an int >= 0 (extra proposals per state), got {siblings!r}")
    bar = progress_bar(len(problems), "label", progress)
    rows, positive = 0, 0
    try:
        for lo in range(0, len(problems), chunk):
            part = problems[lo : lo + chunk]
            trajs = sample_trajectories(task, policy, part, n=trajectories, temperature=temperature, seed=seed, max_steps=max_steps)
            items = state_actions(trajs)
            if siblings:
                items = sibling_items(items, policy, k=siblings, temperature=temperature, seed=seed)
            made = best_of_rollouts(items, policy, task.outcome, n=rollouts, temperature=temperature, max_steps=max_steps, seed=seed,
                                    writer=writer, batch_size=128, progress=False)  # fmt: skip
            rows += len(made)
            positive += sum(r.label >= 1.0 for r in made)
            bar.update(len(part))
    finally:
        bar.close()
    return LabelRun(rows, positive, len(problems))
