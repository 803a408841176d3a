"""Ask/tell access to the native A* engine, with input checking.

The compiled core (``qstar_native._core``) trusts its dtypes; this module is where Python inputs
are checked and converted, so every mistake gets an error that names the argument and the fix.
"""

from __future__ import annotations

import numbers
from typing import Sequence, cast

import numpy as np

from . import _core
from .types import Aggregate, Child, Node, NodeRecord, Stats, StopReason, TokenArray, Tokens

_INT32_MAX = np.iinfo(np.int32).max


def as_tokens(tokens: Tokens, name: str = "tokens") -> TokenArray:
    """Returns ``tokens`` as a contiguous 1-D int32 array, or raises naming ``name``.

    >>> as_tokens([1, 2, 3])
    array([1, 2, 3], dtype=int32)
    """
    arr = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one token id per entry), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int32)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer token ids, got dtype {arr.dtype}; "
            f"pass np.asarray({name}, dtype=np.int32) or a list of ints"
        )
    if arr.min() < 0 or arr.max() > _INT32_MAX:
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{name} holds token id {bad}; token ids must be in [0, 2**31)")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _as_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _as_key(key: str | bytes | None, name: str) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"{name} must be str, bytes or None, got {type(key).__name__}")


def _limit(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None (no limit), got {type(value).__name__}")
    return int(value)


class Engine:
    """One A* search over one problem, driven step by step (ask/tell).

    Nodes are ranked by ``f = g + lam * h``: ``g`` aggregates the step rewards of the path with
    ``aggregate``, ``h`` is the value given with each child. ``select(k)`` hands out the k best
    open nodes (k = 1 is exact A*); ``expand`` takes their scored children back. A terminal child
    becomes a solution when it reaches the top of the frontier and no handed-out node ranks above
    it. Budgets (``None`` = no limit) end the search; ``stop_reason`` says which.

    Example:
        >>> eng = Engine(aggregate="sum", num_solutions=1)
        >>> root = eng.add_root([1, 2])
        >>> [int(n) for n in eng.select(1)]
        [0]
        >>> eng.expand(root, [Child([3], reward=-1.0, terminal=True), Child([4], reward=-2.0)])
        [1, 2]
        >>> eng.select(1).size, eng.stop_reason, eng.solutions
        (0, 'solutions', [1])
    """

    def __init__(
        self,
        *,
        lam: float = 1.0,
        aggregate: Aggregate = "min",
        num_solutions: int = 1,
        max_expansions: int | None = None,
        max_nodes: int | None = None,
        max_depth: int | None = None,
        max_tokens: int | None = None,
        frontier_capacity: int | None = None,
        vocab_size: int | None = None,
        dedup: bool = True,
    ) -> None:
        self._core = _core.Engine(
            lam=_as_float(lam, "lam"),
            aggregate=aggregate,
            num_solutions=_limit(num_solutions, "num_solutions"),
            max_expansions=_limit(max_expansions, "max_expansions"),
            max_nodes=_limit(max_nodes, "max_nodes"),
            max_depth=_limit(max_depth, "max_depth"),
            max_tokens=_limit(max_tokens, "max_tokens"),
            frontier_capacity=_limit(frontier_capacity, "frontier_capacity"),
            vocab_size=_limit(vocab_size, "vocab_size"),
            dedup=bool(dedup),
        )

    # ---- ask/tell -------------------------------------------------------------------------

    def add_root(self, tokens: Tokens, *, h: float = 0.0, key: str | bytes | None = None) -> int:
        """Adds the root state (the question's tokens) and returns its node id."""
        return int(self._core.add_root(as_tokens(tokens, "root tokens"), _as_float(h, "h"), _as_key(key, "key")))

    def select(self, k: int = 1) -> np.ndarray:
        """Hands out up to ``k`` best open nodes to expand, as an int64 array of node ids."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        return self._core.select(int(k))

    def expand(self, node_id: int, children: Sequence[Child]) -> list[int]:
        """Takes back the scored children of one selected node; returns where each landed.

        A child lands in a new node, in the existing node of an equal state (merged), or at -1
        when a node or token budget dropped it.
        """
        return self.expand_many([node_id], [children])[0]

    def expand_many(self, node_ids: Sequence[int], children: Sequence[Sequence[Child]]) -> list[list[int]]:
        """Takes back the children of several selected nodes in one call (all or nothing)."""
        if len(node_ids) != len(children):
            raise ValueError(
                f"got {len(children)} child lists for {len(node_ids)} nodes; give one list "
                "(possibly empty) per node"
            )
        counts = np.fromiter((len(c) for c in children), dtype=np.int64, count=len(children))
        flat = [c for cs in children for c in cs]
        steps, rewards, qs, terminal, keys = [], [], [], [], []
        for i, c in enumerate(flat):
            if not isinstance(c, Child):
                raise TypeError(f"child {i} is a {type(c).__name__}; return qstar_native.Child records")
            steps.append(as_tokens(c.tokens, f"tokens of child {i}"))
            rewards.append(_as_float(c.reward, f"reward of child {i}"))
            qs.append(_as_float(c.q, f"q of child {i}"))
            terminal.append(bool(c.terminal))
            keys.append(_as_key(c.key, f"key of child {i}"))
        has_key = [k is not None for k in keys]
        if any(has_key) and not all(has_key):
            raise ValueError("some children have a key and some do not; give every child a key or none")
        landed = self.expand_flat(
            node_ids=np.asarray(node_ids, dtype=np.int64),
            child_counts=counts,
            tokens=np.concatenate(steps) if steps else np.zeros(0, dtype=np.int32),
            step_lengths=np.fromiter((len(s) for s in steps), dtype=np.int64, count=len(steps)),
            rewards=np.asarray(rewards, dtype=np.float64),
            q=np.asarray(qs, dtype=np.float64),
            terminal=np.asarray(terminal, dtype=np.bool_),
            keys=[k for k in keys if k is not None] if keys and all(has_key) else None,
        )
        out, start = [], 0
        for n in counts:
            out.append([int(x) for x in landed[start : start + n]])
            start += int(n)
        return out

    def expand_flat(
        self,
        node_ids: np.ndarray,
        child_counts: np.ndarray,
        tokens: np.ndarray,
        step_lengths: np.ndarray,
        rewards: np.ndarray,
        q: np.ndarray,
        terminal: np.ndarray,
        keys: list[bytes] | None = None,
    ) -> np.ndarray:
        """The zero-object form of :meth:`expand_many` for callers that already hold arrays.

        Children are grouped by parent in ``node_ids`` order; ``child_counts[j]`` children belong
        to ``node_ids[j]``; their steps are ``tokens`` split by ``step_lengths``.
        """
        return self._core.expand(
            _int_array(node_ids, np.int64, "node_ids"),
            _int_array(child_counts, np.int64, "child_counts"),
            as_tokens(tokens, "tokens"),
            _int_array(step_lengths, np.int64, "step_lengths"),
            _float_array(rewards, "rewards"),
            _float_array(q, "q"),
            np.ascontiguousarray(_bool_array(terminal, "terminal"), dtype=np.uint8),
            keys,
        )

    def release(self, node_ids: Sequence[int]) -> None:
        """Puts selected nodes back on the frontier unexpanded (e.g. after the model failed)."""
        self._core.release(np.asarray(node_ids, dtype=np.int64))

    # ---- reading --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return bool(self._core.done)

    @property
    def stop_reason(self) -> StopReason:
        return cast(StopReason, self._core.stop_reason)

    @property
    def solutions(self) -> list[int]:
        """Accepted solutions' node ids, best first."""
        return [int(x) for x in self._core.solutions]

    @property
    def num_nodes(self) -> int:
        return int(self._core.num_nodes)

    def stats(self) -> Stats:
        return Stats(**self._core.stats())

    def node(self, node_id: int) -> NodeRecord:
        return NodeRecord(**self._core.node(int(node_id)))

    def step_tokens(self, node_id: int) -> TokenArray:
        return self._core.step_tokens(int(node_id))

    def state_tokens(self, node_id: int) -> TokenArray:
        """The full token sequence of a node's state: root tokens, then every step."""
        return self._core.state_tokens(int(node_id))

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root to ``node_id``, inclusive."""
        return [int(x) for x in self._core.path(int(node_id))]

    def steps(self, node_id: int) -> list[TokenArray]:
        """The steps of a node's path, root excluded, in order."""
        return [self._core.step_tokens(n) for n in self._core.path(int(node_id))[1:]]

    def frontier(self, limit: int = 2**62) -> list[int]:
        """Open node ids in rank order (best first)."""
        return [int(x) for x in self._core.frontier(limit)]

    def view(self, node_id: int, problem: int = 0) -> Node:
        """The callback-facing view of a node."""
        rec = self._core.node(int(node_id))
        return Node(
            id=int(node_id),
            problem=problem,
            depth=rec["depth"],
            g=rec["g"],
            h=rec["h"],
            f=rec["f"],
            tokens=self.state_tokens(node_id),
            steps=self.steps(node_id),
        )


def _int_array(x: np.ndarray, dtype: type, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _float_array(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iuf"):
        raise TypeError(f"{name} must be a 1-D float array, got dtype {arr.dtype} and shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _bool_array(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "biu"):
        raise TypeError(f"{name} must be a 1-D bool array, got dtype {arr.dtype} and shape {arr.shape}")
    return arr.astype(np.bool_)
