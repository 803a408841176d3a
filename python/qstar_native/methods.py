"""The methods, all as searches on one engine: greedy, best-of-N, beam search and Q*.

Each method is a small frozen object: a :class:`~qstar_native.config.SearchConfig` (how the engine
selects, ranks and budgets) plus an answer rule. ``method.job(context, problem, seed)`` is a
scheduler job (:mod:`qstar_native.scheduler`) that yields its searches and returns the problem's
:class:`~qstar_native.records.ProblemRecord`, so every method runs many problems in flight with
the same token accounting (what the policy reported for this problem's nodes).

- :class:`Greedy`: beam width 1, one greedy proposal per node.
- :class:`BestOfN`: ``n`` rollouts as one tree (unlimited width, each node drawing as many
  samples as drew it); the answer ranked by the QVM (h of the last step), a PRM (g, the min of
  the steps' rewards) or majority vote (count-weighted).
- :class:`Beam`: step-level beam search ranked by the engine's f (g + lam * h).
- :class:`QStar`: A* on f = g + lam * h; optionally, when the budget ends without a solution,
  the best open path completed greedily (``fallback``), and, with ``vote``, the answer chosen by
  an f-weighted vote over the ``num_solutions`` solutions found (its own method name).

g and f are computed by the engine only (its ``aggregate`` and ``lam``); no method re-scores.

Example:
    >>> [m.name for m in (Greedy(), BestOfN(16, "majority"), Beam(4, 4), QStar(lam=1.0, k=6))]
    ['greedy', 'best_of_16_majority', 'beam_w4_k4', 'qstar_lam1_k6_min']
    >>> [m.name for m in parse_methods("greedy,best-of-n:8,beam:2,qstar:32", k=4, lam=1.0, temperature=0.5, max_steps=8)]
    ['greedy', 'best_of_8_qvm', 'beam_w2_k4', 'qstar_lam1_k4_min']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

from .config import SearchConfig
from .engine import Engine
from .records import ProblemRecord
from .scheduler import Job, Search
from .types import Aggregate, SearchResult

__all__ = ["Beam", "BestOfN", "Context", "Greedy", "Method", "MethodSpecError", "QStar", "parse_methods"]


QSTAR_EXPANSIONS = 48
"""Q*'s expansion budget when ``qstar`` names none (``qstar:E`` gives another, named ``_eE``)."""


class MethodSpecError(ValueError):
    """A ``--methods`` string names an unknown method or a bad number."""


@dataclass(frozen=True)
class Context:
    """What a method's job needs besides the problem: the task (prompt tokens, outcome, answer)
    and the policy's ``decode`` (token ids -> text)."""

    task: Any
    decode: Callable[[Any], str]

    def text(self, engine: Engine, node: int) -> str:
        """The completion along a node's path: each step decoded, joined."""
        return "".join(self.decode(engine.step_tokens(n)) for n in engine.path(node)[1:])

    def outcomes(self, problem: Any, completions: Sequence[str]) -> list[float]:
        """The task's outcome of each completion; a task with ``outcomes`` (code: sandbox runs in
        parallel) scores them together."""
        batch = getattr(self.task, "outcomes", None)
        if callable(batch):
            return [float(x) for x in batch(problem, list(completions))]
        return [float(self.task.outcome(problem, c)) for c in completions]

    def record(self, problem: Any, method: str, completion: str, results: Sequence[SearchResult], start: float, **extra: Any) -> ProblemRecord:
        """The problem's record: the completion scored by the task, tokens summed over searches."""
        task = self.task
        reward = float(task.outcome(problem, completion))
        return ProblemRecord(
            question_id=task.problem_id(problem), method=method, completion=completion, answer=task.answer(completion),
            reward=reward, correct=reward >= 1.0,
            tokens_generated=sum(r.stats.generated_tokens for r in results),
            tokens_forwarded=sum(r.stats.forwarded_tokens for r in results),
            wall_seconds=time.perf_counter() - start,
            question=str(getattr(problem, "question", "")), gold=_gold(problem), extra=extra,
        )  # fmt: skip


def _gold(problem: Any) -> str | None:
    gold = getattr(problem, "answer", None)
    return None if gold is None else str(gold)


class Method(Protocol):
    name: str

    def job(self, ctx: Context, problem: Any, seed: int) -> Job: ...


def _incomplete(engine: Engine) -> int:
    """The node to answer from when a search found no solution: the deepest unfinished node,
    best f among those (the root when nothing else)."""
    nodes = [n for n in engine.nodes() if not n.terminal and n.status in ("open", "selected", "pruned")]
    return max(nodes, key=lambda n: (n.depth, n.f, -n.id)).id if nodes else 0


def _answer_node(result: SearchResult, engine: Engine) -> int:
    return result.best.node_id if result.best is not None else _incomplete(engine)


@dataclass(frozen=True)
class Greedy:
    """Greedy chain of thought: the policy's most likely step until a terminal step or ``max_steps``."""

    max_steps: int = 16
    name: str = field(default="greedy", init=False)

    @property
    def config(self) -> SearchConfig:
        return SearchConfig(selection="beam", beam_width=1, k=1, temperature=0.0, num_solutions=1, max_steps=self.max_steps, dedup=False)

    def job(self, ctx: Context, problem: Any, seed: int) -> Job:
        start = time.perf_counter()
        res = yield Search(ctx.task.root(problem), self.config, seed=seed)
        node = _answer_node(res, res.engine)
        return ctx.record(problem, self.name, ctx.text(res.engine, node), [res], start, steps=res.engine.node(node).depth)


@dataclass(frozen=True)
class BestOfN:
    """``n`` sampled solutions, one kept.

    ``rank``: ``"majority"`` (most common answer, count-weighted), ``"qvm"`` (h of the last
    step: Q(s_T-1, a_T)), ``"prm"`` (the steps' rewards aggregated with ``aggregate``; the paper's
    GSM8K PRM aggregate is min). Ties go to the solution drawn first (depth-first order).
    """

    n: int
    rank: Literal["majority", "qvm", "prm"] = "majority"
    temperature: float = 0.9
    max_steps: int = 16
    aggregate: Aggregate = "min"

    def __post_init__(self) -> None:
        if self.rank not in ("majority", "qvm", "prm"):
            raise ValueError(f"rank={self.rank!r}; pick 'majority', 'qvm' or 'prm'")
        self.config  # noqa: B018 - fail fast on bad settings

    @property
    def name(self) -> str:
        return f"best_of_{self.n}_{self.rank}"

    @property
    def config(self) -> SearchConfig:
        prm = self.rank == "prm"
        return SearchConfig(selection="beam", beam_width=None, k=self.n, rollouts=True, temperature=self.temperature,
                            num_solutions=None, max_steps=self.max_steps, dedup=False, batch_size=self.n,
                            aggregate=self.aggregate if prm else "zero", lam=0.0 if prm else 1.0)  # fmt: skip

    def job(self, ctx: Context, problem: Any, seed: int) -> Job:
        start = time.perf_counter()
        res = yield Search(ctx.task.root(problem), self.config, seed=seed)
        eng = res.engine
        leaves = [n for n in eng.nodes() if n.status == "solution" or (n.status == "pruned" and not n.terminal)]
        if not leaves:
            return ctx.record(problem, self.name, "", [res], start, scores=[])
        leaves.sort(key=lambda n: eng.path(n.id))  # depth-first order: ties go to the first drawn
        texts = [ctx.text(eng, n.id) for n in leaves]
        if self.rank == "majority":
            answers = [ctx.task.answer(t) for t in texts]
            votes: dict[str, int] = {}
            for a, n in zip(answers, leaves):
                if a is not None:
                    votes[a] = votes.get(a, 0) + n.samples
            scores = [float(votes[a]) if a is not None else -1.0 for a in answers]
        else:
            scores = [n.f for n in leaves]  # f = h (qvm: zero g, lam 1) or g (prm: lam 0)
        best = max(range(len(leaves)), key=lambda i: (scores[i], -i))
        return ctx.record(problem, self.name, texts[best], [res], start, scores=scores, distinct=len(leaves))


@dataclass(frozen=True)
class Beam:
    """Step-level beam search: each level keeps the ``width`` best children by f; the answer is
    the best finished path (the best unfinished one when none finished)."""

    width: int
    k: int
    temperature: float = 0.9
    max_steps: int = 16
    lam: float = 1.0
    aggregate: Aggregate = "min"

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - fail fast on bad settings

    @property
    def name(self) -> str:
        return f"beam_w{self.width}_k{self.k}"

    @property
    def config(self) -> SearchConfig:
        return SearchConfig(selection="beam", beam_width=self.width, num_solutions=self.width, k=self.k, temperature=self.temperature,
                            max_steps=self.max_steps, lam=self.lam, aggregate=self.aggregate, batch_size=self.width)  # fmt: skip

    def job(self, ctx: Context, problem: Any, seed: int) -> Job:
        start = time.perf_counter()
        res = yield Search(ctx.task.root(problem), self.config, seed=seed)
        node = _answer_node(res, res.engine)
        return ctx.record(problem, self.name, ctx.text(res.engine, node), [res], start, score=res.engine.node(node).f,
                          finished=len(res.solutions))  # fmt: skip


@dataclass(frozen=True)
class QStar:
    """Q*: A* on f = g + lam * h; g aggregates the steps' process rewards, h is Q of the step that
    made the node.

    Args:
        lam: weight of h. k: next steps proposed per expanded node (the paper: K = 6).
        aggregate: how g combines step rewards. num_solutions: solutions found before stopping;
            the one with the highest f answers.
        temperature: the proposals' temperature. max_steps: depth limit.
        batch_size: nodes expanded per round (1 is exact A*). max_expansions, max_tokens: budgets.
        fallback: when the budget ends without a solution, answer with the best open node's path
            completed greedily (its tokens are counted) instead of nothing.
        vote: answer with the final answer that has the largest total weight ``exp(f)`` over the
            solutions found (ties to the best f), instead of the best solution's own answer.
        greedy_first: each expansion's first proposal is the greedy step (the others sampled), so
            the greedy path stays in reach; ``qstar eval`` and ``qstar solve`` turn it on (it won on
            the development split, see the README).
        lookahead: h of a node is the paper's max over the q of the k steps proposed at it
            (proposed one round early), instead of the q of the step that made it.

    Every record's ``extra`` also says how rich the search was: ``distinct`` children per
    expansion, and ``tree_correct``, whether any finished path in the tree was right (the
    headroom an oracle choosing among the tree's solutions would have).
    """

    lam: float = 1.0
    k: int = 6
    aggregate: Aggregate = "min"
    num_solutions: int = 1
    temperature: float = 0.9
    max_steps: int = 16
    batch_size: int = 1
    max_expansions: int | None = None
    max_tokens: int | None = None
    fallback: bool = False
    vote: bool = False
    greedy_first: bool = False
    lookahead: bool = False

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - fail fast on bad settings

    @property
    def name(self) -> str:
        """``qstar_lam{lam}_k{k}_{aggregate}``, then what differs from the CLI's defaults: the
        expansion budget (``_e24``), solutions, vote, fallback, greedy-first proposals."""
        sol = f"_sol{self.num_solutions}" if self.num_solutions > 1 else ""
        budget = f"_e{self.max_expansions}" if self.max_expansions not in (None, QSTAR_EXPANSIONS) else ""
        return f"qstar_lam{self.lam:g}_k{self.k}_{self.aggregate}{budget}{sol}" + ("_vote" if self.vote else "") + ("_fallback" if self.fallback else "") + ("_greedyfirst" if self.greedy_first else "") + ("_lookahead" if self.lookahead else "")

    @property
    def config(self) -> SearchConfig:
        return SearchConfig(lam=self.lam, aggregate=self.aggregate, k=self.k, temperature=self.temperature, num_solutions=self.num_solutions,
                            max_steps=self.max_steps, batch_size=self.batch_size, max_expansions=self.max_expansions,
                            max_tokens=self.max_tokens, greedy_first=self.greedy_first, lookahead=self.lookahead)  # fmt: skip

    def job(self, ctx: Context, problem: Any, seed: int) -> Job:
        start = time.perf_counter()
        res = yield Search(ctx.task.root(problem), self.config, seed=seed)
        eng = res.engine
        st = res.stats
        terminals = [n for n in eng.nodes() if n.terminal]
        texts = {n.id: ctx.text(eng, n.id) for n in terminals}
        extra: dict[str, Any] = dict(expanded=st.expanded, stop_reason=res.stop_reason, solutions=len(res.solutions),
                                     distinct=st.generated / max(st.expanded, 1),
                                     tree_correct=any(r >= 1.0 for r in ctx.outcomes(problem, list(texts.values()))))  # fmt: skip
        if res.best is not None:
            node = self._vote(ctx, res, texts) if self.vote else res.best.node_id
            return ctx.record(problem, self.name, texts[node], [res], start, f=eng.node(node).f, fallback=False, **extra)
        if not self.fallback:
            return ctx.record(problem, self.name, "", [res], start, f=None, fallback=False, **extra)
        open_ = [n for n in eng.nodes() if n.status in ("open", "selected") and not n.terminal]
        node = max(open_, key=lambda n: (n.f, -n.id)) if open_ else eng.node(0)
        rest = Greedy(max_steps=max(1, self.max_steps - node.depth))
        cont = yield Search(node.tokens, rest.config, seed=seed)
        tail = cont.best.node_id if cont.best is not None else _incomplete(cont.engine)
        text = ctx.text(eng, node.id) + ctx.text(cont.engine, tail)
        return ctx.record(problem, self.name, text, [res, cont], start, f=None, fallback=True, **extra)

    @staticmethod
    def _vote(ctx: Context, res: SearchResult, texts: dict[int, str]) -> int:
        """The best solution among those whose answer has the largest total exp(f)."""
        weight: dict[Any, float] = {}
        best_of: dict[Any, int] = {}
        for sol in res.solutions:  # best f first
            answer = ctx.task.answer(texts[sol.node_id])
            weight[answer] = weight.get(answer, 0.0) + float(np.exp(min(sol.f, 50.0)))
            best_of.setdefault(answer, sol.node_id)
        answered = [a for a in weight if a is not None] or list(weight)  # no answer votes only when none has one
        return best_of[max(answered, key=lambda a: weight[a])]


def parse_methods(specs: str, *, k: int, lam: float, temperature: float, max_steps: int, num_solutions: int = 1,
                  fallback: bool = False, has_qvm: bool = True, aggregate: Aggregate = "min", greedy_first: bool = False) -> list[Any]:  # fmt: skip
    """Methods from a comma-separated spec: ``greedy``, ``best-of-n[:N]`` (ranked by the QVM,
    default N 10), ``best-of-n-prm[:N]`` (ranked by the process reward, g), ``majority[:N]``
    (default 10), ``beam[:W]`` (default 4), ``qstar[:E]`` (at most E expansions, default 48) and
    ``qstar-lookahead[:E]`` (h = max over the next k steps' q, the paper's).
    ``aggregate``: how g combines step rewards (``min`` for math, ``last`` for code's syntax
    reward); ``greedy_first``: Q*'s proposals include the greedy step. Raises
    :class:`MethodSpecError` naming the bad part."""

    def number(name: str, arg: str, default: int) -> int:
        if not arg:
            return default
        if not arg.isdigit() or int(arg) < 1:
            raise MethodSpecError(f"{name}:{arg} needs a positive integer after ':'")
        return int(arg)

    out: list[Any] = []
    for spec in [s.strip() for s in specs.split(",") if s.strip()]:
        name, _, arg = spec.partition(":")
        if name == "greedy" and not arg:
            out.append(Greedy(max_steps=max_steps))
        elif name == "best-of-n":
            if not has_qvm:
                raise MethodSpecError("best-of-n ranks by a QVM and none is loaded; give one (--qvm DIR) or use majority[:N]")
            out.append(BestOfN(number(name, arg, 10), "qvm", temperature=temperature, max_steps=max_steps))
        elif name == "best-of-n-prm":
            out.append(BestOfN(number(name, arg, 10), "prm", temperature=temperature, max_steps=max_steps, aggregate=aggregate))
        elif name == "majority":
            out.append(BestOfN(number(name, arg, 10), "majority", temperature=temperature, max_steps=max_steps))
        elif name == "beam":
            out.append(Beam(number(name, arg, 4), k, temperature=temperature, max_steps=max_steps, lam=lam, aggregate=aggregate))
        elif name in ("qstar", "qstar-lookahead"):
            out.append(QStar(lam=lam, k=k, num_solutions=num_solutions, fallback=fallback, temperature=temperature, aggregate=aggregate,
                             max_steps=max_steps, max_expansions=number(name, arg, QSTAR_EXPANSIONS), greedy_first=greedy_first,
                             lookahead=name == "qstar-lookahead"))  # fmt: skip
        else:
            raise MethodSpecError(f"unknown method {spec!r}; pick from greedy, best-of-n[:N], best-of-n-prm[:N], majority[:N], beam[:W], qstar[:E], "
                                  "qstar-lookahead[:E]")
    if not out:
        raise MethodSpecError("no method given; e.g. greedy,qstar")
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise MethodSpecError(f"a method is listed twice: {names}")
    return out
