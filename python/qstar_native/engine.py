"""Ask/tell access to the native search engine of one problem.

The compiled core checks every value (finite rewards, token ranges, child counts, pins) once per
call; this wrapper only converts Python arguments to the arrays it takes, so mistakes get errors
that name the argument and the fix.
"""

from __future__ import annotations

from typing import Any, Sequence, cast

import numpy as np

from . import _core
from .batch import Node, Steps
from .config import INT64_MAX, SearchConfig
from .prefix_cache import PrefixCache
from .types import Step, Stats, StopReason, TokenArray, Tokens, as_tokens


_I64 = np.dtype(np.int64)


def _as_key(key: str | bytes | None, name: str) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"{name} must be str, bytes or None, got {type(key).__name__}")


class Engine:
    """One search over one problem, driven step by step (ask/tell).

    Nodes are ranked by ``f = g + lam * h`` (see :class:`~qstar_native.config.SearchConfig`,
    given as ``config`` or as keyword arguments). ``select(k)`` hands out the k best open nodes;
    ``expand`` takes their scored children back. With ``cache`` (a
    :class:`~qstar_native.PrefixCache` shared with a policy) children may bring KV pins, which
    the engine then holds exactly while each node can still be expanded.

    Example:
        >>> eng = Engine(aggregate="sum")
        >>> root = eng.add_root([1, 2])
        >>> [int(n) for n in eng.select(1)]
        [0]
        >>> eng.expand(root, [Step([3], reward=-1.0, terminal=True), Step([4], reward=-2.0)])
        [1, 2]
        >>> eng.select(1).size, eng.stop_reason, eng.solutions
        (0, 'solutions', [1])
    """

    def __init__(self, config: SearchConfig | None = None, *, cache: PrefixCache | None = None, **settings: Any) -> None:
        if config is None:
            config = SearchConfig(**settings)
        elif settings:
            config = config.replace(**settings)
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
        if cache is not None and not isinstance(cache, PrefixCache):
            raise TypeError(f"cache must be a qstar_native.PrefixCache, got {type(cache).__name__}")
        self.config, self.cache = config, cache
        self._core = _core.Engine(config._core, None if cache is None else cache._core)

    # ---- ask/tell -------------------------------------------------------------------------

    def add_root(self, tokens: Tokens, *, h: float = 0.0, key: str | bytes | None = None) -> int:
        """Adds the root state (the question's tokens) and returns its node id (0)."""
        if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)):
            raise TypeError(f"h must be a real number, got {type(h).__name__}")
        try:
            h = float(h)
        except OverflowError:
            raise ValueError(f"root h must be finite, got {h}") from None
        return int(self._core.add_root(as_tokens(tokens, "root tokens"), h, _as_key(key, "key")))

    def select(self, k: int | None = None) -> np.ndarray:
        """Hands out up to ``k`` (default: the config's ``batch_size``) open nodes to expand, as
        an int64 array of node ids."""
        if k is None:
            k = self.config.batch_size
        elif isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        elif k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        elif k > INT64_MAX:
            raise ValueError(f"k must be at most 2**63 - 1, got {k}")
        if self._core.num_nodes == 0:
            raise RuntimeError("select() before add_root(): this engine has no root to search from; call add_root(tokens) first")
        return self._core.select(int(k))

    def expand(self, node_id: int, children: Sequence[Step]) -> list[int]:
        """Takes back the scored children of one selected node; returns where each landed: a
        new node, the existing node of an equal state (merged), or -1 when a budget dropped it."""
        return [int(x) for x in self.expand_steps(np.array([node_id], np.int64), Steps.from_lists([children]))]

    def expand_steps(self, node_ids: np.ndarray, steps: Steps) -> np.ndarray:
        """Takes back the children of several selected nodes in one call (all or nothing):
        ``steps`` holds ``steps.num_children[j]`` children for ``node_ids[j]``."""
        ids = node_ids if type(node_ids) is np.ndarray and node_ids.dtype is _I64 else np.ascontiguousarray(node_ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) != len(steps.num_children):
            raise ValueError(f"got steps for {len(steps.num_children)} nodes but {ids.size} node ids; give one group of steps (possibly empty) per node")
        return self._core.expand(
            ids, steps.num_children, steps.tokens, steps.lengths, steps.reward, steps.q,
            steps.terminal, steps.count, steps.kv_handles, steps.keys,
        )  # fmt: skip

    def release(self, node_ids: Sequence[int] | np.ndarray) -> None:
        """Puts selected nodes back on the frontier unexpanded (e.g. after the model failed)."""
        self._core.release(np.asarray(node_ids, dtype=np.int64))

    def shed_pins(self) -> int:
        """Drops every KV pin this engine holds (its nodes' KV becomes evictable and is recomputed
        if evicted); for when the KV pool is full. Returns how many were dropped."""
        return int(self._core.shed_pins())

    # ---- reading --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return bool(self._core.done)

    @property
    def stop_reason(self) -> StopReason:
        return cast(StopReason, self._core.stop_reason)

    @property
    def solutions(self) -> list[int]:
        """Accepted solutions' node ids, in acceptance order."""
        return [int(x) for x in self._core.solutions]

    @property
    def num_nodes(self) -> int:
        return int(self._core.num_nodes)

    def stats(self) -> Stats:
        return Stats(**self._core.stats())

    def node(self, node_id: int) -> Node:
        """A lazy view of one node (fields read on access)."""
        if not 0 <= int(node_id) < self.num_nodes:
            raise IndexError(f"node id {node_id} does not exist (this engine has {self.num_nodes} nodes)")
        return Node(self, int(node_id))

    def nodes(self) -> list[Node]:
        """Every node, by id, with its fields read in one call."""
        n = self.num_nodes
        cols = self._core.infos(np.arange(n, dtype=np.int64))
        return [Node(self, i, 0, {k: v[i] for k, v in cols.items()}) for i in range(n)]

    def step_tokens(self, node_id: int) -> TokenArray:
        """The tokens of the step that made a node (the root's: its tokens)."""
        return self._core.step_tokens(int(node_id))

    def state_tokens(self, node_id: int) -> TokenArray:
        """The full token sequence of a node's state: root tokens, then every step."""
        return self._core.state_tokens(np.array([node_id], np.int64))[0]

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root to ``node_id``, inclusive."""
        return [int(x) for x in self._core.path(int(node_id))]

    def steps(self, node_id: int) -> list[TokenArray]:
        """The steps of a node's path, root excluded, in order."""
        return [self._core.step_tokens(n) for n in self._core.path(int(node_id))[1:]]

    def frontier(self, limit: int = 2**62) -> list[int]:
        """Open node ids in rank order (best first)."""
        return [int(x) for x in self._core.frontier(limit)]

    def pinned_nodes(self) -> list[int]:
        """Ids of the nodes holding a KV pin (the live nodes whose child brought one)."""
        return [int(x) for x in self._core.pinned_nodes()]
