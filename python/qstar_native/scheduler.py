"""Continuous batching of searches: many problems in flight, one model call per round.

A *job* is a generator that yields :class:`Search` requests (one, or a list to run side by side)
and receives their :class:`~qstar_native.types.SearchResult` (or the list of them); what it
returns is the job's result. Every method (greedy, best-of-N, beam, Q*, labelling rollouts) is a
job, so they all share this loop::

    def job():
        result = yield Search(root, config, seed=7)
        return result.best

The scheduler keeps up to ``concurrency`` searches live. Each round every live search selects
its nodes, the nodes of all of them go to ``expand`` as one :class:`~qstar_native.batch.Batch`,
and each engine takes back its slice of the returned :class:`~qstar_native.batch.Steps`. A
finished search goes back to its job at once and the next request is admitted in the same
round, so the batch stays full and no straggler holds the others.

Usage is per search, from what the policy reports per node (``Steps.generated`` /
``Steps.forwarded``), never a difference of global counters: results do not depend on which
other searches shared a batch.

Memory: engines pin their open nodes' KV. When the policy's KV pool is full at its cap
(:class:`~qstar_native.prefix_cache.CacheFullError`), every live engine sheds its pins (their KV
becomes evictable, recomputed if evicted) and the round is retried once.

Errors: an exception in ``expand`` (KeyboardInterrupt included) or bad steps propagate
unchanged after the live engines are dropped (their KV pins go with them) and pins of steps no
engine took are released; the scheduler can be used again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable, Iterator, Sequence, Union

import numpy as np

from .batch import Batch, Steps, step_states
from .config import SearchConfig
from .engine import Engine
from .prefix_cache import CacheFullError, PrefixCache
from .types import SearchResult, Solution, Step, TokenArray, Tokens, as_tokens

__all__ = ["Expand", "Job", "PolicyExpand", "Scheduler", "Scorer", "Search", "Solutions", "result_of", "single"]

Expand = Callable[[Batch], Union[Steps, Sequence[Sequence[Step]]]]
"""Takes a batch of nodes, returns their proposed and scored steps: a :class:`Steps`, or one
list of :class:`~qstar_native.types.Step` per node (possibly empty)."""


@dataclass(frozen=True, eq=False)
class Search:
    """One search to run: from ``root`` (the prompt's tokens) with ``config``; ``seed`` makes
    its samples reproducible (a node's samples depend only on (seed, its state))."""

    root: TokenArray
    config: SearchConfig
    seed: int = 0
    key: bytes | None = None
    keep_tree: bool = False
    h: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", as_tokens(self.root, "root"))
        if not isinstance(self.config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(self.config).__name__}")


Scorer = Callable[[Batch, Steps], tuple[np.ndarray, np.ndarray]]
"""``(batch, steps) -> (reward, q)``: one float per step each (see :mod:`qstar_native.value.scorers`)."""


class PolicyExpand:
    """``policy.propose`` then ``scorer``: the expand callback of a policy (any object with
    ``propose(batch) -> Steps``). Without a scorer, reward = the step's log-probability, q = 0.
    Carries the policy's prefix cache (if any), so the scheduler links engines to it; pins of
    steps a failed scorer leaves behind are released.

    For the nodes of searches with ``SearchConfig.lookahead``, each non-terminal child's q becomes
    the max q over the steps proposed at the child itself (the paper's h: max over the top-k next
    steps), proposed and scored one round early with the search's own k, temperature, seed and
    greedy_first, so they are the steps the child gets when it is expanded. Their tokens are
    charged to the node whose children they rank.
    """

    def __init__(self, policy: Any, scorer: Scorer | None = None) -> None:
        if not callable(getattr(policy, "propose", None)):
            raise TypeError(f"policy must have propose(batch) -> Steps, got {type(policy).__name__}")
        if scorer is not None and not callable(scorer):
            raise TypeError(f"scorer must be callable (batch, steps) -> (reward, q), got {type(scorer).__name__}")
        self.policy, self.scorer, self.cache = policy, scorer, getattr(policy, "cache", None)

    def __call__(self, batch: Batch) -> Steps:
        steps = self._scored(batch)
        try:
            self._look_ahead(batch, steps)
        except BaseException:
            self._unpin(steps)
            raise
        return steps

    def _scored(self, batch: Batch) -> Steps:
        steps = self.policy.propose(batch)
        try:
            if self.scorer is None:
                steps.reward = steps.logprob.copy()
            else:
                reward, q = self.scorer(batch, steps)
                steps.reward, steps.q = _scores(reward, len(steps), "reward"), _scores(q, len(steps), "q")
        except BaseException:
            self._unpin(steps)
            raise
        return steps

    def _unpin(self, steps: Steps) -> None:
        if steps.kv_handles is not None and self.cache is not None:
            for h in steps.kv_handles:
                if h >= 0 and self.cache.has_pin(int(h)):
                    self.cache.unpin(int(h))

    def _look_ahead(self, batch: Batch, steps: Steps) -> None:
        """h = max over the child's own proposals' q, for the children of lookahead searches
        that are not terminal and not at their search's depth limit."""
        if not batch.engines or not any(e.config.lookahead for e in batch.engines):
            return
        node = steps.node_index
        p = batch.problem[node]
        look = np.array([e.config.lookahead for e in batch.engines], np.bool_)[p]
        limit = np.array([e.config.max_steps or 2**62 for e in batch.engines], np.int64)[p]
        pick = np.flatnonzero(look & ~steps.terminal & (batch.info("depth")[node] + 1 < limit))
        if len(pick) == 0:
            return
        j = node[pick]
        ahead = self._scored(Batch.of_states(step_states(batch, steps, pick), k=batch.k[j], temperature=batch.temperature[j], seed=batch.seed[j],
                                             greedy_first=batch.greedy_first[j]))  # fmt: skip
        self._unpin(ahead)  # only their scores are kept; the child's expansion proposes them again
        best = np.full(len(pick), -np.inf)
        np.maximum.at(best, ahead.node_index, ahead.q)
        has = ahead.num_children > 0
        steps.q[pick[has]] = best[has]
        for mine, theirs in ((steps.generated, ahead.generated), (steps.forwarded, ahead.forwarded)):
            if mine is not None and theirs is not None:
                np.add.at(mine, j, theirs)


def _scores(x: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"the scorer returned {name} of shape {arr.shape} for {n} steps; return one float per step")
    return arr


Job = Generator[Union[Search, list[Search]], Union[SearchResult, list[SearchResult]], Any]


@dataclass(eq=False)
class _Live:
    """A running search and where its result goes."""

    request: Search
    engine: Engine
    job: int
    slot: int
    start: float
    calls: int = 0
    generated: int = 0
    forwarded: int = 0
    _columns: dict = field(default_factory=dict)

    def columns(self, n: int) -> tuple[np.ndarray, ...]:
        """problem (0), k, temperature, seed and greedy_first columns for ``n`` nodes of this
        search alone, made once per size (the batch never writes them)."""
        cols = self._columns.get(n)
        if cols is None:
            cfg = self.request.config
            cols = self._columns[n] = (np.zeros(n, np.int64), np.full(n, cfg.k, np.int64), np.full(n, float(cfg.temperature)),
                                       np.full(n, self.request.seed, np.int64), np.full(n, bool(cfg.greedy_first)))  # fmt: skip
        return cols


@dataclass(eq=False)
class _JobState:
    gen: Job
    results: list[Any] = field(default_factory=list)
    waiting: int = 0
    many: bool = False


class Scheduler:
    """Runs jobs with at most ``concurrency`` searches in flight (see the module docstring).

    Args:
        expand: the batch callback (a policy's ``as_expand(...)``, or any :data:`Expand`).
        cache: the prefix cache the policy keeps KV in, linked to every engine so nodes pin
            their KV while live (default: ``expand.cache`` when it has one).
        concurrency: searches in flight at once.
    """

    def __init__(self, expand: Expand, *, cache: PrefixCache | None = None, concurrency: int = 16) -> None:
        if not callable(expand):
            raise TypeError(f"expand must be callable (batch -> steps), got {type(expand).__name__}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int (searches in flight), got {concurrency!r}")
        self.expand = expand
        self.cache = cache if cache is not None else getattr(expand, "cache", None)
        self.concurrency = concurrency
        self.rounds = 0
        self.pins_shed = 0  # rounds in which a full KV pool made the engines drop their pins

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[int, Any]]:
        """Yields ``(job index, job result)`` as each job finishes. Jobs are started lazily, in
        order, as capacity frees up."""
        source = iter(enumerate(jobs))
        states: dict[int, _JobState] = {}
        queue: deque[tuple[int, int, Search]] = deque()
        live: list[_Live] = []
        finished: list[tuple[int, Any]] = []
        exhausted = False

        def advance(j: int, value: Any) -> None:
            st = states[j]
            try:
                req = st.gen.send(value)
            except StopIteration as stop:
                del states[j]
                finished.append((j, stop.value))
                return
            reqs = req if isinstance(req, list) else [req]
            if not reqs or not all(isinstance(r, Search) for r in reqs):
                raise TypeError(f"job {j} yielded {type(req).__name__}; a job yields a Search or a non-empty list of them")
            st.many, st.results, st.waiting = isinstance(req, list), [None] * len(reqs), len(reqs)
            queue.extend((j, i, r) for i, r in enumerate(reqs))

        def admit() -> None:
            nonlocal exhausted
            while len(live) < self.concurrency:
                if queue:
                    j, slot, req = queue.popleft()
                    eng = Engine(req.config, cache=self.cache)
                    eng.add_root(req.root, h=req.h, key=req.key)
                    live.append(_Live(req, eng, j, slot, time.perf_counter()))
                elif not exhausted:
                    try:
                        j, gen = next(source)
                    except StopIteration:
                        exhausted = True
                        continue
                    states[j] = _JobState(gen)
                    advance(j, None)
                else:
                    return

        def complete(s: _Live) -> None:
            st = states[s.job]
            st.results[s.slot] = result_of(s.engine, s.request, calls=s.calls, generated=s.generated, forwarded=s.forwarded,
                                           wall=time.perf_counter() - s.start)  # fmt: skip
            st.waiting -= 1
            if st.waiting == 0:
                advance(s.job, st.results if st.many else st.results[0])

        try:
            while True:
                admit()  # returns with live searches, or with every job started and no request queued
                while finished:
                    yield finished.pop(0)
                if not live:
                    return
                if not self._round(live):
                    raise RuntimeError("no live search selected a node; this is a bug in the engine")  # pragma: no cover
                for s in [s for s in live if s.engine._core.done]:
                    live.remove(s)
                    complete(s)
        finally:
            for st in states.values():
                st.gen.close()
            live.clear()  # dropping the engines releases their KV pins

    def _round(self, live: list[_Live]) -> bool:
        """One round: select in every live search, one expand call, expand every engine.
        False when no search had a node to expand (all are done)."""
        parts: list[tuple[_Live, np.ndarray]] = []
        for s in live:
            ids = s.engine._core.select(s.request.config.batch_size)
            if len(ids):
                parts.append((s, ids))
        if not parts:
            return any(s.engine.done for s in live)
        self.rounds += 1
        engines = [s.engine for s, _ in parts]
        sizes = [len(ids) for _, ids in parts]
        if len(parts) == 1:  # one search: no concatenation
            (s0, node), n = parts[0], sizes[0]
            problem, k, temperature, seed, greedy_first = s0.columns(n)
            if s0.request.config.rollouts:
                k = _k(s0.engine, node)
        else:
            problem = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
            node = np.concatenate([ids for _, ids in parts])
            k = np.concatenate([_k(s.engine, ids) for s, ids in parts])
            temperature = np.repeat(np.array([s.request.config.temperature for s, _ in parts], dtype=np.float64), sizes)
            seed = np.repeat(np.array([s.request.seed for s, _ in parts], dtype=np.int64), sizes)
            greedy_first = np.repeat(np.array([s.request.config.greedy_first for s, _ in parts], dtype=np.bool_), sizes)
        batch = Batch(engines, problem, node, k=k, temperature=temperature, seed=seed, greedy_first=greedy_first)
        steps: Steps | None = None
        taken = 0  # problems whose engine took its steps
        try:
            try:
                out = self.expand(batch)
            except CacheFullError:
                if not sum(s.engine.shed_pins() for s in live):
                    raise
                self.pins_shed += 1
                out = self.expand(batch)
            if out is None or len(out if not isinstance(out, Steps) else out.num_children) != len(batch):
                got = "None" if out is None else f"steps for {len(out.num_children) if isinstance(out, Steps) else len(out)} nodes"
                raise ValueError(f"expand returned {got} for {len(batch)} nodes; return one group of steps (possibly empty) per node")
            steps = Steps.from_lists(out)
            a = 0
            for (s, ids), n in zip(parts, sizes):
                sub = steps.nodes(a, a + n)
                try:
                    s.engine.expand_steps(ids, sub)
                except (TypeError, ValueError) as err:
                    raise type(err)(f"expand callback returned bad steps for problem {problem[a]}: {err}") from err
                s.calls += 1
                if sub.generated is not None:
                    s.generated += int(sub.generated.sum())
                if sub.forwarded is not None:
                    s.forwarded += int(sub.forwarded.sum())
                taken += 1
                a += n
        except BaseException:
            for s, ids in parts[taken:]:
                s.engine.release(ids)
            if steps is not None and steps.kv_handles is not None and self.cache is not None:
                first = int(sum(sizes[:taken]))
                for h in steps.nodes(first, len(batch)).kv_handles:
                    if h >= 0 and self.cache.has_pin(int(h)):
                        self.cache.unpin(int(h))
            raise
        return True


def _k(engine: Engine, ids: np.ndarray) -> np.ndarray:
    cfg = engine.config
    if not cfg.rollouts:
        return np.full(len(ids), cfg.k, dtype=np.int64)
    samples = engine._core.column(ids, "samples")
    return np.where(ids == 0, cfg.k, samples).astype(np.int64)  # the root draws k; a child as many as drew it


def result_of(engine: Engine, request: Search, *, calls: int = 0, generated: int = 0, forwarded: int = 0, wall: float = 0.0) -> SearchResult:
    """The :class:`SearchResult` of a finished (or stopped) engine: its solutions best first
    (built on access: a search may accept many)."""
    stats = replace(engine.stats(), callback_calls=calls, generated_tokens=generated, forwarded_tokens=forwarded)
    tree = engine.nodes() if request.keep_tree else None
    return SearchResult(Solutions(engine), stats, engine.stop_reason, wall, tree, engine)


class Solutions(Sequence[Solution]):
    """An engine's accepted solutions, best first (f descending, then acceptance order); ranked on
    first use and each :class:`~qstar_native.types.Solution` read from the engine when indexed
    (a search may accept many, and a caller may read one)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ranked: np.ndarray | None = None

    @property
    def _ids(self) -> np.ndarray:
        if self._ranked is None:
            ids = self._engine._core.solutions
            f = self._engine._core.column(ids, "f") if len(ids) else np.zeros(0)
            self._ranked = ids[np.lexsort((np.arange(len(ids)), -f))]
        return self._ranked

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        node = int(self._ids[i])
        eng = self._engine
        path = np.asarray(eng.path(node)[1:], np.int64)
        recs = eng._core.infos(path)
        return Solution(node, [eng.step_tokens(int(n)) for n in path], recs["reward"].tolist(), recs["h"].tolist(),
                        float(recs["f"][-1]), float(recs["g"][-1]), float(recs["h"][-1]))  # fmt: skip

    def __repr__(self) -> str:
        return f"Solutions({len(self)} best first: node ids {self._ids[:8].tolist()}{'...' if len(self) > 8 else ''})"


def single(search: Search) -> Job:
    """The job of one search: returns its result."""
    return (yield search)
