"""Solving questions with Q* on a loaded policy: :class:`Solver`, its results, and
:func:`load_default` (the embedded policy and QVM).

Example:
    >>> import qstar_native
    >>> solver = qstar_native.load_default()  # doctest: +SKIP
    >>> print(solver.solve("Tom has 3 boxes of 12 eggs. He breaks 5. How many are left?"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .batch import Node
from .methods import QSTAR_EXPANSIONS, QStar
from .pretrained import DEFAULT_QVM_DIR, LoadedPolicy, check_prompt_lengths, load_policy, load_qvm, search_setup
from .scheduler import Scheduler, Search, single
from .tasks.math_answers import extract_answer
from .types import Aggregate, SearchResult
from .value import QValueModel

__all__ = ["SolveResult", "SolvedStep", "Solver", "load_default"]


@dataclass(frozen=True)
class SolvedStep:
    """One step of the chosen path: its text, process reward, and g, h, f of the node it made."""

    text: str
    reward: float
    g: float
    h: float
    f: float


@dataclass(frozen=True)
class SolveResult:
    """What :meth:`Solver.solve` returns: the chosen path (empty when the search found no
    solution), its answer, and the whole search (its tree kept)."""

    question: str
    steps: list[SolvedStep]
    answer: str | None
    search: SearchResult
    node_texts: dict[int, str]

    @property
    def completion(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def f(self) -> float | None:
        return self.search.best.f if self.search.best is not None else None

    def chosen_path(self) -> list[int]:
        """Node ids from the root to the chosen solution (``[0]`` when there is none)."""
        best = self.search.best
        return [0] if best is None or self.search.engine is None else self.search.engine.path(best.node_id)

    def write_tree(self, path: str | os.PathLike[str]) -> Path:
        """Writes the search tree as ``.html``, ``.svg`` or ``.dot``, the chosen path highlighted."""
        from .render import DrawNode, write_tree

        if self.search.tree is None:
            raise ValueError("this result has no search tree to draw")
        nodes = [DrawNode(n.id, n.parent, self.node_texts.get(n.id, ""), n.f, n.g, n.h, n.reward, n.status, n.terminal) for n in self.search.tree]
        return write_tree(nodes, path, chosen=self.chosen_path(), title=self.question)

    def __str__(self) -> str:
        st = self.search.stats
        if not self.steps:
            return f"no solution found (search stopped: {self.search.stop_reason}; {st.expanded} expansions, {st.nodes} nodes, {self.search.wall_seconds:.2f} s)"
        lines = [f"{'f':>7} {'g':>7} {'h':>7}  step"]
        for s in self.steps:
            lines.append(f"{s.f:7.3f} {s.g:7.3f} {s.h:7.3f}  {s.text.rstrip()}")
        lines.append(f"answer: {self.answer}   ({st.expanded} expansions, {st.nodes} nodes, {self.search.wall_seconds:.2f} s)")
        return "\n".join(lines)


class Solver:
    """Q* on a loaded policy: A* with g = the process reward aggregated along the path and
    h = the QVM's Q of each proposed step.

    Args:
        policy: a :class:`LoadedPolicy` (:func:`load_policy`).
        qvm: its Q-value model, or None for h = 0 (best-first on g alone).
        lam: weight of h. k: next steps proposed per expansion. temperature: their sampling
            (None: the policy's setting).
        process_reward: ``"annotations"`` (the GSM8K ``<<expr=value>>`` check, -1 per wrong one),
            ``"grounded"`` (that, and -1 per operand the context never states), None (g = 0), or
            ``"default"``: the policy's setting.
        aggregate: how g combines step rewards. batch_size: nodes expanded per round.
        max_expansions, max_tokens: the search's budgets. seed: sampling seed.
        calculator: write every ``<<expr=value>>`` result during decode (see
            :mod:`qstar_native.policy.calculator`); None: the policy's setting.
        concurrency: questions searched at once by :meth:`solve_many`.
        greedy_first: each expansion's first proposal is the greedy step (the development split's
            choice; False samples all k).
        policy_options: further :class:`~qstar_native.policy.HFPolicy` arguments, such as ``min_p``.

    Example:
        >>> solver = Solver.from_pretrained()  # the embedded default  # doctest: +SKIP
        >>> result = solver.solve("A box holds 6 eggs. How many eggs are in 7 boxes?")  # doctest: +SKIP
        >>> result.answer, result.write_tree("tree.html")  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: LoadedPolicy,
        qvm: QValueModel | None = None,
        *,
        lam: float = 1.0,
        k: int = 4,
        temperature: float | None = None,
        process_reward: str | None = "default",
        aggregate: Aggregate = "min",
        batch_size: int = 1,
        max_expansions: int | None = QSTAR_EXPANSIONS,
        max_tokens: int | None = None,
        seed: int = 0,
        calculator: bool | None = None,
        concurrency: int = 16,
        greedy_first: bool = True,
        **policy_options: Any,
    ) -> None:
        self.policy, self.seed, self.concurrency = policy, int(seed), concurrency
        self.setup = search_setup(policy, qvm, seed=seed, temperature=temperature, process_reward=process_reward, calculator=calculator,
                                  **policy_options)  # fmt: skip
        self.method = QStar(
            lam=lam, k=k, aggregate=aggregate, temperature=self.setup.temperature, max_steps=policy.settings.max_steps,
            batch_size=batch_size, max_expansions=max_expansions, max_tokens=max_tokens, greedy_first=greedy_first,
        )  # fmt: skip

    @classmethod
    def from_pretrained(
        cls, policy_dir: str | os.PathLike[str] | None = None, *, qvm: str | os.PathLike[str] | None = "default", device: str | None = "cpu", **kw: Any
    ) -> "Solver":
        """Loads a policy directory (default: the embedded default) and a QVM (``"default"``: the
        embedded one when the policy is the default, else none; a path; or None) and returns a Solver."""
        policy = load_policy(policy_dir, device=device)
        if qvm == "default":
            qvm = DEFAULT_QVM_DIR if policy_dir is None and DEFAULT_QVM_DIR.is_dir() else None
        return cls(policy, None if qvm is None else load_qvm(qvm, policy), **kw)

    def solve(self, question: str, *, seed: int | None = None) -> SolveResult:
        """Searches for the best reasoning path for ``question`` (the whole tree is kept, for
        :meth:`SolveResult.write_tree`)."""
        return self.solve_many([question], seed=seed)[0]

    def solve_many(self, questions: Sequence[str], *, seed: int | None = None) -> list[SolveResult]:
        """Solves several questions together (many in flight, one model call per round)."""
        for i, q in enumerate(questions):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"question {i} must be a non-empty string")
        config = self.method.config
        seed = self.seed if seed is None else seed
        roots = check_prompt_lengths(self.policy, [self.policy.prompt(q) for q in questions], [f"question {i}" for i in range(len(questions))])
        searches = [Search(root, config, seed=seed, keep_tree=True) for root in roots]
        results: list[Any] = [None] * len(questions)
        scheduler = Scheduler(self.setup.expand, concurrency=self.concurrency)
        for i, res in scheduler.run(single(s) for s in searches):
            results[i] = self._result(questions[i], res)
        return results

    def _result(self, question: str, result: SearchResult) -> SolveResult:
        tree: list[Node] = result.tree or []
        texts = {n.id: self.policy.decode(n.step) for n in tree}
        texts[0] = question
        steps: list[SolvedStep] = []
        if result.best is not None:
            for node_id in result.engine.path(result.best.node_id)[1:]:
                n = tree[node_id]
                steps.append(SolvedStep(texts[node_id], n.reward, n.g, n.h, n.f))
        answer = extract_answer("".join(s.text for s in steps)) if steps else None
        return SolveResult(question, steps, answer, result, texts)


def load_default(*, device: str | None = "cpu", **kw: Any) -> Solver:
    """The embedded default policy and QVM as a :class:`Solver` (keyword arguments go to it)."""
    return Solver.from_pretrained(None, qvm="default", device=device, **kw)
