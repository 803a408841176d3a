"""ProblemSet: a fixed list of math problems (a GSM8K or MATH file) as a task.

Example:
    >>> from qstar_native.tasks import Problem
    >>> ps = ProblemSet([Problem("p1", "What is 2 + 3?", "5")])
    >>> ps.prompt(ps.problems[0]), ps.is_correct(ps.problems[0], "2 + 3 = 5\\n#### 5")
    ('What is 2 + 3?\\n', True)
"""

from __future__ import annotations

from typing import Sequence

from .annotations import annotation_reward
from .math_answers import extract_answer, is_equivalent
from .problem import Problem

__all__ = ["ProblemSet"]


class ProblemSet:
    """Problems with a prompt template (``"{question}"`` is replaced by the question) and the
    same outcome and process rewards as :class:`~qstar_native.tasks.GsmSymbolic`."""

    def __init__(self, problems: Sequence[Problem], prompt_template: str = "{question}\n") -> None:
        if "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{question}}', got {prompt_template!r}")
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            raise ValueError("ProblemSet needs at least one problem; is the data file empty?")
        ids = [p.id for p in self.problems]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"problem id {dup!r} occurs more than once; ids must be unique")
        self.prompt_template = prompt_template

    def prompt(self, problem: Problem) -> str:
        return self.prompt_template.replace("{question}", problem.question)

    def is_correct(self, problem: Problem, completion: str) -> bool:
        predicted = extract_answer(completion)
        return predicted is not None and is_equivalent(predicted, problem.answer)

    def step_reward(self, step: str) -> float:
        return annotation_reward(step)
