"""The small records every layer shares: token arrays, a proposed step, search results.

Columnar batches (what moves on the hot path) are in :mod:`qstar_native.batch`; the records here
are for users' own code and for results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .engine import Engine
    from .batch import Node

TokenArray = npt.NDArray[np.int32]
Tokens = Union[Sequence[int], npt.NDArray[np.integer]]

Aggregate = Literal["min", "max", "sum", "mean", "product", "last", "zero"]
Selection = Literal["best_first", "beam"]
DTYPES = ("float32", "bfloat16", "float16", "auto")
"""Weight dtypes a model loads in (``auto``: the checkpoint's own)."""
NodeStatus = Literal["open", "selected", "expanded", "solution", "pruned"]
StopReason = Literal["solutions", "exhausted", "max_expansions", "max_nodes", "max_tokens", "running"]

_INT32_MAX = np.iinfo(np.int32).max


def as_tokens(tokens: Tokens, name: str = "tokens") -> TokenArray:
    """``tokens`` as a contiguous 1-D int32 array, or an error naming ``name`` and the fix.

    >>> as_tokens([1, 2, 3])
    array([1, 2, 3], dtype=int32)
    """
    arr = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one token id per entry), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int32)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}; pass np.asarray({name}, dtype=np.int32) or a list of ints")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > _INT32_MAX:
        raise ValueError(f"{name} holds token id {lo if lo < 0 else hi}; token ids must be in [0, 2**31)")
    return np.ascontiguousarray(arr, dtype=np.int32)


@dataclass(frozen=True)
class Step:
    """One proposed next step of a state, scored or not.

    Policies propose steps (``tokens``, ``text``, ``logprob``, ``terminal``, ``count``); scorers
    give each its process ``reward`` (aggregated into g) and its ``q`` (the child's h). A user's
    expand callback may return lists of Steps; hot paths move them as columnar
    :class:`~qstar_native.batch.Steps` instead.

    Args:
        tokens: the step's token ids (at least one).
        text: its text (delimiter included); a completion is its steps' texts joined.
        logprob: its log-probability under the policy (raw model, temperature 1).
        terminal: it ends the solution (final answer, EOS): the child is not expanded further.
        count: how many of the node's samples drew it.
        reward, q: its process reward and Q-value.
        key: optional de-duplication key; give keys for the root and every child, or for none
            (then states are compared by their full token sequences).

    Example:
        >>> Step([5, 6], reward=-0.5, q=0.8)
        Step(tokens=[5, 6], text='', logprob=0.0, terminal=False, count=1, reward=-0.5, q=0.8, key=None)
    """

    tokens: Tokens
    text: str = ""
    logprob: float = 0.0
    terminal: bool = False
    count: int = 1
    reward: float = 0.0
    q: float = 0.0
    key: str | bytes | None = None


@dataclass(frozen=True)
class Stats:
    """Counters of one search (see ``csrc/search.hpp`` for each); ``generated_tokens`` and
    ``forwarded_tokens`` are what the policy reported for this search's nodes."""

    expanded: int
    generated: int
    merged: int
    reopened: int
    pruned_depth: int
    pruned_capacity: int
    dropped_budget: int
    tokens: int
    frontier: int
    selected: int
    nodes: int
    solutions: int
    pinned: int
    engine_seconds: float
    callback_calls: int = 0
    generated_tokens: int = 0
    forwarded_tokens: int = 0


@dataclass(frozen=True)
class Solution:
    """A solution path: its steps (root excluded) and each step's reward and h; ``f``, ``g``,
    ``h`` are the terminal node's."""

    node_id: int
    steps: list[TokenArray]
    rewards: list[float]
    hs: list[float]
    f: float
    g: float
    h: float

    @property
    def tokens(self) -> TokenArray:
        """All step tokens, concatenated (the root's tokens excluded)."""
        return np.concatenate(self.steps) if self.steps else np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class SearchResult:
    """What a search returns: solutions best first (by f, then acceptance order), stats, why it
    stopped. ``tree`` holds every node by id when the search kept it (``keep_tree=True``)."""

    solutions: Sequence[Solution]
    stats: Stats
    stop_reason: StopReason
    wall_seconds: float
    tree: list["Node"] | None = field(default=None, repr=False)
    engine: "Engine | None" = field(default=None, repr=False, compare=False)

    @property
    def best(self) -> Solution | None:
        """The best solution (highest f, first accepted among equals), or None."""
        return self.solutions[0] if self.solutions else None
