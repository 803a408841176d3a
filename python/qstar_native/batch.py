"""What moves on the hot path: a :class:`Batch` of selected nodes and the :class:`Steps`
proposed for them, both columnar (flat numpy arrays, one entry per node or per step).

A round of search is one straight line::

    engines.select -> Batch -> policy.propose(batch) -> Steps -> scorer(batch, steps) fills
    steps.reward and steps.q -> each engine.expand takes its slice of Steps

No per-node or per-step Python object is made on that path. :class:`Node` is a lazy view for
users' own callbacks and for reading a tree: its fields and tokens are read from the engine on
access, so building one costs O(1) and reading its tokens O(state length).

Example:
    >>> import numpy as np
    >>> from qstar_native.types import Step
    >>> steps = Steps.from_lists([[Step([1, 2], reward=-1.0)], [], [Step([3], q=0.5), Step([4])]])
    >>> steps.num_children.tolist(), steps.lengths.tolist(), steps.q.tolist()
    ([1, 0, 2], [2, 1, 1], [0.0, 0.5, 0.0])
    >>> [s.tokens.tolist() for s in steps.of_node(2)]
    [[3], [4]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence, overload

import numpy as np

from . import _core
from .types import NodeStatus, Step, TokenArray, as_tokens

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Batch", "Node", "Steps", "step_states"]

_STATUS: tuple[NodeStatus, ...] = tuple(_core.NODE_STATUSES)


class Node:
    """A lazy view of one engine node: cheap to make, fields read on first access.

    ``tokens`` is the full state (root tokens, then every step); ``steps`` the steps alone;
    ``step`` the step that made this node (the root's: its tokens). ``problem`` says which root it
    belongs to when several problems are searched together.
    """

    __slots__ = ("_engine", "id", "problem", "_rec")

    def __init__(self, engine: "Engine", node_id: int, problem: int = 0, record: dict[str, Any] | None = None) -> None:
        self._engine, self.id, self.problem, self._rec = engine, int(node_id), int(problem), record

    def _field(self, name: str) -> Any:
        if self._rec is None:
            cols = self._engine._core.infos(np.array([self.id], dtype=np.int64))
            self._rec = {k: v[0] for k, v in cols.items()}
        return self._rec[name]

    parent = property(lambda self: int(self._field("parent")), doc="Parent id (-1 for the root).")
    depth = property(lambda self: int(self._field("depth")), doc="Steps from the root.")
    status = property(lambda self: _STATUS[int(self._field("status"))], doc="open, selected, expanded, solution or pruned.")
    terminal = property(lambda self: bool(self._field("terminal")), doc="Made by a terminal step.")
    reward = property(lambda self: float(self._field("reward")), doc="Process reward of the step that made it.")
    g = property(lambda self: float(self._field("g")), doc="Aggregate of the path's step rewards.")
    h = property(lambda self: float(self._field("h")), doc="Value estimate (q of the step that made it).")
    f = property(lambda self: float(self._field("f")), doc="g + lam * h.")
    samples = property(lambda self: int(self._field("samples")), doc="How many of the parent's samples drew its step.")
    key = property(lambda self: self._field("key"), doc="De-duplication key (bytes) or None.")

    @property
    def tokens(self) -> TokenArray:
        return self._engine.state_tokens(self.id)

    @property
    def step(self) -> TokenArray:
        return self._engine.step_tokens(self.id)

    @property
    def steps(self) -> list[TokenArray]:
        return self._engine.steps(self.id)

    def __repr__(self) -> str:
        return f"Node(id={self.id}, problem={self.problem}, depth={self.depth}, status={self.status!r}, f={self.f:g}, g={self.g:g}, h={self.h:g})"


class Batch(Sequence[Node]):
    """The nodes selected in one round, possibly from several problems' engines, as columns.

    ``problem[i]`` indexes ``engines``; ``node[i]`` is the node id in that engine. Nodes of one
    problem are contiguous. ``k``, ``temperature`` and ``seed`` say what to ask the policy for at
    each node (a node's samples depend only on (seed, its state)). ``tokens``/``offsets`` (the
    full states, concatenated) and the node fields are read from the engines on first access.
    Iterating gives lazy :class:`Node` views, so callbacks written for a list of nodes work.
    """

    __slots__ = ("engines", "problem", "node", "k", "temperature", "seed", "greedy_first", "_tokens", "_info")

    def __init__(self, engines: Sequence["Engine"], problem: np.ndarray, node: np.ndarray, *, k: np.ndarray,
                 temperature: np.ndarray, seed: np.ndarray, greedy_first: np.ndarray | None = None) -> None:  # fmt: skip
        self.engines, self.problem, self.node = engines, problem, node
        self.k, self.temperature, self.seed = k, temperature, seed
        self.greedy_first = np.zeros(len(node), np.bool_) if greedy_first is None else greedy_first
        self._tokens: tuple[np.ndarray, np.ndarray] | None = None
        self._info: dict[str, np.ndarray] = {}

    @classmethod
    def of_states(cls, states: Sequence[Any], *, k: int | Sequence[int] = 1, temperature: float | Sequence[float] = 1.0,
                  seed: int | Sequence[int] = 0, greedy_first: bool | Sequence[bool] = False) -> "Batch":  # fmt: skip
        """A batch of bare token states (no engine), e.g. to call a policy directly; each setting
        one value for all, or one per state.

        >>> b = Batch.of_states([[1, 2], [3]], k=4)
        >>> b.offsets.tolist(), b.k.tolist()
        ([0, 2, 3], [4, 4])
        """
        arrays = [as_tokens(s, f"states[{i}]") for i, s in enumerate(states)]
        n = len(arrays)
        col = lambda v, dtype: np.broadcast_to(np.asarray(v, dtype), (n,)).copy()  # noqa: E731
        out = cls([], np.zeros(n, np.int64), np.arange(n, dtype=np.int64), k=col(k, np.int64), temperature=col(temperature, np.float64),
                  seed=col(seed, np.int64), greedy_first=col(greedy_first, np.bool_))  # fmt: skip
        lengths = np.fromiter((len(a) for a in arrays), np.int64, n)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
        out._tokens = (flat.astype(np.int32, copy=False), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        return out

    def __len__(self) -> int:
        return len(self.node)

    @overload
    def __getitem__(self, i: int) -> Node: ...
    @overload
    def __getitem__(self, i: slice) -> list[Node]: ...
    def __getitem__(self, i: int | slice) -> Node | list[Node]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not self.engines:
            raise TypeError("this batch holds bare states, not engine nodes; read batch.state(i)")
        p = int(self.problem[i])
        return Node(self.engines[p], int(self.node[i]), p)

    def __iter__(self) -> Iterator[Node]:
        return (self[i] for i in range(len(self)))

    def _spans(self) -> Iterator[tuple[int, int, int]]:
        """(problem, start, stop) for each run of one problem's nodes."""
        n = len(self)
        if n == 0:
            return
        if len(self.engines) <= 1:
            yield int(self.problem[0]), 0, n
            return
        cuts = np.flatnonzero(np.diff(self.problem)) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [n]])
        for a, b in zip(starts.tolist(), stops.tolist()):
            yield int(self.problem[a]), a, b

    @property
    def tokens(self) -> TokenArray:
        """Every node's full state (root + steps), concatenated; split by :attr:`offsets`."""
        return self._states()[0]

    @property
    def offsets(self) -> np.ndarray:
        """int64 ``[len + 1]``: node i's state is ``tokens[offsets[i]:offsets[i + 1]]``."""
        return self._states()[1]

    def state(self, i: int) -> TokenArray:
        flat, off = self._states()
        return flat[off[i] : off[i + 1]]

    def _states(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tokens is None:
            parts, offs, base = [], [np.zeros(1, np.int64)], 0
            for p, a, b in self._spans():
                flat, off = self.engines[p]._core.state_tokens(self.node[a:b])
                parts.append(flat)
                offs.append(off[1:] + base)
                base += len(flat)
            self._tokens = (np.concatenate(parts) if parts else np.zeros(0, np.int32), np.concatenate(offs))
        return self._tokens

    def root_lengths(self) -> np.ndarray:
        """int64 ``[len]``: the length of each node's root (prompt) state; 0 for bare states."""
        if not self.engines:
            return np.zeros(len(self), np.int64)
        roots = np.array([int(e._core.infos(np.zeros(1, np.int64))["state_length"][0]) for e in self.engines], np.int64)
        return roots[self.problem]

    def info(self, name: str) -> np.ndarray:
        """A node field as a column: parent, depth, status, terminal, reward, g, h, f, samples,
        kv_handle, state_length (read from the engines once per field and batch)."""
        col = self._info.get(name)
        if col is None:
            if len(self.engines) == 1:
                col = self.engines[0]._core.column(self.node, name)
            else:
                cols = [self.engines[p]._core.column(self.node[a:b], name) for p, a, b in self._spans()]
                col = np.concatenate(cols) if cols else np.zeros(0)
            self._info[name] = col
        return col


@dataclass(eq=False, slots=True)
class Steps:
    """The steps proposed for a batch's nodes, grouped by node, as flat arrays.

    Node ``j`` has ``num_children[j]`` steps; step ``i`` is ``tokens[offsets[i]:offsets[i+1]]``
    with ``lengths[i]`` tokens. ``count`` is how many samples drew it, ``logprob`` its raw-model
    log-probability, ``reward`` and ``q`` its scores (zeros until a scorer fills them).
    Only ``num_children``, ``tokens`` and ``lengths`` are required (terminal: False, count: 1,
    scores: 0). ``hidden`` (a ``[num_steps, H]`` tensor, or None) is the policy's final hidden state at each
    step's last token; ``kv_handles`` (or None) are pins on each child state's KV that the engine
    takes over. ``generated`` / ``forwarded`` are per node: tokens sampled and tokens run through
    the model for it, so usage adds up per problem. ``texts`` are the steps' texts.
    """

    num_children: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    terminal: np.ndarray | None = None
    count: np.ndarray | None = None
    logprob: np.ndarray | None = None
    reward: np.ndarray | None = None
    q: np.ndarray | None = None
    texts: list[str] | None = None
    keys: list[bytes] | None = None
    hidden: Any = field(default=None, repr=False)
    kv_handles: np.ndarray | None = None
    generated: np.ndarray | None = None
    forwarded: np.ndarray | None = None
    finish: list[str] | None = None

    def __post_init__(self) -> None:
        # Columns already of the right dtype pass through untouched (this runs once per round on
        # the hot path); values (finite scores, token ranges, counts) are checked by the engine.
        self.num_children = counts = _int_col(self.num_children, "num_children")
        n = int(counts.sum())
        self.lengths = _int_col(self.lengths, "lengths", n)
        self.tokens = _token_col(self.tokens)  # that the lengths add up to it, the engine checks
        self.terminal = np.zeros(n, np.bool_) if self.terminal is None else _col(self.terminal, "terminal", n, np.bool_, "b")
        self.count = _filled(n, 1) if self.count is None else _int_col(self.count, "count", n)
        self.logprob = np.zeros(n) if self.logprob is None else _col(self.logprob, "logprob", n, np.float64, "fiu")
        self.reward = np.zeros(n) if self.reward is None else _col(self.reward, "reward", n, np.float64, "fiu")
        self.q = np.zeros(n) if self.q is None else _col(self.q, "q", n, np.float64, "fiu")
        if self.kv_handles is not None:
            self.kv_handles = _int_col(self.kv_handles, "kv_handles", n)
        if self.generated is not None:  # None: the expand callback reports no usage
            self.generated = _int_col(self.generated, "generated", len(counts), "nodes")
        if self.forwarded is not None:
            self.forwarded = _int_col(self.forwarded, "forwarded", len(counts), "nodes")
        for name, v in (("texts", self.texts), ("keys", self.keys), ("finish", self.finish)):
            if v is not None and len(v) != n:
                raise ValueError(f"{name} has {len(v)} entries for {n} steps; give one per step")

    @classmethod
    def from_lists(cls, per_node: Sequence[Sequence[Step]]) -> "Steps":
        """Columnar steps from one list of :class:`~qstar_native.types.Step` per node."""
        if isinstance(per_node, Steps):
            return per_node
        if per_node is None or isinstance(per_node, (str, bytes)) or not hasattr(per_node, "__len__"):
            raise TypeError(f"expected one list of Steps per node, got {type(per_node).__name__}")
        counts = np.fromiter((len(c) for c in per_node), np.int64, len(per_node))
        flat = [s for cs in per_node for s in cs]
        for i, s in enumerate(flat):
            if not isinstance(s, Step):
                raise TypeError(f"step {i} is a {type(s).__name__}; return qstar_native.Step records (or a Steps batch)")
        toks = [as_tokens(s.tokens, f"tokens of step {i}") for i, s in enumerate(flat)]
        keys = [s.key for s in flat]
        has_key = [k is not None for k in keys]
        if any(has_key) and not all(has_key):
            raise ValueError("some steps have a key and some do not; give every step a key or none")
        return cls(
            num_children=counts,
            tokens=np.concatenate(toks) if toks else np.zeros(0, np.int32),
            lengths=np.fromiter((len(t) for t in toks), np.int64, len(toks)),
            terminal=np.fromiter((bool(s.terminal) for s in flat), np.bool_, len(flat)),
            count=np.fromiter((int(s.count) for s in flat), np.int64, len(flat)),
            logprob=np.fromiter((_real(s.logprob, f"logprob of step {i}") for i, s in enumerate(flat)), np.float64, len(flat)),
            reward=np.fromiter((_real(s.reward, f"reward of step {i}") for i, s in enumerate(flat)), np.float64, len(flat)),
            q=np.fromiter((_real(s.q, f"q of step {i}") for i, s in enumerate(flat)), np.float64, len(flat)),
            texts=[s.text for s in flat],
            keys=[k.encode() if isinstance(k, str) else k for k in keys] if flat and all(has_key) else None,
        )

    @classmethod
    def empty(cls, num_nodes: int) -> "Steps":
        """No steps for any of ``num_nodes`` nodes."""
        return cls(np.zeros(num_nodes, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64), texts=[])

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def offsets(self) -> np.ndarray:
        """int64 ``[len + 1]``: step i is ``tokens[offsets[i]:offsets[i + 1]]``."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    @property
    def node_index(self) -> np.ndarray:
        """int64 ``[len]``: the batch index of each step's node."""
        return np.repeat(np.arange(len(self.num_children)), self.num_children)

    def text(self, i: int) -> str:
        return self.texts[i] if self.texts is not None else ""

    def step(self, i: int) -> Step:
        """Step ``i`` as a record (copies its tokens)."""
        off = self.offsets
        return Step(self.tokens[off[i] : off[i + 1]].copy(), self.text(i), float(self.logprob[i]), bool(self.terminal[i]),
                    int(self.count[i]), float(self.reward[i]), float(self.q[i]), None if self.keys is None else self.keys[i])  # fmt: skip

    def of_node(self, j: int) -> list[Step]:
        """The steps of the batch's node ``j``."""
        start = int(self.num_children[:j].sum())
        return [self.step(i) for i in range(start, start + int(self.num_children[j]))]

    def nodes(self, a: int, b: int) -> "Steps":
        """The steps of nodes ``a..b-1`` (a contiguous slice; all of them: self)."""
        if a == 0 and b == len(self.num_children):
            return self
        c0, c1 = int(self.num_children[:a].sum()), int(self.num_children[:b].sum())
        off = self.offsets
        t0, t1 = int(off[c0]), int(off[c1])
        pick = (lambda v: None if v is None else v[c0:c1])
        return Steps(
            self.num_children[a:b].copy(), self.tokens[t0:t1], self.lengths[c0:c1], self.terminal[c0:c1], self.count[c0:c1],
            self.logprob[c0:c1], self.reward[c0:c1], self.q[c0:c1], pick(self.texts), pick(self.keys),
            None if self.hidden is None else self.hidden[c0:c1], pick(self.kv_handles),
            None if self.generated is None else self.generated[a:b], None if self.forwarded is None else self.forwarded[a:b],
            pick(self.finish),
        )  # fmt: skip


def step_states(batch: Batch, steps: Steps, which: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
    """Each step's child state: its node's state followed by the step's tokens (of the steps
    ``which``, default all)."""
    off, node = steps.offsets, steps.node_index
    idx = range(len(steps)) if which is None else [int(i) for i in which]
    return [np.concatenate([batch.state(int(node[i])), steps.tokens[off[i] : off[i + 1]]]) for i in idx]


def _real(v: Any, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    return float(v)


_EXACT = {np.int64: np.dtype(np.int64), np.float64: np.dtype(np.float64), np.bool_: np.dtype(np.bool_), np.int32: np.dtype(np.int32)}


def _col(x: Any, name: str, n: int | None, dtype: type, kinds: str, per: str = "steps") -> np.ndarray:
    if type(x) is np.ndarray and x.dtype is _EXACT[dtype] and x.ndim == 1 and x.flags.c_contiguous and (n is None or len(x) == n):
        return x  # the hot path: nothing to convert
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in kinds):
        raise TypeError(f"{name} must be a 1-D array of {np.dtype(dtype).name}, got dtype {arr.dtype} and shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries for {n} {per}; give one per {per[:-1]}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _int_col(x: Any, name: str, n: int | None = None, per: str = "steps") -> np.ndarray:
    return _col(x, name, n, np.int64, "iu", per)


def _filled(n: int, value: int) -> np.ndarray:
    out = np.empty(n, np.int64)
    out.fill(value)
    return out


def _token_col(x: Any) -> np.ndarray:
    if type(x) is np.ndarray and x.dtype is _EXACT[np.int32] and x.ndim == 1 and x.flags.c_contiguous:
        return x  # the engine range-checks token ids itself
    return as_tokens(x, "tokens")
