"""MathTask: a math task (GSM-Symbolic, GSM8K, MATH) as the :class:`~qstar_native.protocols.Task`
that labelling, the methods and evaluation use.

The outcome reward is the task's own ``is_correct`` (1.0 or 0.0); answers are canonicalised so
that majority vote counts "1,200", "1200.0" and "1200" as one answer.

Example:
    >>> from qstar_native.tasks import GsmSymbolic
    >>> task = MathTask(GsmSymbolic(template_ids=["0001"]), encode=lambda s: list(s.encode()))
    >>> p = next(task.task.problems([0]))
    >>> task.outcome(p, f"so\\n#### {p.answer}\\n"), task.outcome(p, "#### -1\\n")
    (1.0, 0.0)
    >>> task.answer("#### 1,200.0"), task.answer("no answer")
    ('1200', None)
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Callable, Protocol, Sequence

from .math_answers import extract_answer

__all__ = ["MathTask", "canonical_answer"]

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?$")


class _MathSource(Protocol):
    def prompt(self, problem: Any) -> str: ...

    def is_correct(self, problem: Any, completion: str) -> bool: ...


def canonical_answer(answer: str) -> str:
    """A plain number as its exact reduced value ("1,200.0" -> "1200", "0.5" -> "1/2"); anything
    else stripped of surrounding space and ``$``.

    >>> canonical_answer("1,200.0"), canonical_answer(" 0.50 "), canonical_answer("x^2")
    ('1200', '1/2', 'x^2')
    """
    s = answer.strip().strip("$").strip()
    plain = s.replace(",", "")
    if _NUMBER.match(plain):
        try:
            return str(Fraction(plain))
        except (ValueError, ZeroDivisionError):
            pass
    return s


class MathTask:
    """Adapts a math task (``prompt(problem)`` and ``is_correct(problem, completion)``, e.g.
    :class:`~qstar_native.tasks.GsmSymbolic`) to the Task protocol.

    Args:
        task: the math task.
        encode: the policy tokenizer's ``text -> token ids`` (e.g. ``tokenizer.encode`` or a chat
            template applied around the prompt).
    """

    def __init__(self, task: _MathSource, encode: Callable[[str], Sequence[int]]) -> None:
        if not callable(getattr(task, "is_correct", None)) or not callable(getattr(task, "prompt", None)):
            raise TypeError(f"task must have prompt(problem) and is_correct(problem, completion); got {type(task).__name__}")
        if not callable(encode):
            raise TypeError("encode must be callable: text -> token ids (e.g. tokenizer.encode)")
        self.task, self.encode = task, encode

    def problem_id(self, problem: Any) -> str:
        return str(problem.id)

    def prompt(self, problem: Any) -> str:
        """The root state's text."""
        return self.task.prompt(problem)

    def root(self, problem: Any) -> Sequence[int]:
        return list(self.encode(self.prompt(problem)))

    def outcome(self, problem: Any, completion: str) -> float:
        return 1.0 if self.task.is_correct(problem, completion) else 0.0

    def answer(self, completion: str) -> str | None:
        found = extract_answer(completion)
        return None if found is None else canonical_answer(found)
