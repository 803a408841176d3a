"""SearchConfig: every setting of one search, validated once.

The engine's part is mirrored by the C++ ``EngineConfig`` (built and checked here, once, then
shared by every engine made from this config); the rest says how the scheduler drives it: nodes
selected per round and what the policy is asked for at each node.

Example:
    >>> cfg = SearchConfig(lam=0.5, k=6, max_expansions=48)
    >>> cfg.selection, cfg.max_steps is None
    ('best_first', True)
    >>> SearchConfig(lam=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: lam must be a finite number, got nan
    >>> SearchConfig(max_expansions=2**70)
    Traceback (most recent call last):
    ...
    ValueError: max_expansions must be at most 2**63 - 1; use None for no limit, got 1180591620717411303424
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from .types import Aggregate, Selection


INT64_MAX = 2**63 - 1
"""The largest count the engine holds (a signed 64-bit int)."""


def _check_int(name: str, value: Any, low: int, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " or None (no limit)" if optional else ""
        raise TypeError(f"{name} must be an int{hint}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}{' (or None for no limit)' if optional else ''}, got {value}")
    if value > INT64_MAX:
        raise ValueError(f"{name} must be at most 2**63 - 1{'; use None for no limit' if optional else ''}, got {value}")


@dataclass(frozen=True)
class SearchConfig:
    """One search's settings (``None`` = no limit).

    Ranking: nodes by ``f = g + lam * h``; g aggregates the path's step rewards with
    ``aggregate`` (``min``, ``max``, ``sum``, ``mean``, ``product``, ``last``, ``zero``).

    Selection: ``"best_first"`` is A*: each round the ``batch_size`` best open nodes are expanded
    (1 is exact A*; larger batches never accept a solution while a handed-out node could still
    beat it). ``"beam"`` goes level by level: the level's nodes are expanded (``batch_size`` at a
    time) and the best ``beam_width`` children survive; ``beam_width=None`` keeps all (sampling).

    Proposals: each expanded node asks the policy for ``k`` samples at ``temperature`` (0 is
    greedy); with ``greedy_first`` its first sample is greedy, so the greedy step is always among
    them. With ``rollouts=True`` a node instead asks for as many samples as drew it (the root:
    ``k``), so the tree is ``k`` independent rollouts that share their common prefixes.

    Values: a child's h is the q of the step that made it; with ``lookahead`` it is the paper's
    ``max`` over the q of the top-k steps proposed at the child, found by proposing there one
    round early (:class:`~qstar_native.scheduler.PolicyExpand` does it; it costs a proposal
    round per non-terminal child, expanded later or not).

    Budgets: ``num_solutions`` (stop after that many), ``max_expansions``, ``max_nodes``,
    ``max_steps`` (steps of a path), ``max_tokens`` (step tokens of all children),
    ``frontier_capacity`` (the worst open nodes beyond it are pruned). ``vocab_size`` rejects
    token ids outside ``[0, vocab_size)``; ``dedup`` merges children whose state (full token
    sequence, or key) already has a node.
    """

    lam: float = 1.0
    aggregate: Aggregate = "min"
    selection: Selection = "best_first"
    beam_width: int | None = None
    batch_size: int = 1
    k: int = 4
    temperature: float = 1.0
    greedy_first: bool = False
    lookahead: bool = False
    rollouts: bool = False
    num_solutions: int | None = 1
    max_expansions: int | None = None
    max_nodes: int | None = None
    max_steps: int | None = None
    max_tokens: int | None = None
    frontier_capacity: int | None = None
    vocab_size: int | None = None
    dedup: bool = True
    _core: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)):
            raise TypeError(f"lam must be a real number, got {type(self.lam).__name__}")
        if not math.isfinite(self.lam):
            raise ValueError(f"lam must be a finite number, got {self.lam}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {self.temperature!r}")
        for flag in ("greedy_first", "lookahead"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool, got {type(getattr(self, flag)).__name__}")
        _check_int("batch_size", self.batch_size, 1, False)
        _check_int("k", self.k, 1, False)
        for name in ("beam_width", "num_solutions", "max_expansions", "max_nodes", "max_steps", "max_tokens", "frontier_capacity", "vocab_size"):
            _check_int(name, getattr(self, name), 1, True)
        core = _core.EngineConfig(
            lam=float(self.lam), aggregate=self.aggregate, selection=self.selection, beam_width=self.beam_width,
            num_solutions=self.num_solutions, max_expansions=self.max_expansions, max_nodes=self.max_nodes,
            max_steps=self.max_steps, max_tokens=self.max_tokens, frontier_capacity=self.frontier_capacity,
            vocab_size=self.vocab_size, dedup=bool(self.dedup),
        )  # fmt: skip
        object.__setattr__(self, "_core", core)

    def replace(self, **changes: Any) -> "SearchConfig":
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for run headers and records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
