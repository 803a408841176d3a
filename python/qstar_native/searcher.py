"""The Searcher: drives the engine's ask/tell loop with a user's expand callback."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .engine import Engine
from .types import Aggregate, Child, Node, SearchResult, Solution, Tokens, TreeNode

if TYPE_CHECKING:
    from .pretrained import Solver

ExpandFn = Callable[[list[Node]], Sequence[Sequence[Child]]]
"""Takes a batch of nodes, returns one list of scored children per node (possibly empty)."""


class Searcher:
    """Best-first (A*) search over step-wise problems, with batched expansion.

    Args:
        expand: called once per batch with the nodes to expand (never once per node); returns, for
            each node, its candidate next steps as :class:`Child` records with their step reward,
            value ``q`` and terminal flag. Exceptions (KeyboardInterrupt included) propagate
            unchanged; the Searcher stays usable.
        lam: weight of h in ``f = g + lam * h``.
        aggregate: how g combines the path's step rewards: ``"min"``, ``"max"``, ``"sum"``,
            ``"mean"``, ``"product"``, ``"last"`` or ``"zero"`` (g = 0).
        batch_size: nodes selected per problem per round; 1 is exact A*. Larger batches never
            accept a solution while a handed-out node could still beat it.
        num_solutions: stop after this many solutions (best first).
        max_expansions, max_nodes, max_depth, max_tokens, frontier_capacity: budgets; ``None`` is
            no limit. ``max_depth`` bounds the steps of a path; ``max_tokens`` the step tokens of all
            generated children; over ``frontier_capacity`` the worst open nodes are pruned.
        vocab_size: if given, token ids outside ``[0, vocab_size)`` are rejected.
        dedup: merge children whose state (full token sequence, or ``Child.key``) already exists.

    Example:
        Count up from 0 to 3 in steps of +1 or +2; each step costs 1.

        >>> def expand(nodes):
        ...     out = []
        ...     for n in nodes:
        ...         total = int(n.tokens.sum())
        ...         out.append([Child([s], reward=-1.0, terminal=total + s == 3)
        ...                     for s in (1, 2) if total + s <= 3])
        ...     return out
        >>> result = Searcher(expand, aggregate="sum").search([0])
        >>> [s.tolist() for s in result.best.steps], result.best.g
        ([[1], [2]], -2.0)
    """

    def __init__(
        self,
        expand: ExpandFn,
        *,
        lam: float = 1.0,
        aggregate: Aggregate = "min",
        batch_size: int = 1,
        num_solutions: int = 1,
        max_expansions: int | None = None,
        max_nodes: int | None = None,
        max_depth: int | None = None,
        max_tokens: int | None = None,
        frontier_capacity: int | None = None,
        vocab_size: int | None = None,
        dedup: bool = True,
    ) -> None:
        if not callable(expand):
            raise TypeError(f"expand must be callable (nodes -> children per node), got {type(expand).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.expand = expand
        self.batch_size = batch_size
        self._new_engine: Callable[[], Engine] = functools.partial(
            Engine,
            lam=lam,
            aggregate=aggregate,
            num_solutions=num_solutions,
            max_expansions=max_expansions,
            max_nodes=max_nodes,
            max_depth=max_depth,
            max_tokens=max_tokens,
            frontier_capacity=frontier_capacity,
            vocab_size=vocab_size,
            dedup=dedup,
        )
        self._new_engine()  # fail fast on a bad configuration

    @staticmethod
    def from_pretrained(policy_dir: str | os.PathLike[str] | None = None, *, qvm: str | os.PathLike[str] | None = "default", **kw: Any) -> "Solver":
        """A :class:`~qstar_native.pretrained.Solver`: Q* bound to a Hugging Face policy directory
        (default: the embedded one) and a QVM directory (``"default"``: the embedded QVM with the
        embedded policy). Keyword arguments go to the Solver (``lam``, ``k``, ``max_expansions``...).

        >>> solver = Searcher.from_pretrained()  # doctest: +SKIP
        >>> print(solver.solve("A box holds 6 eggs. How many eggs are in 7 boxes?"))  # doctest: +SKIP
        """
        from .pretrained import Solver

        return Solver.from_pretrained(policy_dir, qvm=qvm, **kw)

    def new_engine(self) -> Engine:
        """A fresh engine with this Searcher's configuration (for ask/tell use)."""
        return self._new_engine()

    def search(self, root_tokens: Tokens, *, key: str | bytes | None = None, keep_tree: bool = False) -> SearchResult:
        """Searches one problem from its root tokens; ``keep_tree`` returns every node in
        ``SearchResult.tree`` (for pictures and analysis)."""
        return self.search_many([root_tokens], keys=None if key is None else [key], keep_tree=keep_tree)[0]

    def search_many(
        self, roots: Sequence[Tokens], *, keys: Sequence[str | bytes] | None = None, keep_tree: bool = False
    ) -> list[SearchResult]:
        """Searches several problems at once; each round's nodes of all unfinished problems go to
        the expand callback together, so the model sees one batch per round."""
        if keys is not None and len(keys) != len(roots):
            raise ValueError(f"keys has {len(keys)} entries for {len(roots)} roots; give one key per root")
        start = time.perf_counter()
        engines = [self.new_engine() for _ in roots]
        for i, (eng, root) in enumerate(zip(engines, roots)):
            eng.add_root(root, key=None if keys is None else keys[i])
        calls = [0] * len(engines)
        active = list(range(len(engines)))
        while active:
            batch: list[tuple[int, int]] = []
            for p in active:
                batch.extend((p, int(n)) for n in engines[p].select(self.batch_size))
            if not batch:
                break
            nodes = [engines[p].view(n, problem=p) for p, n in batch]
            children = self.expand(nodes)
            if children is None or len(children) != len(nodes):
                got = "None" if children is None else f"{len(children)} child lists"
                raise ValueError(f"expand returned {got} for {len(nodes)} nodes; return one list (possibly empty) per node")
            by_problem: dict[int, list[int]] = {}
            for i, (p, _) in enumerate(batch):
                by_problem.setdefault(p, []).append(i)
            for p, idx in by_problem.items():
                calls[p] += 1
                try:
                    engines[p].expand_many([batch[i][1] for i in idx], [children[i] for i in idx])
                except (TypeError, ValueError) as err:
                    raise type(err)(f"expand callback returned bad children for problem {p}: {err}") from err
            active = [p for p in active if not engines[p].done]
        wall = time.perf_counter() - start
        return [_result(eng, calls[i], wall, keep_tree) for i, eng in enumerate(engines)]


def _result(eng: Engine, callback_calls: int, wall: float, keep_tree: bool) -> SearchResult:
    solutions = []
    for sid in eng.solutions:
        path = eng.path(sid)[1:]
        recs = [eng.node(n) for n in path]
        last = eng.node(sid)
        solutions.append(
            Solution(
                node_id=sid,
                steps=[eng.step_tokens(n) for n in path],
                rewards=[r.reward for r in recs],
                hs=[r.h for r in recs],
                f=last.f,
                g=last.g,
                h=last.h,
            )
        )
    stats = replace(eng.stats(), callback_calls=callback_calls)
    tree = None
    if keep_tree:
        tree = [TreeNode(eng.node(i), eng.step_tokens(i) if i else eng.state_tokens(i)) for i in range(eng.num_nodes)]
    return SearchResult(solutions=solutions, stats=stats, stop_reason=eng.stop_reason, wall_seconds=wall, tree=tree)
