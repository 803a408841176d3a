"""Tables, paired comparisons and plots from record files alone (``qstar report``).

Records of separate runs (several files, e.g. methods run in separate processes or shards) are
merged by method and paired by question id, so no ad-hoc script is needed.

Example:
    >>> reports, comparisons = load_reports(["run_a.jsonl", "run_b.jsonl"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

from .evaluation import Comparison, EvalReport, compare, reports_from_records
from .records import ProblemRecord, RecordFileError, read_records

__all__ = ["load_reports", "plot"]


def load_reports(paths: Sequence[str | os.PathLike[str]], *, reference: str | None = None) -> tuple[list[EvalReport], list[Comparison]]:
    """Every method's records from the files, and ``reference`` (default: the first Q* method)
    paired against each other method on the problems both answered."""
    seen: dict[tuple[str, str], str] = {}
    records: list[ProblemRecord] = []
    for path in paths:
        _, recs = read_records(path)
        for r in recs:
            key = (r.method, r.question_id)
            if key in seen:
                raise RecordFileError(f"{path}: {r.method} on {r.question_id} is also in {seen[key]}; give each (method, problem) once")
            seen[key] = str(path)
            records.append(r)
    reports = reports_from_records(records)
    names = [r.method for r in reports]
    if reference is not None and reference not in names:
        raise RecordFileError(f"no records of method {reference!r}; the files hold {names}")
    ref = next((r for r in reports if r.method == reference or (reference is None and r.method.startswith("qstar"))), None)
    comparisons = [compare(ref, r, common=True) for r in reports if ref is not None and r is not ref]
    return reports, comparisons


def plot(reports: Sequence[EvalReport], path: str | os.PathLike[str], *, title: str) -> None:
    """Accuracy (95% interval bars) against mean generated tokens per problem, one point per
    method; methods of one family (best_of_4_qvm, best_of_16_qvm) joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    families: dict[str, list[Any]] = {}
    for r in reports:
        families.setdefault(re.sub(r"\d+", "N", r.method), []).append(r.summary)
    for sums in families.values():
        sums.sort(key=lambda s: s.mean_generated)
        x = [s.mean_generated for s in sums]
        y = [100 * s.accuracy for s in sums]
        err = [[100 * (s.accuracy - s.ci_low) for s in sums], [100 * (s.ci_high - s.accuracy) for s in sums]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=", ".join(s.method for s in sums))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("generated tokens per problem (mean, log scale)")
    ax.set_ylabel("accuracy, % (95% Wilson interval)")
    ax.set_title(f"{title} (n = {max((r.summary.n for r in reports), default=0)})", fontsize=10, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
