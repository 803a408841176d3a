"""Q*: A* over reasoning steps on the native engine, f = g + lam * h.

g aggregates a process reward of the steps so far (``reward``; the paper: min of a PRM on GSM8K,
0 on MATH, last of a syntax penalty on MBPP); h of a child is Q(state, step) from ``value`` (the
QVM). Each expansion asks the policy for ``k`` next steps of every node of the batch in one
``propose`` call. Of the ``num_solutions`` solutions found, the one with the highest f is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..protocols import StepPolicy, Task, check_proposals
from ..rollout import greedy_steps
from ..searcher import Searcher
from ..types import Aggregate, Child, Node, SearchResult, Tokens
from .record import Meter, ProblemRecord, StepScorer, check_scores

__all__ = ["QStar", "qstar"]


@dataclass(frozen=True)
class QStar:
    """The Q* method (see the module docstring).

    Args:
        lam: weight of h. k: next steps proposed per expanded node (the paper: K = 6).
        aggregate: how g combines step rewards. num_solutions: solutions found before stopping.
        reward: step scorer for g (None: 0). value: step scorer for h (None: 0, plain best-first on g).
        temperature: the proposals' temperature. max_steps: depth limit.
        batch_size: nodes expanded per round (1 is exact A*). max_expansions: expansion budget.
        max_tokens: budget of generated step tokens (the engine stops adding children past it).
        fallback: when the budget ends without a solution, answer with the best open node's path
            completed greedily (its tokens are counted) instead of nothing.
    """

    lam: float = 1.0
    k: int = 6
    aggregate: Aggregate = "min"
    num_solutions: int = 1
    reward: StepScorer | None = None
    value: StepScorer | None = None
    temperature: float = 0.9
    max_steps: int = 16
    batch_size: int = 1
    max_expansions: int | None = None
    max_tokens: int | None = None
    fallback: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive int (next steps per node), got {self.k!r}")
        self.searcher(lambda nodes: [[] for _ in nodes])  # fail fast on a bad engine setting

    @property
    def name(self) -> str:
        return f"qstar_lam{self.lam:g}_k{self.k}_{self.aggregate}" + (f"_sol{self.num_solutions}" if self.num_solutions > 1 else "") + ("_fallback" if self.fallback else "")

    def searcher(self, expand: Any) -> Searcher:
        return Searcher(
            expand, lam=self.lam, aggregate=self.aggregate, batch_size=self.batch_size,
            num_solutions=self.num_solutions, max_depth=self.max_steps, max_expansions=self.max_expansions, max_tokens=self.max_tokens,
        )

    def search(self, policy: StepPolicy, root: Tokens, *, seed: int = 0, keep_tree: bool = False) -> tuple[SearchResult, str]:
        """Runs the search from ``root`` (the prompt's tokens); returns the result and the best
        solution's text ("" when none was found)."""
        texts: dict[bytes, str] = {}  # child state tokens -> its step's text

        def expand(nodes: list[Node]) -> list[list[Child]]:
            ks = [self.k] * len(nodes)
            props = check_proposals(policy, policy.propose([n.tokens for n in nodes], ks, temperature=self.temperature, seed=seed), ks)
            zeros = [[0.0] * len(p) for p in props]
            rewards = zeros if self.reward is None else check_scores("reward", self.reward(nodes, props), props)
            qs = zeros if self.value is None else check_scores("value", self.value(nodes, props), props)
            out = []
            for node, steps, rs, vs in zip(nodes, props, rewards, qs):
                for s in steps:
                    texts[_state_key(node.tokens, s.tokens)] = s.text
                out.append([Child(s.tokens, reward=r, q=q, terminal=bool(s.terminal)) for s, r, q in zip(steps, rs, vs)])
            return out

        result = self.searcher(expand).search(root, keep_tree=keep_tree or self.fallback)
        if result.best is not None:
            return result, _path_text(texts, root, result.best.steps)
        if not self.fallback:
            return result, ""
        return result, self._complete_best_open(policy, root, result, texts, seed)

    def _complete_best_open(self, policy: StepPolicy, root: Tokens, result: SearchResult, texts: dict[bytes, str], seed: int) -> str:
        """The path of the open node with the highest f (the root if none), then greedy steps."""
        tree = result.tree or []
        open_ = [t.record for t in tree if t.record.status in ("open", "selected")]
        node = max(open_, key=lambda r: (r.f, -r.id)).id if open_ else 0
        steps = []
        while node > 0:
            steps.append(tree[node].step)
            node = tree[node].record.parent
        steps.reverse()
        state = np.concatenate([np.asarray(root, dtype=np.int32), *steps]).astype(np.int32)
        rest = greedy_steps(policy, state, max_steps=self.max_steps - len(steps), seed=seed)
        return _path_text(texts, root, steps) + "".join(s.text for s in rest)

    def __call__(self, task: Task, policy: StepPolicy, problem: Any, *, seed: int = 0) -> ProblemRecord:
        meter = Meter(policy)
        result, text = self.search(policy, task.root(problem), seed=seed)
        best = result.best
        return meter.record(
            task, problem, self.name, text,
            f=None if best is None else best.f, expanded=result.stats.expanded, stop_reason=result.stop_reason,
            solutions=len(result.solutions), fallback=best is None and self.fallback,
        )


def _path_text(texts: dict[bytes, str], root: Tokens, steps: list[Any]) -> str:
    text, state = "", np.asarray(root, dtype=np.int32)
    for step in steps:
        text += texts[_state_key(state, step)]
        state = np.concatenate([state, step]).astype(np.int32)
    return text


def _state_key(state: Any, step: Any) -> bytes:
    return np.concatenate([np.asarray(state, dtype=np.int32), np.asarray(step, dtype=np.int32)]).tobytes()


def qstar(lam: float = 1.0, k: int = 6, aggregate: Aggregate = "min", num_solutions: int = 1, **kw: Any) -> QStar:
    """The Q* method (see :class:`QStar`); the paper's settings are the defaults (lam 1, K 6)."""
    return QStar(lam=lam, k=k, aggregate=aggregate, num_solutions=num_solutions, **kw)
