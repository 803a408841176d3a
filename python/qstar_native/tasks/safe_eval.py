"""A small, safe evaluator for arithmetic expressions: an AST whitelist, never ``eval``.

Used for GSM8K ``<<expr=value>>`` calculator annotations and for GSM-Symbolic template
expressions. Arithmetic is exact: integers stay ``int``, decimal literals such as ``0.29`` become
``Fraction(29, 100)`` (read from the source text, so no binary rounding), ``/`` gives a
``Fraction`` unless the quotient is whole, and every numeric result that is whole is returned as
``int``. With floats, ``0.29 * 100`` is ``28.999...`` and breaks ``int()`` and "is whole" tests.

Allowed: int/decimal/string/bool literals, names given by the caller, ``+ - * / // % **``,
unary ``+ - not``, comparisons (chained too), ``and``/``or``, ``x if c else y``, tuple and list
literals, and calls of the functions the caller whitelists by name (positional arguments only).
Everything else (attribute access, subscripts, lambdas, comprehensions, f-strings, ``**kw``,
walrus, names starting with ``__``) raises :class:`SafeEvalError` when the expression is compiled.

Resource limits (to keep a hostile expression from burning CPU or memory): the source length,
the exponent of ``**`` and the bit size of products, quotients and powers are bounded.

>>> safe_eval("0.29 * 100")
29
>>> safe_eval("7 / 2")
Fraction(7, 2)
>>> safe_eval("x * (y - 1) // 2", {"x": 5, "y": 4})
7
>>> safe_eval("().__class__")
Traceback (most recent call last):
...
qstar_native.tasks.safe_eval.SafeEvalError: attribute access ('.__class__') is not allowed in '().__class__'
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from fractions import Fraction

__all__ = [
    "DEFAULT_FUNCTIONS",
    "MAX_BITS",
    "MAX_EXPONENT",
    "MAX_SOURCE_LENGTH",
    "Compiled",
    "SafeEvalError",
    "compile_expr",
    "safe_eval",
]

Number = int | Fraction
Compiled = Callable[[Mapping[str, object]], object]

MAX_SOURCE_LENGTH = 10_000  # characters
MAX_EXPONENT = 10_000  # |b| in a ** b
MAX_BITS = 100_000  # bits of any integer, numerator or denominator made by * / // % **


class SafeEvalError(ValueError):
    """An expression uses something outside the whitelist or exceeds a resource limit."""


# ----------------------------------------------------------------------------- arithmetic


def _number(x: object, op: str) -> Number:
    if type(x) is int or isinstance(x, Fraction):
        return x  # type: ignore[return-value]
    if type(x) is bool:
        return int(x)
    hint = " (pass int or fractions.Fraction: floats are inexact)" if type(x) is float else ""
    raise SafeEvalError(f"operator {op!r} needs numbers, got {type(x).__name__} {x!r}{hint}")


def _normal(x: Number) -> Number:
    """Whole fractions become ints, so ``range()``, ``%`` and display see plain integers."""
    if type(x) is not int and x.denominator == 1:
        return int(x.numerator)
    return x


def _check_size(x: Number, op: str) -> Number:
    if type(x) is int:
        bits = x.bit_length()
    else:
        bits = max(x.numerator.bit_length(), x.denominator.bit_length())
    if bits > MAX_BITS:
        raise SafeEvalError(f"result of {op!r} is too large ({bits} bits > MAX_BITS={MAX_BITS})")
    return x


def _arith(op: str, fn: Callable[[Number, Number], Number], checked: bool) -> Callable:
    def apply(a: object, b: object) -> Number:
        if type(a) is int and type(b) is int:  # fast path: most template arithmetic
            r = fn(a, b)
        else:
            r = _normal(fn(_number(a, op), _number(b, op)))
        return _check_size(r, op) if checked else r

    return apply


def _div(a: object, b: object) -> Number:
    a, b = _number(a, "/"), _number(b, "/")
    if type(a) is int and type(b) is int:
        if b == 0:
            raise ZeroDivisionError("division by zero")
        q, r = divmod(a, b)
        return q if r == 0 else _check_size(Fraction(a, b), "/")
    return _check_size(_normal(Fraction(a) / b), "/")


def _pow(a: object, b: object) -> Number:
    a, b = _number(a, "**"), _number(b, "**")
    if type(b) is not int:
        raise SafeEvalError(f"only whole exponents are allowed (the result must be rational), got {b}")
    if a in (0, 1, -1):  # tiny results whatever the exponent
        if a == 0 and b < 0:
            raise ZeroDivisionError("0 cannot be raised to a negative power")
        return int(a) ** abs(b)
    if abs(b) > MAX_EXPONENT:
        raise SafeEvalError(f"exponent {b} is too large (|exponent| <= MAX_EXPONENT={MAX_EXPONENT})")
    base = Fraction(a)
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(b)
    if bits > MAX_BITS:
        raise SafeEvalError(f"result of '**' would be too large (~{bits} bits > MAX_BITS={MAX_BITS})")
    return _normal(base**b)


_BINOPS: dict[type, Callable[[object, object], object]] = {
    ast.Add: _arith("+", operator.add, checked=False),
    ast.Sub: _arith("-", operator.sub, checked=False),
    ast.Mult: _arith("*", operator.mul, checked=True),
    ast.FloorDiv: _arith("//", operator.floordiv, checked=True),
    ast.Mod: _arith("%", operator.mod, checked=True),
    ast.Div: _div,
    ast.Pow: _pow,
}

_CMPOPS: dict[type, Callable[[object, object], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


# ------------------------------------------------------------------------ default functions


def _int(x: object) -> int:
    return int(_number(x, "int()"))


def _round(x: object, ndigits: object = None) -> Number:
    x = _number(x, "round()")
    if ndigits is None:
        return round(x)  # Python's rule: halves go to the even neighbour
    if type(ndigits) is not int or abs(ndigits) > 100:
        raise SafeEvalError(f"round(x, ndigits) needs an int ndigits in [-100, 100], got {ndigits!r}")
    return _normal(round(Fraction(x), ndigits))


def _abs(x: object) -> Number:
    return abs(_number(x, "abs()"))


def _min(*xs: object) -> Number:
    return min(_number(x, "min()") for x in xs)


def _max(*xs: object) -> Number:
    return max(_number(x, "max()") for x in xs)


DEFAULT_FUNCTIONS: Mapping[str, Callable[..., object]] = {
    "abs": _abs,
    "int": _int,
    "max": _max,
    "min": _min,
    "round": _round,
}


# -------------------------------------------------------------------------------- compiler

_REFUSED = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts ('x[i]')",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions (':=')",
    ast.Starred: "star arguments",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
}


class _Compiler:
    def __init__(self, source: str, functions: Mapping[str, Callable[..., object]]) -> None:
        self.source = source
        self.functions = functions

    def fail(self, node: ast.AST, what: str) -> SafeEvalError:
        snippet = ast.get_source_segment(self.source, node) or type(node).__name__
        return SafeEvalError(f"{what} ({snippet!r}) is not allowed in {self.source!r}")

    def compile(self, node: ast.AST) -> Compiled:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            if isinstance(node, ast.Attribute):
                raise SafeEvalError(f"attribute access ('.{node.attr}') is not allowed in {self.source!r}")
            raise self.fail(node, _REFUSED.get(type(node), f"{type(node).__name__} syntax"))
        return method(node)

    def _Constant(self, node: ast.Constant) -> Compiled:
        v = node.value
        if type(v) is float:
            if not math.isfinite(v):
                raise self.fail(node, "a number literal this large")
            text = (ast.get_source_segment(self.source, node) or repr(v)).replace("_", "")
            try:
                v = _normal(Fraction(text))  # exact decimal value of the literal as written
            except ValueError:
                v = _normal(Fraction(repr(v)))
        elif type(v) not in (int, str, bool):
            raise self.fail(node, f"{type(v).__name__} literals")
        return lambda env: v

    def _Name(self, node: ast.Name) -> Compiled:
        name = node.id
        if name.startswith("__"):
            raise self.fail(node, "names starting with '__'")
        if name in self.functions:
            raise self.fail(node, f"using function {name!r} without calling it")

        def lookup(env: Mapping[str, object]) -> object:
            try:
                return env[name]
            except KeyError:
                raise SafeEvalError(f"unknown name {name!r} in {self.source!r}") from None

        return lookup

    def _BinOp(self, node: ast.BinOp) -> Compiled:
        fn = _BINOPS.get(type(node.op))
        if fn is None:
            raise self.fail(node, f"operator {type(node.op).__name__}")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda env: fn(left(env), right(env))

    def _UnaryOp(self, node: ast.UnaryOp) -> Compiled:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub):
            return lambda env: -_number(operand(env), "-")
        if isinstance(node.op, ast.UAdd):
            return lambda env: +_number(operand(env), "+")
        raise self.fail(node, f"operator {type(node.op).__name__}")

    def _Compare(self, node: ast.Compare) -> Compiled:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(node, f"comparison {type(op).__name__}")
            ops.append(fn)
        first = self.compile(node.left)
        rest = [self.compile(c) for c in node.comparators]
        source = self.source

        def compare(env: Mapping[str, object]) -> bool:
            a = first(env)
            for fn, nxt in zip(ops, rest):
                b = nxt(env)
                try:
                    if not fn(a, b):
                        return False
                except TypeError as e:
                    raise SafeEvalError(f"cannot compare {a!r} and {b!r} in {source!r}: {e}") from None
                a = b
            return True

        return compare

    def _BoolOp(self, node: ast.BoolOp) -> Compiled:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda env: all(p(env) for p in parts)
        return lambda env: any(p(env) for p in parts)

    def _IfExp(self, node: ast.IfExp) -> Compiled:
        test, body, orelse = self.compile(node.test), self.compile(node.body), self.compile(node.orelse)
        return lambda env: body(env) if test(env) else orelse(env)

    def _Tuple(self, node: ast.Tuple) -> Compiled:
        items = [self.compile(e) for e in node.elts]
        return lambda env: tuple(i(env) for i in items)

    def _List(self, node: ast.List) -> Compiled:
        items = [self.compile(e) for e in node.elts]
        return lambda env: [i(env) for i in items]

    def _Call(self, node: ast.Call) -> Compiled:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, "calling anything but a whitelisted function name")
        name = node.func.id
        fn = self.functions.get(name)
        if fn is None or name.startswith("__"):
            allowed = ", ".join(sorted(self.functions)) or "none"
            raise self.fail(node, f"calling {name!r} (allowed functions: {allowed})")
        if node.keywords:
            raise self.fail(node, "keyword arguments")
        args = [self.compile(a) for a in node.args]
        return lambda env: fn(*[a(env) for a in args])


def compile_expr(
    expr: str, *, functions: Mapping[str, Callable[..., object]] | None = None
) -> Compiled:
    """Check ``expr`` against the whitelist once and return a fast ``f(names) -> value``.

    ``functions`` maps the callable names the expression may call (default:
    :data:`DEFAULT_FUNCTIONS`: ``abs int max min round``). Compile once, evaluate many times.

    >>> f = compile_expr("a * b + 1")
    >>> f({"a": 2, "b": Fraction(1, 4)}), f({"a": 3, "b": 4})
    (Fraction(3, 2), 13)
    """
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a str, got {type(expr).__name__}")
    if len(expr) > MAX_SOURCE_LENGTH:
        raise SafeEvalError(
            f"expression is {len(expr)} characters long; the limit is MAX_SOURCE_LENGTH={MAX_SOURCE_LENGTH}"
        )
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise SafeEvalError(f"not a valid expression: {expr!r} ({e.msg})") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise SafeEvalError(f"cannot parse expression {expr[:80]!r}: {e}") from None
    compiler = _Compiler(expr.strip(), DEFAULT_FUNCTIONS if functions is None else functions)
    try:
        return compiler.compile(tree.body)
    except RecursionError:
        raise SafeEvalError(f"expression is nested too deeply: {expr[:80]!r}") from None


def safe_eval(
    expr: str,
    names: Mapping[str, object] | None = None,
    *,
    functions: Mapping[str, Callable[..., object]] | None = None,
) -> object:
    """Evaluate ``expr`` exactly with the given variable ``names`` (see module docstring).

    Raises :class:`SafeEvalError` for anything outside the whitelist and ``ZeroDivisionError``
    for a division by zero.

    >>> safe_eval("1/3 + 1/6")
    Fraction(1, 2)
    >>> safe_eval("2 ** 0.5")
    Traceback (most recent call last):
    ...
    qstar_native.tasks.safe_eval.SafeEvalError: only whole exponents are allowed (the result must be rational), got 1/2
    """
    compiled = compile_expr(expr, functions=functions)
    try:
        return compiled({} if names is None else names)
    except RecursionError:
        raise SafeEvalError(f"expression is nested too deeply: {expr[:80]!r}") from None
