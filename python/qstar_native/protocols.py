"""The small protocols that labelling, baselines and evaluation are written against.

- :class:`StepPolicy`: proposes next steps for a batch of states and counts its tokens. Scripted
  policies (tests) and the HF adapter (:mod:`qstar_native.policy.step_policy`) implement it.
- :class:`Step`: one proposed step. ``qstar_native.policy.Candidate`` has the same fields, so an
  HF policy's candidates pass through unchanged.
- :class:`Task`: what a benchmark provides: the prompt tokens of a problem, its id, the outcome
  reward of a completion, and the final answer of a completion (for majority vote).

Reproducibility contract of a StepPolicy: the steps proposed for one state depend only on
(state tokens, k, temperature, seed), never on the other states of the batch. Labelling relies on
it to resume after a crash with identical results, and evaluation to repeat runs exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .engine import as_tokens
from .types import TokenArray, Tokens

__all__ = ["Step", "StepPolicy", "Task", "check_proposals", "per_state"]


@dataclass(frozen=True)
class Step:
    """One proposed next step.

    Args:
        tokens: the step's token ids (at least one).
        text: the step's text (delimiter included, e.g. a trailing newline); completions are the
            concatenation of their steps' texts.
        logprob: the step's log-probability under the policy.
        terminal: the step ends the solution (final answer, EOS).
        count: how many of the k samples drew this step (policies that deduplicate samples).

    Example:
        >>> Step([7, 8], "x = 2\\n").count
        1
    """

    tokens: Tokens
    text: str
    logprob: float = 0.0
    terminal: bool = False
    count: int = 1


@runtime_checkable
class StepPolicy(Protocol):
    """Proposes next steps for many states at once.

    ``propose(states, k, temperature=, seed=)`` returns, for each state, up to ``k`` samples of
    the next step grouped into distinct :class:`Step` records (``sum(step.count) <= k``;
    ``temperature == 0`` is greedy: one step with ``count == k``). An empty list means the
    state has no continuation. ``k`` is one int for all states or one int per state.
    ``tokens_generated`` and ``tokens_forwarded`` are running counters that every method reads
    the same way (differences before/after a problem), so budgets compare across methods.
    """

    @property
    def tokens_generated(self) -> int: ...

    @property
    def tokens_forwarded(self) -> int: ...

    def propose(
        self, states: Sequence[TokenArray], k: int | Sequence[int], *, temperature: float, seed: int
    ) -> Sequence[Sequence[Any]]: ...


@runtime_checkable
class Task(Protocol):
    """A benchmark, as methods and labellers see it (see :class:`qstar_native.tasks.math_task.MathTask`).

    - ``problem_id(problem)``: a stable id (label rows and records are keyed by it).
    - ``root(problem)``: the prompt's token ids, the root state.
    - ``outcome(problem, completion)``: the outcome reward of a completion (the steps' texts
      joined), e.g. 1.0 correct / 0.0 wrong.
    - ``answer(completion)``: the completion's final answer in a canonical form for voting, or
      None when it has none.
    """

    def problem_id(self, problem: Any) -> str: ...

    def root(self, problem: Any) -> Tokens: ...

    def outcome(self, problem: Any, completion: str) -> float: ...

    def answer(self, completion: str) -> str | None: ...


def per_state(k: int | Sequence[int], n: int) -> list[int]:
    """``k`` as one positive int per state.

    >>> per_state(3, 2), per_state([1, 4], 2)
    ([3, 3], [1, 4])
    """
    ks = [k] * n if isinstance(k, (int, np.integer)) else list(k)
    if len(ks) != n:
        raise ValueError(f"k has {len(ks)} entries for {n} states; pass one int, or one per state")
    for i, v in enumerate(ks):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"k[{i}] = {v!r}; the number of samples must be a positive int")
    return [int(v) for v in ks]


def check_proposals(policy: object, out: object, ks: Sequence[int]) -> list[list[Any]]:
    """The output of ``policy.propose`` checked against the protocol, or a ValueError naming the
    policy, the state and the fix. Step tokens are normalised to int32 arrays only for checking."""
    name = type(policy).__name__
    if not isinstance(out, Sequence) or len(out) != len(ks):
        got = f"{len(out)} lists" if isinstance(out, Sequence) else type(out).__name__
        raise ValueError(f"{name}.propose returned {got} for {len(ks)} states; return one list of steps per state")
    result = []
    for i, (steps, k) in enumerate(zip(out, ks)):
        steps = list(steps)
        total = 0
        for j, s in enumerate(steps):
            for attr in ("tokens", "text", "terminal"):
                if not hasattr(s, attr):
                    raise ValueError(f"{name}.propose: step {j} of state {i} has no {attr!r}; return qstar_native.protocols.Step records")
            if len(as_tokens(s.tokens, f"tokens of step {j} of state {i}")) == 0:
                raise ValueError(f"{name}.propose: step {j} of state {i} has no tokens; a step needs at least one")
            count = getattr(s, "count", 1)
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise ValueError(f"{name}.propose: step {j} of state {i} has count {count!r}; counts are positive ints")
            total += int(count)
        if total > k:
            raise ValueError(f"{name}.propose: state {i} got steps with counts summing to {total} for k = {k}; counts must sum to at most k")
        result.append(steps)
    return result
