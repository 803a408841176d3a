"""Process reward for GSM8K-style steps: are the operands of each ``<<expr=value>>`` grounded?

The annotation check (:mod:`.annotations`) catches wrong arithmetic but not a right calculation
on wrong numbers, the commonest error of a small model: it copies "60%" where the question says
"85%". This rule gives ``penalty`` (default ``-1.0``) per operand of an annotation's expression
that is neither a number of the context (the question and the steps so far, results included)
(or a hundredth of one: "25%" used as 0.25; number words count: "a dozen" states 12) nor a
common constant (:data:`CONSTANTS`).

Like the annotation check it is a rule a step can be scored by without knowing the answer (the
paper counts rules among process-reward sources); it does not compute or fill in anything.

>>> grounding_reward("Ann has 85 apples and eats 40% of them.", "She eats 85*40/100 = <<85*40/100=34>>34")
0.0
>>> grounding_reward("Ann has 85 apples and eats 40% of them.", "She eats 85*75/100 = <<85*75/100=63.75>>63.75")
-1.0
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["CONSTANTS", "grounding_reward", "numbers", "ungrounded_operands"]

CONSTANTS = frozenset(
    [Fraction(n) for n in (0, 1, 2, 7, 12, 24, 30, 52, 60, 100, 365, 1000)]
    + [Fraction(p, q) for q in range(2, 13) for p in range(1, q)] + [Fraction(1, 100)]
)
"""Numbers any step may use without the context stating them: 0, 1, 2, unit factors (days a
week, months or inches, hours, days a month, weeks, minutes, percent, days a year, thousand),
proper fractions p/q with q <= 12, and 1/100."""

_WORDS = {
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100, "thrice": 3, "triple": 3, "tripled": 3, "third": 3, "thirds": 3, "quarter": 4,
    "quarters": 4, "quadruple": 4, "fourth": 4, "fifth": 5, "fifths": 5, "sixth": 6, "tenth": 10, "dozen": 12,
    "dozens": 12, "half": 2, "twice": 2, "double": 2,
}  # fmt: skip
_WORD = re.compile(r"[a-z]+")

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?|(?<![\w.])\.\d+")
_ANNOTATION = re.compile(r"<<(.*?)>>")


def numbers(text: str) -> set[Fraction]:
    """Every number written in ``text`` (thousands separators allowed), exactly.

    >>> sorted(numbers("1,200 apples, 0.5 kg and 3.25 m; x2"))
    [Fraction(1, 2), Fraction(13, 4), Fraction(1200, 1)]
    """
    out = set()
    for m in _NUMBER.finditer(text):
        s = m[0].replace(",", "").rstrip(".")
        if s:
            out.add(Fraction(s))
    return out


def ungrounded_operands(context: str, step: str) -> list[Fraction]:
    """The operands of ``step``'s annotation expressions found neither in ``context`` nor in
    :data:`CONSTANTS`; a number computed by an earlier annotation of the same step counts as
    context for the later ones."""
    stated = numbers(context) | {Fraction(_WORDS[w]) for w in _WORD.findall(context.lower()) if w in _WORDS}
    known = stated | {x / 100 for x in stated} | CONSTANTS  # "25%" may be used as 0.25
    missing = []
    for m in _ANNOTATION.finditer(step):
        expr, _, value = m[1].rpartition("=")
        missing += [x for x in sorted(numbers(expr)) if x not in known]
        known |= numbers(value)
    return missing


def grounding_reward(context: str, step: str, *, penalty: float = -1.0) -> float:
    """Process reward of ``step`` given its ``context`` (question + steps so far): ``penalty``
    per ungrounded operand (see the module docstring), 0.0 when all are grounded."""
    return penalty * len(ungrounded_operands(context, step)) + 0.0
