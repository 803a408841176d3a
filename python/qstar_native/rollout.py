"""Rollouts and one-step proposals from many states, on the scheduler (for labelling).

``n`` rollouts from a state are one sampling search: the state draws ``n`` samples, each distinct
step drawn ``c`` times continues with ``c`` samples, and so on (the same distribution as ``n``
independent rollouts, with shared prefixes generated once). All states' searches run in flight
together, one policy call per round, each with its own seed-derived samples, so results depend
only on (state, n, temperature, seed).

A *policy* here is anything with ``propose(batch) -> Steps`` and ``decode(ids) -> str`` (an
:class:`~qstar_native.policy.hf.HFPolicy`, or a scripted one in tests); its ``cache`` (if any)
is linked to the engines.

Example (a policy that always answers in one step):

    >>> import numpy as np
    >>> from qstar_native.batch import Steps
    >>> class Done:
    ...     def propose(self, batch):
    ...         n = len(batch)
    ...         return Steps(np.ones(n, np.int64), np.full(n, 9, np.int32), np.ones(n, np.int64),
    ...                      terminal=np.ones(n, bool), count=batch.k, texts=["#### 4\\n"] * n)
    ...     def decode(self, ids): return "#### 4\\n"
    >>> [(c.text, c.count) for c in rollout(Done(), [1, 2], n=3, max_steps=3, temperature=0.0, seed=0).leaves]
    [('#### 4\\n', 3)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .batch import Batch, Steps
from .config import SearchConfig
from .engine import Engine
from .protocols import Policy
from .scheduler import PolicyExpand, Scheduler, Search, single
from .types import Step, TokenArray, Tokens, as_tokens

__all__ = ["Completion", "Rollouts", "extend", "propose_many", "rollout", "rollout_many"]


@dataclass(frozen=True)
class Completion:
    """One distinct way a state was completed: the steps generated (the start state's own steps
    excluded), how many of the rollouts took exactly this path, and whether it ended with a
    terminal step (False: cut at ``max_steps``)."""

    steps: tuple[Step, ...]
    count: int
    terminal: bool

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def tokens(self) -> TokenArray:
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

    >>> extend([1], [Step([2, 3], "a")]).tolist()
    [1, 2, 3]
    """
    parts = [as_tokens(state, "state")] + [as_tokens(s.tokens, "step tokens") for s in steps]
    return np.concatenate(parts).astype(np.int32, copy=False)


def _path_steps(engine: Engine, node: int, decode: Any) -> tuple[Step, ...]:
    out = []
    for n in engine.path(node)[1:]:
        v = engine.node(n)
        tokens = engine.step_tokens(n)
        out.append(Step(tokens, decode(tokens), terminal=v.terminal, count=v.samples))
    return tuple(out)


def rollout_many(policy: Policy, states: Sequence[Tokens], n: int | Sequence[int], *, max_steps: int, temperature: float,
                 seed: int, concurrency: int = 64) -> list[Rollouts]:  # fmt: skip
    """``n`` rollouts (one int, or one per state) from each state, at most ``max_steps`` steps each."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    ns = [n] * len(states) if isinstance(n, (int, np.integer)) else list(n)
    if len(ns) != len(states):
        raise ValueError(f"n has {len(ns)} entries for {len(states)} states; pass one int, or one per state")
    out: list[Rollouts] = [Rollouts(()) for _ in states]
    todo = [i for i in range(len(states)) if max_steps > 0]
    searches = [
        Search(states[i], SearchConfig(selection="beam", beam_width=None, k=int(ns[i]), rollouts=True, temperature=temperature,
                                       num_solutions=None, max_steps=max_steps, dedup=False, batch_size=int(ns[i])), seed=seed)
        for i in todo
    ]  # fmt: skip
    for j, res in Scheduler(PolicyExpand(policy), concurrency=concurrency).run(single(s) for s in searches):
        eng = res.engine
        nodes = eng.nodes()
        parents = {v.parent for v in nodes}
        # leaves: terminal steps, paths cut at max_steps, and states the policy had no step for
        leaves = [v for v in nodes if v.id and (v.status == "solution" or (v.status == "pruned" and not v.terminal) or (v.status == "expanded" and v.id not in parents))]
        leaves.sort(key=lambda v: eng.path(v.id))  # depth-first order: independent of batching
        out[todo[j]] = Rollouts(tuple(Completion(_path_steps(eng, v.id, policy.decode), v.samples, v.terminal) for v in leaves))
    return out


def rollout(policy: Policy, state: Tokens, *, max_steps: int, temperature: float, seed: int, n: int = 1) -> Rollouts:
    """``n`` rollouts from one state (see :func:`rollout_many`)."""
    return rollout_many(policy, [state], n, max_steps=max_steps, temperature=temperature, seed=seed)[0]


def propose_many(policy: Policy, states: Sequence[Tokens], k: int, *, temperature: float, seed: int, concurrency: int = 64) -> list[list[Step]]:
    """The distinct next steps of each state (``k`` samples, grouped with counts): one expansion
    of each state, run on the scheduler."""
    config = SearchConfig(k=k, temperature=temperature, max_expansions=1, num_solutions=None, dedup=False)
    out: list[list[Step]] = [[] for _ in states]
    for j, res in Scheduler(PolicyExpand(policy), concurrency=concurrency).run(single(Search(s, config, seed=seed)) for s in states):
        eng = res.engine
        out[j] = [_path_steps(eng, v.id, policy.decode)[-1] for v in eng.nodes()[1:]]
    return out
