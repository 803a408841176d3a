"""Calculator: a StepPolicy wrapper that writes the exact result into every ``<<expr=value>>``.

GSM8K solutions carry calculator annotations; the original GSM8K models ran a calculator at
decode time. This wrapper does it per step: in each proposed step, ``value`` (and the same number
written right after ``>>``) is replaced by the exact value of ``expr``, and the step re-encoded.
Errors of arithmetic disappear; errors of reasoning (wrong operands, wrong operation) remain, and
those are what search then has to fix. It is a setting to report beside the plain policy, not a
replacement: it hides the arithmetic errors search would otherwise have to catch.

Example:
    >>> fill_results("So 3*4 = <<3*4=13>>13 boxes and <<13+1=15>>15.")
    'So 3*4 = <<3*4=12>>12 boxes and <<12+1=13>>13.'
"""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from typing import Any, Callable, Sequence

from ..protocols import Step
from ..tasks.safe_eval import SafeEvalError, safe_eval
from ..types import TokenArray
from .step_policy import PolicyWrapper

__all__ = ["Calculator", "fill_results"]

_ANNOT = re.compile(r"<<([^<>]*?)=([^<>=]*)>>(\d[\d,]*(?:\.\d+)?)?")


def _format(x: Fraction | int) -> str:
    """An integer as is; else 2 decimals, more when 2 would be off by over 0.5%, never fewer than
    one (the annotation check reads the written decimals as the precision claimed)."""
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


def fill_results(text: str) -> str:
    """``text`` with each annotation's value, and the number written right after it, set to the
    exact value of its expression, left to right; a corrected value also replaces the old one in
    the rest of the step, so ``<<3*4=13>>13 ... <<13+1=14>>`` becomes ``... <<12+1=13>>``.
    Expressions that do not evaluate are left as written."""
    done, rest = "", text
    while (m := _ANNOT.search(rest)) is not None:
        expr, old, after = m[1], m[2].strip(), m[3]
        try:
            got = safe_eval(expr.replace(",", ""))
        except (SafeEvalError, ZeroDivisionError, ValueError, TypeError):
            got = None
        if not isinstance(got, (int, Fraction)):
            done, rest = done + rest[: m.end()], rest[m.end() :]
            continue
        new = _format(got)
        if after is not None and after.replace(",", "") == old.replace(",", ""):
            after = new
        done += rest[: m.start()] + f"<<{expr}={new}>>" + (after or "")
        rest = rest[m.end() :]
        if old and old != new:
            rest = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, rest)
    return done + rest


class Calculator(PolicyWrapper):
    """Wraps a StepPolicy: proposed steps get exact ``<<expr=value>>`` results (:func:`fill_results`).

    Args:
        policy: the StepPolicy (e.g. an :class:`HFStepPolicy`).
        encode: the tokenizer's ``text -> ids`` (no special tokens), to re-encode changed steps.
        eos_token_id: appended to a changed step that ended with it.
    """

    def __init__(self, policy: Any, encode: Callable[[str], Sequence[int]], eos_token_id: int | None) -> None:
        self.policy, self.encode, self.eos = policy, encode, eos_token_id

    def propose(self, states: Sequence[TokenArray], k: Any, *, temperature: float, seed: int) -> list[list[Any]]:
        out = []
        for steps in self.policy.propose(states, k, temperature=temperature, seed=seed):
            merged: dict[str, Any] = {}
            for s in steps:
                text = fill_results(s.text)
                if text != s.text:
                    ids = list(self.encode(text))
                    if self.eos is not None and len(s.tokens) and int(s.tokens[-1]) == self.eos:
                        ids.append(self.eos)
                    s = Step(ids, text, s.logprob, bool(s.terminal), int(getattr(s, "count", 1)))
                if text in merged:  # two samples that differed only in wrong results
                    merged[text] = replace(merged[text], count=merged[text].count + s.count)
                else:
                    merged[text] = s
            out.append(list(merged.values()))
        return out
