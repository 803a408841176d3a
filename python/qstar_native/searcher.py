"""The Searcher: a search configuration bound to an expand callback."""

from __future__ import annotations

from typing import Any, Sequence

from .config import SearchConfig
from .engine import Engine
from .prefix_cache import PrefixCache
from .scheduler import Expand, Scheduler, Search, single
from .types import SearchResult, Tokens, as_tokens


class Searcher:
    """Best-first (A*) or beam search over step-wise problems, with batched expansion.

    Args:
        expand: called once per round with a :class:`~qstar_native.batch.Batch` of nodes (never
            once per node; a batch is also a sequence of lazy :class:`~qstar_native.batch.Node`
            views); returns their proposed steps with rewards and q, as a
            :class:`~qstar_native.batch.Steps` or one list of :class:`~qstar_native.Step` per
            node. Exceptions (KeyboardInterrupt included) propagate unchanged; the Searcher stays
            usable.
        config: a :class:`~qstar_native.config.SearchConfig`, or its fields as keyword arguments
            (``lam``, ``aggregate``, ``batch_size``, ``num_solutions``, budgets...).
        cache: the prefix cache the policy keeps KV in (default: ``expand.cache`` if any).
        concurrency: problems searched at once by :meth:`search_many` (default: all of them).

    Example:
        Count up from 0 to 3 in steps of +1 or +2; each step costs 1.

        >>> from qstar_native import Step
        >>> def expand(nodes):
        ...     out = []
        ...     for n in nodes:
        ...         total = int(n.tokens.sum())
        ...         out.append([Step([s], reward=-1.0, terminal=total + s == 3)
        ...                     for s in (1, 2) if total + s <= 3])
        ...     return out
        >>> result = Searcher(expand, aggregate="sum").search([0])
        >>> [s.tolist() for s in result.best.steps], result.best.g
        ([[1], [2]], -2.0)
    """

    def __init__(self, expand: Expand, config: SearchConfig | None = None, *, cache: PrefixCache | None = None,
                 concurrency: int | None = None, **settings: Any) -> None:  # fmt: skip
        if not callable(expand):
            raise TypeError(f"expand must be callable (batch of nodes -> steps per node), got {type(expand).__name__}")
        self.config = (SearchConfig(**settings) if config is None else config.replace(**settings) if settings else config)
        if not isinstance(self.config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(self.config).__name__}")
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
            raise ValueError(f"concurrency must be a positive int or None (all problems at once), got {concurrency!r}")
        self.expand, self.concurrency = expand, concurrency
        self.cache = cache if cache is not None else getattr(expand, "cache", None)

    def new_engine(self) -> Engine:
        """A fresh engine with this Searcher's configuration and cache (for ask/tell use)."""
        return Engine(self.config, cache=self.cache)

    def search(self, root_tokens: Tokens, *, key: str | bytes | None = None, seed: int = 0, keep_tree: bool = False) -> SearchResult:
        """Searches one problem from its root tokens; ``keep_tree`` returns every node in
        ``SearchResult.tree`` (for pictures and analysis)."""
        return self.search_many([root_tokens], keys=None if key is None else [key], seed=seed, keep_tree=keep_tree)[0]

    def search_many(self, roots: Sequence[Tokens], *, keys: Sequence[str | bytes] | None = None, seed: int = 0,
                    keep_tree: bool = False) -> list[SearchResult]:  # fmt: skip
        """Searches several problems together: each round, the nodes of every live problem go to
        ``expand`` as one batch; a finished problem makes room for the next at once."""
        if keys is not None and len(keys) != len(roots):
            raise ValueError(f"keys has {len(keys)} entries for {len(roots)} roots; give one key per root")
        searches = [
            Search(as_tokens(r, f"roots[{i}]"), self.config, seed=seed, keep_tree=keep_tree,
                   key=None if keys is None else (keys[i].encode() if isinstance(keys[i], str) else keys[i]))
            for i, r in enumerate(roots)
        ]  # fmt: skip
        scheduler = Scheduler(self.expand, cache=self.cache, concurrency=self.concurrency or max(1, len(searches)))
        out: list[Any] = [None] * len(searches)
        for i, result in scheduler.run(single(s) for s in searches):
            out[i] = result
        return out
