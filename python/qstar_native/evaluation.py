"""Evaluation: run one method over a problem set, summarise, compare two methods.

``evaluate(task, method, policy, problems, seed=...)`` runs ``method`` (a baseline or Q*, see
:mod:`qstar_native.baselines`) on each problem with a per-problem seed derived from ``seed`` and
the problem id, so the same seed gives the same records (wall times aside), in any problem order.

The aggregate table: accuracy with a Wilson 95% interval, mean generated tokens, mean tokens
forwarded and mean wall seconds per problem. :func:`compare` pairs two reports by problem:
McNemar's exact test and a bootstrap interval (fixed seed) of the accuracy difference.

Example:
    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._progress import progress_bar
from .baselines.record import ProblemRecord
from .protocols import StepPolicy, Task

__all__ = ["Comparison", "EvalReport", "Summary", "compare", "evaluate", "format_table", "problem_seed", "wilson_interval"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (default 95%); (0, 1) when ``n == 0``.

    >>> round(wilson_interval(0, 10)[1], 6)  # z^2 / (n + z^2)
    0.277533
    """
    if n < 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if correct == 0 else max(0.0, center - half)  # exact ends: no rounding to 0.99999...
    hi = 1.0 if correct == n else min(1.0, center + half)
    return (lo, hi)


def problem_seed(seed: int, question_id: str) -> int:
    """A 31-bit seed for one problem, from the run seed and the problem id (stable across runs).

    >>> problem_seed(0, "q1") == problem_seed(0, "q1") != problem_seed(1, "q1")
    True
    """
    h = hashlib.blake2b(question_id.encode("utf-8"), digest_size=8, key=str(int(seed)).encode())
    return int.from_bytes(h.digest(), "little") >> 33


@dataclass(frozen=True)
class Summary:
    """The aggregate row of one method."""

    method: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_generated: float
    mean_forwarded: float
    mean_wall_seconds: float


def _summary(method: str, records: Sequence[ProblemRecord]) -> Summary:
    n = len(records)
    k = sum(r.correct for r in records)
    lo, hi = wilson_interval(k, n)

    def mean(xs: Iterable[float]) -> float:
        xs = list(xs)
        return math.fsum(xs) / len(xs) if xs else 0.0

    return Summary(
        method, n, k, k / n if n else 0.0, lo, hi,
        mean(r.tokens_generated for r in records), mean(r.tokens_forwarded for r in records), mean(r.wall_seconds for r in records),
    )


def _finite(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (strict JSON has no Infinity)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


@dataclass(frozen=True)
class EvalReport:
    """Per-problem records of one method and their summary."""

    method: str
    seed: int
    records: tuple[ProblemRecord, ...]

    @property
    def summary(self) -> Summary:
        return _summary(self.method, self.records)

    def table(self) -> str:
        """A printable one-method table (see :func:`format_table`)."""
        return format_table([self])

    def to_dict(self) -> dict[str, Any]:
        """The summary and every record, JSON-safe (non-finite floats become None)."""
        return _finite({"method": self.method, "seed": self.seed, "summary": asdict(self.summary), "records": [r.to_dict() for r in self.records]})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`to_dict` as one JSON document."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> "EvalReport":
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return cls(doc["method"], int(doc["seed"]), tuple(ProblemRecord(**r) for r in doc["records"]))


def format_table(reports: Sequence[EvalReport]) -> str:
    """One row per method: accuracy [95% CI], mean generated tokens, forwarded tokens, wall time."""
    head = f"{'method':<28} {'n':>5} {'accuracy':>9} {'95% CI':>15} {'gen tok':>9} {'fwd tok':>10} {'wall s':>8}"
    lines = [head, "-" * len(head)]
    for rep in reports:
        s = rep.summary
        ci = f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"
        lines.append(f"{s.method:<28} {s.n:>5} {s.accuracy:>9.3f} {ci:>15} {s.mean_generated:>9.1f} {s.mean_forwarded:>10.1f} {s.mean_wall_seconds:>8.3f}")
    return "\n".join(lines)


Method = Callable[..., ProblemRecord]
"""``method(task, policy, problem, seed=...) -> ProblemRecord`` with a ``name`` (the baselines)."""


def evaluate(
    task: Task,
    method: Method,
    policy: StepPolicy,
    problems: Iterable[Any],
    *,
    seed: int = 0,
    progress: bool = False,
) -> EvalReport:
    """Runs ``method`` on each problem (one at a time, so each record's token counts are its own).

    A policy with ``reset_cache()`` (HFPolicy) starts every problem from an empty prefix cache, so
    a record's "tokens forwarded" does not depend on which problems ran before it.

    Example:
        >>> from qstar_native.baselines import greedy
        >>> report = evaluate(task, greedy(), policy, problems, seed=0)  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    if not callable(method):
        raise TypeError(f"method must be callable (task, policy, problem, seed=) -> ProblemRecord, e.g. qstar_native.baselines.greedy(); got {type(method).__name__}")
    name = str(getattr(method, "name", getattr(method, "__name__", type(method).__name__)))
    problems = list(problems)
    bar = progress_bar(len(problems), name, progress)
    records = []
    try:
        reset_cache = getattr(policy, "reset_cache", None)
        for i, p in enumerate(problems):
            if callable(reset_cache):
                reset_cache()
            rec = method(task, policy, p, seed=problem_seed(seed, task.problem_id(p)))
            if not isinstance(rec, ProblemRecord):
                raise TypeError(f"method {name} returned {type(rec).__name__} for problem {i}; return a ProblemRecord (baselines.Meter.record)")
            records.append(rec)
            bar.update(1)
    finally:
        bar.close()
    return EvalReport(name, seed, tuple(records))


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of methods A and B on the same problems.

    ``a_only`` / ``b_only``: problems only A / only B got right. ``p_value``: McNemar's exact
    two-sided test. ``ci_low``/``ci_high``: bootstrap 95% interval of accuracy(A) - accuracy(B).
    """

    method_a: str
    method_b: str
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    a_only: int
    b_only: int
    p_value: float
    ci_low: float
    ci_high: float


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    >>> mcnemar_exact(0, 5), mcnemar_exact(3, 3)
    (0.0625, 1.0)
    """
    m = a_only + b_only
    if m == 0:
        return 1.0
    tail = math.fsum(math.comb(m, i) for i in range(min(a_only, b_only) + 1)) / 2.0**m
    return min(1.0, 2.0 * tail)


def compare(a: EvalReport, b: EvalReport, *, n_boot: int = 10_000, seed: int = 0) -> Comparison:
    """Pairs the records of ``a`` and ``b`` by question id (both must cover the same problems)."""
    ra = {r.question_id: r for r in a.records}
    rb = {r.question_id: r for r in b.records}
    if set(ra) != set(rb):
        only = sorted(set(ra) ^ set(rb))[:5]
        raise ValueError(f"reports cover different problems (e.g. {only}); evaluate both methods on the same problems")
    ids = sorted(ra)
    ca = np.array([ra[i].correct for i in ids], dtype=np.float64)
    cb = np.array([rb[i].correct for i in ids], dtype=np.float64)
    n = len(ids)
    a_only = int(((ca == 1) & (cb == 0)).sum())
    b_only = int(((ca == 0) & (cb == 1)).sum())
    if n:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        diffs = (ca[idx] - cb[idx]).mean(axis=1)
        lo, hi = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
        acc_a, acc_b = float(ca.mean()), float(cb.mean())
    else:
        lo = hi = acc_a = acc_b = 0.0
    return Comparison(a.method, b.method, n, acc_a, acc_b, acc_a - acc_b, a_only, b_only, mcnemar_exact(a_only, b_only), lo, hi)
