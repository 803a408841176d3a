"""The record every math task yields: a question, its final answer, optionally a worked solution."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    """One math problem.

    ``steps`` is the reference solution, one reasoning step a line (``None`` when the source has
    none). The last step carries the final answer: ``#### 18`` for GSM8K-style sources, the line
    with ``\\boxed{...}`` for MATH. ``answer`` is the final answer alone, as text (compare answers
    with :func:`qstar_native.tasks.is_equivalent`, never with ``==``).

    >>> p = Problem("demo-1", "What is 2 + 3?", "5", ("2 + 3 = <<2+3=5>>5", "#### 5"))
    >>> p.answer, len(p.steps)
    ('5', 2)
    """

    id: str
    question: str
    answer: str
    steps: tuple[str, ...] | None = None

    @property
    def solution(self) -> str | None:
        """The reference solution as one text, steps joined by newlines."""
        return None if self.steps is None else "\n".join(self.steps)
