"""A decode-time calculator for GSM8K's ``<<expr=value>>`` annotations.

GSM8K solutions carry calculator annotations, and the models trained on them ran a calculator at
decode time (Cobbe et al. 2021): when the model has written ``<<expr=``, the calculator takes
over, writes the exact value and ``>>``, and the model continues from there. This does the same
inside the policy's decode loop: the value's tokens are fed like sampled ones, so they are
computed once, share the KV cache, and the hidden state at a step's last token belongs to the
step as written (a Q-value head can read it). Arithmetic errors disappear; errors of reasoning
(wrong operands, wrong operation) remain, and those are what search has to fix. It is a setting
to report beside the plain policy, not a replacement.

Example:
    >>> calc = Calculator(encode=lambda text: [ord(c) for c in text])
    >>> bytes(calc.force("So 3*4 = <<3*4=")).decode()
    '12>>'
    >>> calc.force("So 3*4 = <<3*4"), calc.force("<<2/0=")
    (None, None)
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from ..tasks.safe_eval import SafeEvalError, safe_eval

__all__ = ["Calculator", "format_number"]

_OPEN_EXPR = re.compile(r"<<([^<>=]*)=$")


def format_number(x: Fraction | int) -> str:
    """An integer as is; else 2 decimals, more when 2 would be off by over 0.5%, never fewer than
    one (the annotation check reads the written decimals as the precision claimed).

    >>> format_number(Fraction(7, 2)), format_number(Fraction(1, 3)), format_number(Fraction(1, 3000))
    ('3.5', '0.333', '0.000333')
    """
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    v = float(x)
    for d in range(2, 9):
        s = f"{v:.{d}f}"
        if abs(float(s) - v) <= 0.005 * abs(v):
            break
    s = s.rstrip("0")
    return s + "0" if s.endswith(".") else s


class Calculator:
    """Writes ``value>>`` right after a generated ``<<expr=`` (see the module docstring).

    Args:
        encode: the tokenizer's text -> ids (no special tokens), for the value's tokens.
    """

    def __init__(self, encode: Callable[[str], Sequence[int]]) -> None:
        if not callable(encode):
            raise TypeError("encode must be callable: text -> token ids (e.g. the tokenizer's)")
        self.encode = encode

    def force(self, step_text: str) -> list[int] | None:
        """The tokens of ``value>>`` when ``step_text`` ends inside an annotation right after its
        ``=`` and the expression evaluates; else None (the model goes on by itself)."""
        m = _OPEN_EXPR.search(step_text)
        if m is None:
            return None
        try:
            value = safe_eval(m[1].replace(",", ""))
        except (SafeEvalError, ZeroDivisionError, ValueError, TypeError, OverflowError):
            return None
        if not isinstance(value, (int, Fraction)):
            return None
        return list(self.encode(format_number(value) + ">>"))

    @staticmethod
    def ends_eq(texts: Sequence[str]) -> np.ndarray:
        """Per vocabulary token: its text ends with ``=``, the only moment a step can end inside
        ``<<expr=`` (the decoder checks the step's text then, and only then)."""
        return np.fromiter((t.endswith("=") for t in texts), np.bool_, len(texts))
