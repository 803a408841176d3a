"""Rollouts: complete many states with a :class:`~qstar_native.protocols.StepPolicy`, batched.

``n`` rollouts from a state are grown as a tree with multiplicities: the state asks for ``n``
samples, each distinct step drawn ``c`` times continues with ``c`` samples, and so on. That is
the same distribution as ``n`` independent rollouts (each sample is an independent draw), but a
step shared by several rollouts is generated once. All open states of all rollouts, across all
start states, go to the policy together: one ``propose`` call per depth level.

Example (a policy that always answers in one step):

    >>> from qstar_native.protocols import Step, per_state
    >>> class Done:
    ...     tokens_generated = tokens_forwarded = 0
    ...     def propose(self, states, k, *, temperature, seed):
    ...         return [[Step([9], "#### 4\\n", terminal=True, count=c)] for c in per_state(k, len(states))]
    >>> [c.text for c in rollout(Done(), [1, 2], max_steps=3, temperature=0.0, seed=0).leaves]
    ['#### 4\\n']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .engine import as_tokens
from .protocols import StepPolicy, check_proposals, per_state
from .types import TokenArray, Tokens

__all__ = ["Completion", "Rollouts", "extend", "rollout", "rollout_many"]


@dataclass(frozen=True)
class Completion:
    """One distinct way a state was completed.

    ``steps`` are the steps the rollout generated (the start state's own steps excluded);
    ``count`` is how many of the rollouts took exactly this path; ``terminal`` is False when the
    path stopped at ``max_steps`` or at a state with no proposals.
    """

    steps: tuple[Any, ...]
    count: int
    terminal: bool

    @property
    def text(self) -> str:
        """The generated steps' texts, concatenated."""
        return "".join(s.text for s in self.steps)

    @property
    def tokens(self) -> TokenArray:
        """The generated steps' tokens, concatenated."""
        return extend(np.zeros(0, dtype=np.int32), self.steps)


@dataclass(frozen=True)
class Rollouts:
    """All completions of one start state, in depth-first order of the rollout tree."""

    leaves: tuple[Completion, ...]

    @property
    def n(self) -> int:
        """Rollouts that produced a completion (the requested ``n`` unless a policy proposed fewer)."""
        return sum(c.count for c in self.leaves)


def extend(state: Tokens, steps: Sequence[Any]) -> TokenArray:
    """``state`` followed by every step's tokens, as one int32 array.

    >>> from qstar_native.protocols import Step
    >>> extend([1], [Step([2, 3], "a")]).tolist()
    [1, 2, 3]
    """
    parts = [as_tokens(state, "state")] + [as_tokens(s.tokens, "step tokens") for s in steps]
    return np.concatenate(parts).astype(np.int32, copy=False)


def greedy_steps(policy: StepPolicy, state: Tokens, *, max_steps: int, seed: int) -> list[Any]:
    """The policy's most likely step (temperature 0), repeated from ``state`` until a terminal
    step, a state with no continuation, or ``max_steps`` steps; one ``propose`` call per step."""
    state, steps = as_tokens(state, "state"), []
    for _ in range(max_steps):
        props = check_proposals(policy, policy.propose([state], [1], temperature=0.0, seed=seed), [1])[0]
        if not props:
            break
        steps.append(props[0])
        state = extend(state, [props[0]])
        if props[0].terminal:
            break
    return steps


def rollout_many(
    policy: StepPolicy,
    states: Sequence[Tokens],
    n: int | Sequence[int],
    *,
    max_steps: int,
    temperature: float,
    seed: int,
) -> list[Rollouts]:
    """``n`` rollouts (one int, or one per state) from each state, at most ``max_steps`` steps each.

    One ``policy.propose`` call per depth level for all open paths of all states; each path asks
    for as many samples as rollouts it carries.
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    ns = per_state(n, len(states))
    # An open path: (start index, its position in the tree as child indices, state tokens, steps, count).
    open_: list[tuple[int, tuple[int, ...], TokenArray, tuple[Any, ...], int]] = [
        (i, (), as_tokens(s, f"states[{i}]"), (), c) for i, (s, c) in enumerate(zip(states, ns))
    ]
    leaves: list[tuple[int, tuple[int, ...], Completion]] = []
    for _ in range(max_steps):
        if not open_:
            break
        ks = [p[4] for p in open_]
        proposals = check_proposals(policy, policy.propose([p[2] for p in open_], ks, temperature=temperature, seed=seed), ks)
        next_open = []
        for (i, pos, state, steps, count), props in zip(open_, proposals):
            if not props:
                leaves.append((i, pos, Completion(steps, count, terminal=False)))
            for j, step in enumerate(props):
                c = int(getattr(step, "count", 1))
                path = steps + (step,)
                if step.terminal:
                    leaves.append((i, pos + (j,), Completion(path, c, terminal=True)))
                else:
                    next_open.append((i, pos + (j,), extend(state, [step]), path, c))
        open_ = next_open
    leaves += [(i, pos, Completion(steps, count, terminal=False)) for i, pos, _, steps, count in open_]
    leaves.sort(key=lambda leaf: (leaf[0], leaf[1]))  # depth-first order: independent of batching
    out: list[list[Completion]] = [[] for _ in states]
    for i, _, comp in leaves:
        out[i].append(comp)
    return [Rollouts(tuple(cs)) for cs in out]


def rollout(policy: StepPolicy, state: Tokens, *, max_steps: int, temperature: float, seed: int, n: int = 1) -> Rollouts:
    """``n`` rollouts from one state (see :func:`rollout_many`)."""
    return rollout_many(policy, [state], n, max_steps=max_steps, temperature=temperature, seed=seed)[0]
