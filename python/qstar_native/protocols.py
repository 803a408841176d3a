"""The two small protocols the library is written against.

- :class:`Policy`: proposes next steps for a batch of nodes (``propose(batch) -> Steps``) and
  turns token ids into text (``decode``). :class:`~qstar_native.policy.hf.HFPolicy` implements
  it; tests use scripted ones. Reproducibility contract: the steps proposed for a node depend only
  on (its state, its k, temperature and seed), never on the other nodes of the batch. Labelling
  relies on it to resume with identical results, and evaluation on it for records that do not
  depend on concurrency.
- :class:`Task`: what a benchmark provides: a problem's id and prompt tokens, the outcome reward
  of a completion, and its final answer (for majority vote).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from .batch import Batch, Steps
from .types import Tokens

__all__ = ["Policy", "Task"]


@runtime_checkable
class Policy(Protocol):
    def propose(self, batch: Batch) -> Steps: ...

    def decode(self, ids: Sequence[int]) -> str: ...


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
