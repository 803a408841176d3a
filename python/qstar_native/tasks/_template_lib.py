"""Runtime of the GSM-Symbolic template language: draw functions, helpers, number display.

Private to :mod:`qstar_native.tasks.gsm_symbolic`. All numbers are exact (``int`` or
``Fraction``); see ``data/gsm_symbolic/README.md`` for what each function means.

Display rules (:func:`format_value`), chosen so that a rendered ``<<expr=value>>`` annotation
evaluates back to its value:

- a whole number prints as an integer (``7``, never ``7.0``);
- a number taken verbatim from the replacement lists keeps its text (``1/3``, ``0.25``);
- ``Fraction(x)`` in a template prints as ``a/b``;
- any other terminating decimal prints exactly (``3.5``, ``0.125``);
- a repeating decimal prints as Python prints the nearest float (``0.6666666666666666``), as the
  original floating-point GSM-Symbolic does; annotation checks accept this rounding (see
  :mod:`qstar_native.tasks.annotations`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from fractions import Fraction

from .safe_eval import DEFAULT_FUNCTIONS, SafeEvalError

__all__ = ["DRAW_FUNCTIONS", "HELPER_FUNCTIONS", "Reject", "format_value", "literal_value"]


class Reject(Exception):
    """This draw breaks a constraint (``ensure_int`` of a non-whole number): draw again."""


class _Literal(Fraction):
    """A number read from a replacement string such as '1/3'; displays as that string."""

    text: str

    def __new__(cls, text: str) -> _Literal:
        self = super().__new__(cls, text)
        self.text = text
        return self


class _ShownAsFraction(Fraction):
    """The result of ``Fraction(x)`` in a template: displays as ``a/b``."""


def literal_value(item: object) -> object:
    """Turn numeric replacement strings ('1/4', '0.25') into numbers, recursing into lists."""
    if isinstance(item, list):
        return [literal_value(i) for i in item]
    if isinstance(item, str):
        try:
            return _Literal(item)
        except ValueError:
            return item
    return item


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def format_value(v: object) -> str:
    """The text a template placeholder renders to (module docstring: display rules).

    >>> format_value(Fraction(7, 2)), format_value(Fraction(8, 2)), format_value(Fraction(2, 3))
    ('3.5', '4', '0.6666666666666666')
    """
    if isinstance(v, _Literal):
        return v.text
    if type(v) is bool or not isinstance(v, (int, Fraction)):
        return str(v)
    if v.denominator == 1:
        return str(v.numerator)
    if isinstance(v, _ShownAsFraction):
        return f"{v.numerator}/{v.denominator}"
    if _terminates(v):
        places = 0
        while 10**places % v.denominator:
            places += 1
        digits = str(abs(v.numerator) * (10**places // v.denominator)).rjust(places + 1, "0")
        return f"{'-' if v < 0 else ''}{digits[:-places]}.{digits[-places:]}"
    return repr(float(v))


# ---------------------------------------------------------------------- draw functions
# Each takes the draw's Random first. They may only be the whole right-hand side of an #init line.


def _int_arg(x: object, fn: str) -> int:
    if type(x) is int:
        return x
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    raise SafeEvalError(f"{fn}() needs whole-number arguments, got {x!r}")


def _range(rng: random.Random, a: object, b: object, step: object = 1) -> int:
    return rng.randrange(_int_arg(a, "range"), _int_arg(b, "range"), _int_arg(step, "range"))


def _arange(rng: random.Random, a: object, b: object, step: object) -> int | Fraction:
    start, stop, step_ = Fraction(a), Fraction(b), Fraction(step)  # exact decimal grid
    count = -((start - stop) // step_)  # ceil((stop - start) / step)
    if count <= 0:
        raise SafeEvalError(f"arange({a}, {b}, {step}) is empty")
    v = start + rng.randrange(int(count)) * step_
    return int(v) if v.denominator == 1 else v


def _sample(rng: random.Random, items: Sequence[object], k: object = None) -> object:
    if k is None:
        return rng.choice(items)
    return rng.sample(list(items), _int_arg(k, "sample"))


def _sample_sequential(rng: random.Random, items: Sequence[object], k: object) -> list[object]:
    k = _int_arg(k, "sample_sequential")
    start = rng.randrange(len(items) - k + 1)  # no wrap-around
    return list(items[start : start + k])


def _range_str(
    rng: random.Random, a: object, b: object, step: object, words: Sequence[str]
) -> tuple[str, int]:
    v = _range(rng, a, b, step)
    return (words[v - 1], v)  # words[0] is "one"


DRAW_FUNCTIONS: dict[str, Callable[..., object]] = {
    "arange": _arange,
    "range": _range,
    "range_str": _range_str,
    "sample": _sample,
    "sample_sequential": _sample_sequential,
}


# ----------------------------------------------------------------------- helper functions


def _is_int(x: object) -> bool:
    return type(x) is int or (isinstance(x, Fraction) and x.denominator == 1)


def _ensure_int(x: object) -> int:
    if not _is_int(x):
        raise Reject(f"ensure_int({x})")
    return int(x)  # type: ignore[call-overload]


def _divides(a: object, b: object) -> bool:
    return b != 0 and a % b == 0  # type: ignore[operator]


def _fraction(x: object) -> Fraction:
    return _ShownAsFraction(x)  # type: ignore[arg-type]


def _range_list(a: object, b: object, step: object = 1) -> list[int]:
    return list(range(_int_arg(a, "range_list"), _int_arg(b, "range_list"), _int_arg(step, "range_list")))


HELPER_FUNCTIONS: dict[str, Callable[..., object]] = {
    **DEFAULT_FUNCTIONS,
    "Fraction": _fraction,
    "divides": _divides,
    "ensure_int": _ensure_int,
    "float": lambda x: x,  # exactness kept; display rules decide how it prints
    "is_int": _is_int,
    "range_list": _range_list,
}
