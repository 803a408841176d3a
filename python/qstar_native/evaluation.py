"""Evaluation: many methods over a problem set on one scheduler, summaries, paired comparisons,
and the same tables and plots from record files alone (``qstar report``).

``evaluate(task, methods, expand, problems, decode=..., seed=...)`` runs every (method, problem)
as a scheduler job, up to ``concurrency`` searches in flight, each problem with a seed derived
from ``seed`` and its id, so the records (wall time aside) do not depend on the concurrency or
the order problems finish in. With a :class:`~qstar_native.records.RecordWriter` each record is
on disk once its round ends, and pairs already in the file are skipped (resume).

The table: accuracy with a Wilson 95% interval, mean generated tokens, mean tokens forwarded and
mean wall seconds per problem (latency: problems overlap). :func:`compare` pairs two methods by
problem: McNemar's exact test and a bootstrap interval (fixed seed) of the accuracy difference.
:func:`load_reports` merges record files of separate runs (methods run in separate processes or
shards) by method and pairs them by question id; :func:`plot` draws accuracy against tokens.

Example:
    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ._progress import progress_bar
from .methods import Context, Method
from .records import ProblemRecord, RecordFileError, RecordWriter, read_records, unique_records
from .scheduler import Expand, Scheduler

__all__ = ["Comparison", "EvalReport", "Summary", "compare", "evaluate", "format_comparisons", "format_table", "load_reports",
           "mcnemar_exact", "plot", "problem_seed", "reports_from_records", "wilson_interval"]  # fmt: skip

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


@dataclass(frozen=True)
class EvalReport:
    """Per-problem records of one method and their summary."""

    method: str
    records: tuple[ProblemRecord, ...]

    @property
    def summary(self) -> Summary:
        return _summary(self.method, self.records)

    def table(self) -> str:
        """A printable one-method table (see :func:`format_table`)."""
        return format_table([self])


def reports_from_records(records: Iterable[ProblemRecord], methods: Sequence[str] | None = None) -> list[EvalReport]:
    """Records grouped by method (in ``methods`` order, else first appearance), each method's
    records ordered by question id."""
    by: dict[str, list[ProblemRecord]] = {}
    for r in records:
        by.setdefault(r.method, []).append(r)
    order = list(methods) if methods is not None else list(by)
    return [EvalReport(m, tuple(sorted(by.get(m, []), key=lambda r: r.question_id))) for m in order]


def format_table(reports: Sequence[EvalReport]) -> str:
    """One row per method: accuracy [95% CI], mean generated tokens, forwarded tokens, wall time."""
    w = max([28, *(len(r.method) for r in reports)])  # long names (sweep variants) keep the columns aligned
    head = f"{'method':<{w}} {'n':>5} {'accuracy':>9} {'95% CI':>15} {'gen tok':>9} {'fwd tok':>10} {'wall s':>8}"
    lines = [head, "-" * len(head)]
    for rep in reports:
        s = rep.summary
        ci = f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"
        lines.append(f"{s.method:<{w}} {s.n:>5} {s.accuracy:>9.3f} {ci:>15} {s.mean_generated:>9.1f} {s.mean_forwarded:>10.1f} {s.mean_wall_seconds:>8.3f}")
    return "\n".join(lines)


def evaluate(
    task: Any,
    methods: Sequence[Method],
    expand: Expand,
    problems: Sequence[Any],
    *,
    decode: Any,
    seed: int = 0,
    concurrency: int = 16,
    writer: RecordWriter | None = None,
    progress: bool = False,
) -> list[EvalReport]:
    """Runs every method on every problem, many in flight; returns one report per method.

    ``expand`` is the batch callback (``policy.as_expand(scorer)``), ``decode`` the policy's
    token ids -> text. With ``writer``, pairs already in its file are skipped and every finished
    record is appended at the end of its round (so Ctrl-C loses no finished record).

    Example:
        >>> from qstar_native.methods import Greedy
        >>> reports = evaluate(task, [Greedy()], policy.as_expand(), problems, decode=policy.decode)  # doctest: +SKIP
        >>> print(format_table(reports))  # doctest: +SKIP
    """
    methods = list(methods)
    names = [m.name for m in methods]
    ids = [task.problem_id(p) for p in problems]
    done = writer.done if writer is not None else set()
    todo = [(m, p, qid) for m in methods for p, qid in zip(problems, ids) if (m.name, qid) not in done]
    ctx = Context(task, decode)
    scheduler = Scheduler(expand, concurrency=concurrency)
    bar = progress_bar(len(names) * len(ids), "eval", progress, initial=len(names) * len(ids) - len(todo))
    records: list[ProblemRecord] = []
    pending: list[ProblemRecord] = []
    last_round = 0
    try:
        for _, rec in scheduler.run(m.job(ctx, p, problem_seed(seed, qid)) for m, p, qid in todo):
            if not isinstance(rec, ProblemRecord):
                raise TypeError(f"a method's job returned {type(rec).__name__}; return a ProblemRecord")
            if writer is not None and scheduler.rounds != last_round:
                writer.write(pending)  # the previous round's records: one fsync per round
                pending.clear()
                last_round = scheduler.rounds
            records.append(rec)
            pending.append(rec)
            bar.update(1)
    finally:
        if writer is not None:
            writer.write(pending)
        bar.close()
    wanted = set(ids)
    old = [r for r in (writer.records if writer is not None else []) if r.question_id in wanted and r.method in names]
    return reports_from_records(old if writer is not None else records, names)


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


def compare(a: EvalReport, b: EvalReport, *, n_boot: int = 10_000, seed: int = 0, common: bool = False) -> Comparison:
    """Pairs the records of ``a`` and ``b`` by question id. Both must cover the same problems,
    unless ``common`` (then only the problems both have are compared)."""
    ra = {r.question_id: r for r in a.records}
    rb = {r.question_id: r for r in b.records}
    if set(ra) != set(rb) and not common:
        only = sorted(set(ra) ^ set(rb))[:5]
        raise ValueError(f"reports cover different problems (e.g. {only}); evaluate both methods on the same problems")
    ids = sorted(set(ra) & set(rb))
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


def format_comparisons(comparisons: Sequence[Comparison]) -> str:
    """One row per pair: accuracy difference, paired bootstrap 95% interval, McNemar p."""
    w = max([44, *(len(c.method_a) + 3 + len(c.method_b) for c in comparisons)])
    head = f"{'paired difference':<{w}} {'n':>5} {'diff':>7} {'95% CI':>17} {'A only':>7} {'B only':>7} {'McNemar p':>10}"
    lines = [head, "-" * len(head)]
    for c in comparisons:
        ci = f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
        lines.append(f"{c.method_a + ' - ' + c.method_b:<{w}} {c.n:>5} {c.difference:>+7.3f} {ci:>17} {c.a_only:>7} {c.b_only:>7} {c.p_value:>10.2g}")
    return "\n".join(lines)


def load_reports(paths: Sequence[str | os.PathLike[str]], *, reference: str | None = None) -> tuple[list[EvalReport], list[Comparison]]:
    """Every method's records from the files, and ``reference`` (default: the first Q* method)
    paired against each other method on the problems both answered."""
    records = unique_records(((path, read_records(path)[1]) for path in paths), "give each (method, problem) once")
    reports = reports_from_records(records)
    names = [r.method for r in reports]
    if reference is not None and reference not in names:
        raise RecordFileError(f"no records of method {reference!r}; the files hold {names}")
    ref = next((r for r in reports if r.method == reference or (reference is None and r.method.startswith("qstar"))), None)
    comparisons = [compare(ref, r, common=True) for r in reports if ref is not None and r is not ref]
    return reports, comparisons


def plot(reports: Sequence[EvalReport], path: str | os.PathLike[str], *, title: str) -> None:
    """Accuracy (95% interval bars) against mean generated tokens per problem, one point per
    method; methods of one family (best_of_4_qvm, best_of_16_qvm; beam widths; Q* budgets) joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    families: dict[str, list[Any]] = {}
    for r in reports:
        families.setdefault(re.sub(r"\d+", "N", re.sub(r"_e\d+", "", r.method)), []).append(r.summary)  # Q* budgets: one line
    for sums in families.values():
        sums.sort(key=lambda s: s.mean_generated)
        x = [s.mean_generated for s in sums]
        y = [100 * s.accuracy for s in sums]
        err = [[100 * (s.accuracy - s.ci_low) for s in sums], [100 * (s.ci_high - s.accuracy) for s in sums]]
        label = sums[0].method if len(sums) == 1 else f"{sums[0].method} .. {sums[-1].method} ({len(sums)})"
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())  # within a decade matplotlib labels minor ticks as 4x10^2
    ax.set_xlabel("generated tokens per problem (mean, log scale)")
    ax.set_ylabel("accuracy, % (95% Wilson interval)")
    ax.set_title(f"{title} (n = {max((r.summary.n for r in reports), default=0)})", fontsize=10, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
