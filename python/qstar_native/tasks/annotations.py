"""Process reward for GSM8K-style steps: check every ``<<expr=value>>`` calculator annotation.

The rule (a step's reward, to aggregate over a trajectory with min/sum/...):

- ``0.0`` when every annotation in the step is arithmetically right, or the step has none;
- ``penalty`` (default ``-1.0``) for each wrong one, so two wrong annotations give ``-2.0``.

An annotation is *right* when ``expr`` evaluates (exactly, with
:func:`qstar_native.tasks.safe_eval`) to ``value``, within rounding: a value written with ``d``
decimals may be off by half a unit in its last place (``<<10/3=3.33>>`` is right), and any value
may be off by a relative 1e-9, which absorbs repeating decimals on the left
(``<<12*0.6666666666666667=8>>``). A whole-number value gets no other slack: ``<<7/2=3>>`` is
wrong. An annotation that does not parse (no ``=``, not arithmetic, division by zero) is wrong:
the step claims a calculation it cannot back. Thousands separators (``1,000``) are accepted.

>>> annotation_reward("He pays 3*4 = <<3*4=12>>12 dollars.")
0.0
>>> annotation_reward("So <<3*4=13>>13 and <<13+1=15>>15.")
-2.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .safe_eval import SafeEvalError, safe_eval

__all__ = ["AnnotationCheck", "annotation_reward", "check_annotations"]

_ANNOTATION = re.compile(r"<<(.*?)>>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMALS = re.compile(r"^[+-]?\d*\.(\d+)$")
_RELATIVE_SLACK = Fraction(1, 10**9)


@dataclass(frozen=True)
class AnnotationCheck:
    """The verdict on one ``<<expr=value>>`` annotation; ``reason`` says why it is wrong."""

    text: str
    correct: bool
    reason: str = ""


def _check(inner: str) -> AnnotationCheck:
    expr, found, value = inner.rpartition("=")
    if not found or not expr.strip():
        return AnnotationCheck(inner, False, "no 'expr=value' inside <<...>>")
    expr, value = _THOUSANDS.sub("", expr), _THOUSANDS.sub("", value).strip()
    try:
        got, claimed = safe_eval(expr), safe_eval(value)
    except (SafeEvalError, ZeroDivisionError) as e:
        return AnnotationCheck(inner, False, f"cannot evaluate: {e}")
    if not all(type(x) is int or isinstance(x, Fraction) for x in (got, claimed)):
        return AnnotationCheck(inner, False, "both sides must be numbers")
    slack = _RELATIVE_SLACK * max(1, abs(claimed))  # type: ignore[arg-type]
    decimals = _DECIMALS.match(value)
    if decimals:
        slack = max(slack, Fraction(1, 2 * 10 ** len(decimals[1])))
    if abs(got - claimed) <= slack:  # type: ignore[operator]
        return AnnotationCheck(inner, True)
    return AnnotationCheck(inner, False, f"{expr.strip()} is {got}, not {value}")


def check_annotations(step: str) -> list[AnnotationCheck]:
    """Check each ``<<expr=value>>`` annotation in ``step`` (module docstring: the rule).

    >>> [c.correct for c in check_annotations("<<10/3=3.33>> then <<7/2=3>>")]
    [True, False]
    """
    if not isinstance(step, str):
        raise TypeError(f"step must be a str, got {type(step).__name__}")
    return [_check(m[1]) for m in _ANNOTATION.finditer(step)]


def annotation_reward(step: str, *, penalty: float = -1.0) -> float:
    """Process reward of one step: ``penalty`` times the number of wrong annotations (0.0 if none)."""
    return penalty * sum(not c.correct for c in check_annotations(step)) + 0.0
