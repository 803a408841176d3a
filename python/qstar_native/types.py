"""Typed records passed between the engine, the Searcher and user callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence, Union

import numpy as np
import numpy.typing as npt

TokenArray = npt.NDArray[np.int32]
Tokens = Union[Sequence[int], npt.NDArray[np.integer]]

Aggregate = Literal["min", "max", "sum", "mean", "product", "last", "zero"]
NodeStatus = Literal["open", "selected", "expanded", "solution", "pruned"]
StopReason = Literal["solutions", "exhausted", "max_expansions", "max_nodes", "max_tokens", "running"]


@dataclass(frozen=True)
class Child:
    """One scored candidate next step of a node.

    Args:
        tokens: the step's token ids (at least one).
        reward: the process reward R of this step; aggregated into g.
        q: the value estimate of the resulting state (Q of the step); becomes the child's h.
        terminal: the step ends the reasoning (answer given, EOS): the child is a solution
            candidate and is not expanded further.
        key: optional de-duplication key; states with equal keys are merged. Give keys for all
            children of a search (and the root) or for none; without keys, states are compared
            by their full token sequences.

    Example:
        >>> Child(tokens=[5, 6], reward=-0.5, q=0.8)
        Child(tokens=[5, 6], reward=-0.5, q=0.8, terminal=False, key=None)
    """

    tokens: Tokens
    reward: float = 0.0
    q: float = 0.0
    terminal: bool = False
    key: str | bytes | None = None


@dataclass(frozen=True)
class Node:
    """A node handed to the expand callback: the state to propose next steps for.

    ``tokens`` is the full state (root tokens followed by every step so far); ``steps`` lists the
    steps alone. ``problem`` tells which root it belongs to in ``search_many``.
    """

    id: int
    problem: int
    depth: int
    g: float
    h: float
    f: float
    tokens: TokenArray
    steps: list[TokenArray] = field(repr=False)


@dataclass(frozen=True)
class NodeRecord:
    """Everything the engine stores about one node."""

    id: int
    parent: int
    depth: int
    status: NodeStatus
    terminal: bool
    reward: float
    g: float
    h: float
    f: float
    key: bytes | None


@dataclass(frozen=True)
class Stats:
    """Counters of one search (see the engine docs for each)."""

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
    engine_seconds: float
    callback_calls: int = 0


@dataclass(frozen=True)
class Solution:
    """A solution path: its steps (root excluded) and per-step rewards and values.

    ``f``, ``g`` and ``h`` are those of the terminal node; ``rewards[i]`` and ``hs[i]`` belong to
    the node made by ``steps[i]``.
    """

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
        if not self.steps:
            return np.zeros(0, dtype=np.int32)
        return np.concatenate(self.steps)


@dataclass(frozen=True)
class TreeNode:
    """One node of a kept search tree: the engine's record and the step that made it (the root's
    ``step`` is its full token sequence)."""

    record: NodeRecord
    step: TokenArray = field(repr=False)


@dataclass(frozen=True)
class SearchResult:
    """What a search returns: solutions ranked best first (by f), stats and why it stopped.

    ``tree`` holds every node, by id, when the search ran with ``keep_tree=True``."""

    solutions: list[Solution]
    stats: Stats
    stop_reason: StopReason
    wall_seconds: float
    tree: list[TreeNode] | None = field(default=None, repr=False)

    @property
    def best(self) -> Solution | None:
        """The best solution (highest f, first accepted), or None if the search found none."""
        return self.solutions[0] if self.solutions else None
