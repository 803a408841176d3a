"""Label rows and their one on-disk format: JSON Lines, one row per (state, candidate step).

A line reads::

    {"question_id": "gsm-0001-0", "steps": ["a = 2\\n"], "candidate": "b = 3\\n", "label": 1.0,
     "method": "best_of_rollouts", "meta": {"rollouts": 8}}

``steps`` are the texts of the steps before the candidate (the prompt is the question's, found
by ``question_id``). A row's key is (method, question_id, steps, candidate): a file can hold
several methods, and fitted Q-iteration writes each iteration under its own method name.

:class:`LabelWriter` appends rows batch by batch, each batch flushed and fsynced, so a crash loses
at most the batch being written. Reopening the file reads the rows back (labellers skip keys
already there); a last line cut off by a crash is dropped with a warning.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

__all__ = ["LabelRow", "LabelWriter", "RowKey", "read_labels"]

RowKey = tuple[str, str, tuple[str, ...], str]
"""(method, question_id, steps, candidate)."""


@dataclass(frozen=True)
class LabelRow:
    """One Q-value label: ``label`` is the target Q(state, candidate).

    Example:
        >>> row = LabelRow("q1", ("a\\n",), "b\\n", 0.5, "best_of_rollouts", {"rollouts": 4})
        >>> LabelRow.from_json(row.to_json()) == row
        True
    """

    question_id: str
    steps: tuple[str, ...]
    candidate: str
    label: float
    method: str
    meta: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)

    @property
    def key(self) -> RowKey:
        return (self.method, self.question_id, self.steps, self.candidate)

    def to_json(self) -> str:
        """One line of the file (no newline); floats keep every bit (``repr`` round-trips)."""
        if not math.isfinite(self.label):
            raise ValueError(f"label of {self.question_id!r} is {self.label}; labels must be finite")
        return json.dumps(
            {
                "question_id": self.question_id,
                "steps": list(self.steps),
                "candidate": self.candidate,
                "label": float(self.label),
                "method": self.method,
                "meta": self.meta,
            },
            ensure_ascii=False,
            sort_keys=False,
        )

    @classmethod
    def from_json(cls, line: str) -> "LabelRow":
        d = json.loads(line)
        return cls(str(d["question_id"]), tuple(d["steps"]), str(d["candidate"]), float(d["label"]), str(d["method"]), dict(d.get("meta", {})))


def _parse_file(path: Path) -> tuple[list[LabelRow], int]:
    """The rows of a label file and the byte length of its valid part (a torn last line excluded)."""
    data = path.read_bytes()
    rows: list[LabelRow] = []
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        complete = end >= 0
        line = data[pos : end if complete else len(data)]
        lineno += 1
        try:
            row = LabelRow.from_json(line.decode("utf-8")) if line.strip() else None
        except (ValueError, KeyError, TypeError) as err:
            if not complete:  # a write cut off by a crash: drop it
                warnings.warn(f"{path}: ignoring a truncated last line ({len(line)} bytes), left by an interrupted run", RuntimeWarning, stacklevel=3)
                return rows, pos
            raise ValueError(f"{path}, line {lineno}: not a label row ({err}); the file was edited or is not a label file; move it aside and rerun") from err
        if row is not None:
            rows.append(row)
        if not complete:
            return rows, -1  # a whole row without its newline: keep it, add the newline
        pos = end + 1
    return rows, pos


class LabelWriter:
    """Appends label rows to a JSONL file, resumably.

    Args:
        path: the file; created with its folder if missing, read back if present. ``None``
            keeps rows in memory only (nothing to resume from).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "labels.jsonl")
        >>> with LabelWriter(path) as w:
        ...     w.write([LabelRow("q1", (), "x\\n", 1.0, "demo")])
        >>> w2 = LabelWriter(path)
        >>> w2.has(("demo", "q1", (), "x\\n")), len(w2.rows("demo"))
        (True, 1)
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._rows: dict[RowKey, LabelRow] = {}
        self._file: Any = None
        if self.path is None:
            return
        if self.path.exists():
            rows, valid = _parse_file(self.path)
            if valid == -1:
                with open(self.path, "ab") as f:
                    f.write(b"\n")
            elif valid < self.path.stat().st_size:
                os.truncate(self.path, valid)
            for row in rows:
                self._rows[row.key] = row
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def has(self, key: RowKey) -> bool:
        """Whether a row with this key is already in the file."""
        return key in self._rows

    def rows(self, method: str | None = None) -> list[LabelRow]:
        """The rows in the file (of one method, if given), in file order."""
        return [r for r in self._rows.values() if method is None or r.method == method]

    def write(self, rows: Iterable[LabelRow]) -> None:
        """Appends rows and fsyncs; a key already in the file raises ValueError (write nothing)."""
        rows = list(rows)
        seen: set[RowKey] = set()
        for r in rows:
            if r.key in self._rows or r.key in seen:
                raise ValueError(f"row {r.key} is already labelled in {self.path}; skip keys for which has(key) is True")
            seen.add(r.key)
        if rows and self.path is not None:
            self._append("".join(r.to_json() + "\n" for r in rows).encode("utf-8"))
        for r in rows:
            self._rows[r.key] = r

    def _append(self, data: bytes) -> None:
        if self._file is None:
            assert self.path is not None  # callers append only to file-backed writers
            self._file = open(self.path, "ab")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "LabelWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def read_labels(path: str | os.PathLike[str], method: str | None = None) -> list[LabelRow]:
    """The rows of a label file (of one method, if given), in file order."""
    rows, _ = _parse_file(Path(path))
    return [r for r in rows if method is None or r.method == method]

