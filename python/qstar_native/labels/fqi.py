"""Fitted Q-iteration (the paper's section 4.2, offline): labels from the previous iteration's QVM.

For every (s, a) of offline trajectories, with s' the state after a::

    label_l(s, a) = r(s, a) + gamma * max over the top-K next steps a' of s' of Q_{l-1}(s', a')

(no bootstrap when a is terminal; ``Q_0`` is ``q0``, zero by default). After each iteration the
labels are refitted (``fit(items, rows) -> q_fn``) and the new ``q_fn`` scores the next one. The
top-K next steps of each s' are proposed once by the policy and reused by every iteration.

Iteration ``l`` is written under method ``f"{method}_iter{l}"``, so an interrupted run resumes
inside the iteration it was in: finished iterations are refitted from their rows in the file
(``fit`` must be deterministic for a resumed run to equal an uninterrupted one).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..protocols import Policy
from ..rollout import propose_many
from ._loop import check_batch_size, label_items
from .items import StateAction
from .rollout_labels import Outcome
from .rows import LabelRow, LabelWriter

__all__ = ["Fit", "QFn", "fitted_q_iteration", "iteration_method"]

QFn = Callable[[Sequence[StateAction]], Sequence[float]]
"""``q_fn(items) -> Q(state, candidate)`` per item (a QVM scoring ``item.next_state``, a table...)."""
Fit = Callable[[list[StateAction], list[LabelRow]], QFn]
"""``fit(items, rows) -> q_fn``: regress on one iteration's labels (``rows[i]`` labels ``items[i]``)."""


def iteration_method(method: str, iteration: int) -> str:
    """The method name rows of one iteration are written under.

    >>> iteration_method("fqi", 3)
    'fqi_iter3'
    """
    return f"{method}_iter{iteration}"


def _zero_q(items: Sequence[StateAction]) -> list[float]:
    return [0.0] * len(items)


def fitted_q_iteration(
    items: Sequence[StateAction],
    policy: Policy,
    outcome: Outcome,
    *,
    fit: Fit,
    gamma: float,
    k: int,
    iterations: int,
    temperature: float = 0.0,
    seed: int = 0,
    reward: Callable[[StateAction], float] | None = None,
    q0: QFn | None = None,
    writer: LabelWriter | None = None,
    batch_size: int = 64,
    method: str = "fqi",
    progress: bool = True,
) -> list[LabelRow]:
    """Labels of the last of ``iterations`` rounds of fitted Q-iteration, one row per item.

    Args:
        items: (state, step) pairs of offline trajectories (:func:`state_actions`).
        policy: proposes the top-``k`` next steps of each s' (``temperature`` 0: greedy, so one
            step; the paper samples K at a positive temperature).
        outcome: ``outcome(problem, completion_text)``; the default reward is the outcome of a
            terminal step and 0 for the others.
        fit: ``fit(items, rows) -> q_fn``, called after each iteration but the last.
        gamma: discount in [0, 1]. iterations: L >= 1.
        reward: r(s, a) of an item, replacing the default.
        q0: Q of iteration 0 (default: 0 everywhere).
        writer, batch_size, progress: as in :func:`best_of_rollouts`.

    Example: on a chain whose last step scores 1, exact tabular fitting gives
    ``label(s_t, a_t) = gamma ** (T - 1 - t)`` once ``iterations >= T`` (see tests/test_labels.py).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (next steps proposed per state), got {k!r}")
    if not callable(fit):
        raise TypeError("fit must be callable: fit(items, rows) -> q_fn")
    check_batch_size(batch_size)
    items = list(items)
    writer = writer if writer is not None else LabelWriter(None)

    def default_reward(it: StateAction) -> float:
        return float(outcome(it.problem, it.text)) if it.candidate.terminal else 0.0

    r_fn = reward if reward is not None else default_reward
    successors: dict[int, list[StateAction]] = {}  # id(item) -> next items, proposed on first need

    def next_items(batch: list[StateAction]) -> list[list[StateAction]]:
        need = [it for it in batch if not it.candidate.terminal and id(it) not in successors]
        for lo in range(0, len(need), batch_size):
            chunk = need[lo : lo + batch_size]
            props = propose_many(policy, [it.next_state for it in chunk], k, temperature=temperature, seed=seed)
            for it, steps in zip(chunk, props):
                successors[id(it)] = [StateAction(it.question_id, it.problem, it.root, it.steps + (it.candidate,), s) for s in steps]
        return [[] if it.candidate.terminal else successors[id(it)] for it in batch]

    rows: list[LabelRow] = []
    q_prev_holder: list[QFn | None] = [None]
    for l in range(1, iterations + 1):
        prev_rows = rows

        def q_prev() -> QFn:  # fitted lazily: an iteration already in the file needs no fit
            q = q_prev_holder[0]
            if q is None:
                q = q_prev_holder[0] = (q0 or _zero_q) if l == 1 else fit(items, prev_rows)
            return q

        def label(batch: list[StateAction]) -> list[float]:
            nexts = next_items(batch)
            flat = [n for ns in nexts for n in ns]
            qs = [float(q) for q in q_prev()(flat)] if flat else []
            if len(qs) != len(flat):
                raise ValueError(f"q_fn returned {len(qs)} values for {len(flat)} items; return one Q per item")
            out, pos = [], 0
            for it, ns in zip(batch, nexts):
                best = max(qs[pos : pos + len(ns)], default=0.0)
                pos += len(ns)
                out.append(r_fn(it) + (0.0 if it.candidate.terminal else gamma * best))
            return out

        meta: dict[str, Any] = {"iteration": l, "gamma": gamma, "k": k}
        rows = label_items(items, label, method=iteration_method(method, l), writer=writer, batch_size=batch_size, progress=progress, meta=meta)
        q_prev_holder[0] = None
    return rows
