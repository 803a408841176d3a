"""The safe evaluator: exact arithmetic, a strict whitelist, resource limits."""

from __future__ import annotations

import operator
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qstar_native.tasks.safe_eval import MAX_SOURCE_LENGTH, SafeEvalError, compile_expr, safe_eval


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0.29 * 100", 29),  # exact decimal literal: a float would give 28.999...
        ("7 / 2", Fraction(7, 2)),
        ("8 / 2", 4),
        ("1/3 + 1/6", Fraction(1, 2)),
        ("2 ** -2", Fraction(1, 4)),
        ("(-2) ** 3", -8),
        ("-7 // 2", -4),
        ("-7 % 3", 2),
        ("7.5 // 2", 3),
        ("1e3 + 0.5e1", 1005),
        ("0.1234567890123456789", Fraction("0.1234567890123456789")),  # more digits than a float
        ("1_000 * 2", 2000),
        ("3 < 4 <= 4 < 5", True),
        ("3 < 4 > 5", False),
        ("1 == 1 and not 2 == 3", True),
        ("0 or 5", True),
        ("'up' if 2 > 1 else 'down'", "up"),
        ("round(5/2)", 2),  # Python's rule: halves to even
        ("round(2.675, 2)", Fraction("2.68")),  # exact: a float would give 2.67
        ("int(-3.5)", -3),
        ("abs(-1/2) + max(1, 2, 3) - min(4, 5)", Fraction(-1, 2)),
        ("(1, 'a')", (1, "a")),
        ("[1, 2]", [1, 2]),
    ],
)
def test_exact_values(expr: str, expected: object) -> None:
    got = safe_eval(expr)
    assert got == expected
    assert type(got) is type(expected)  # whole results are int, never Fraction(4, 1)


def test_names_and_custom_functions() -> None:
    names = {"x": 6, "half": Fraction(1, 2)}
    assert safe_eval("x * half + 1", names) == 4
    assert safe_eval("double(x)", names, functions={"double": lambda v: 2 * v}) == 12
    f = compile_expr("a - b")
    assert [f({"a": 5, "b": 3}), f({"a": 1, "b": 3})] == [2, -2]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("().__class__", "attribute access"),
        ("(1).real", "attribute access"),
        ("__import__('os')", "__import__"),
        ("__builtins__", "names starting with '__'"),
        ("open('/etc/passwd')", "calling 'open'"),
        ("exec('1')", "calling 'exec'"),
        ("(lambda: 1)()", "calling anything but a whitelisted function name"),
        ("lambda: 1", "lambda"),
        ("[x for x in (1, 2)]", "comprehensions"),
        ("max(x for x in (1, 2))", "comprehensions"),
        ("{1: 2}", "dict literals"),
        ("{1, 2}", "set literals"),
        ("f'{1}'", "f-strings"),
        ("(y := 2)", "assignment expressions"),
        ("(1, 2)[0]", "subscripts"),
        ("max(*[1, 2])", "star arguments"),
        ("round(5, ndigits=1)", "keyword arguments"),
        ("1 << 10", "LShift"),
        ("1 is 1", "comparison Is"),
        ("1j", "complex literals"),
        ("b'x'", "bytes literals"),
        ("round", "without calling it"),
        ("2 ** 100001", "exponent 100001 is too large"),
        ("9 ** 9 ** 9", "too large"),
        ("12345 ** 9000", "would be too large"),
        ("2 ** 0.5", "only whole exponents"),
        ("10 ** 9000 * 10 ** 9000 * 10 ** 9000 * 10 ** 9000", r"result of '\*' is too large"),
        ("'ab' * 1000000", "needs numbers, got str"),
        ("1e999", "number literal this large"),
        ("x + 1", "unknown name 'x'"),
        ("1 +", "not a valid expression"),
        ("'a' < 1", "cannot compare"),
        ("1" + "+1" * MAX_SOURCE_LENGTH, "MAX_SOURCE_LENGTH"),
        ("(" * 300 + "1" + ")" * 300, "too deeply|cannot parse|not a valid"),
    ],
)
def test_rejects_with_clear_error(expr: str, message: str) -> None:
    with pytest.raises(SafeEvalError, match=message):
        safe_eval(expr)


def test_errors_are_value_errors_and_division_by_zero_is_standard() -> None:
    assert issubclass(SafeEvalError, ValueError)
    with pytest.raises(ZeroDivisionError):
        safe_eval("1 / (2 - 2)")
    with pytest.raises(ZeroDivisionError):
        safe_eval("0 ** -1")
    with pytest.raises(SafeEvalError, match="floats are inexact"):
        safe_eval("x * 2", {"x": 0.5})
    with pytest.raises(TypeError, match="expr must be a str"):
        safe_eval(12)  # type: ignore[arg-type]


def test_tiny_bases_allow_any_exponent() -> None:
    assert safe_eval("1 ** 10 ** 9") == 1
    assert safe_eval("(-1) ** (10 ** 9 + 1)") == -1


# ------------------------------------------------------------------ property: matches Python


def _decimal_text(n: int, places: int) -> str:
    digits = str(n).rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}"


_LEAVES = st.one_of(
    st.integers(-1000, 1000).map(lambda n: (f"({n})", Fraction(n))),
    st.tuples(st.integers(-99, 99), st.integers(1, 99)).map(lambda t: (f"({t[0]}/{t[1]})", Fraction(*t))),
    st.tuples(st.integers(0, 10**6), st.integers(1, 5)).map(
        lambda t: (_decimal_text(*t), Fraction(t[0], 10 ** t[1]))
    ),
)
_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
           "//": operator.floordiv, "%": operator.mod}  # fmt: skip


def _apply(op: str, a: Fraction | None, b: Fraction | None) -> Fraction | None:
    """Python's own Fraction arithmetic; None stands for ZeroDivisionError."""
    if a is None or b is None:
        return None
    try:
        return _BINARY[op](a, b)
    except ZeroDivisionError:
        return None


def _power(base: Fraction | None, exponent: int) -> Fraction | None:
    if base is None or (base == 0 and exponent < 0):
        return None
    return base**exponent


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    binary = st.tuples(children, st.sampled_from(sorted(_BINARY)), children).map(
        lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", _apply(t[1], t[0][1], t[2][1]))
    )
    negate = children.map(lambda c: (f"(-{c[0]})", None if c[1] is None else -c[1]))
    power = st.tuples(children, st.integers(-3, 3)).map(
        lambda t: (f"({t[0][0]} ** {t[1]})", _power(t[0][1], t[1]))
    )
    return st.one_of(binary, negate, power)


@given(st.recursive(_LEAVES, _extend, max_leaves=12))
def test_agrees_with_python_fraction_arithmetic(tree: tuple[str, Fraction | None]) -> None:
    text, expected = tree
    if expected is None:
        with pytest.raises(ZeroDivisionError):
            safe_eval(text)
        return
    got = safe_eval(text)
    assert got == expected
    assert type(got) is (int if expected.denominator == 1 else Fraction)
