"""Per-problem records and their file: JSON Lines written as problems finish, so runs resume.

A record file starts with one header line (the run's settings) and then holds one line per
finished (method, problem)::

    {"type": "header", "task": "gsm-symbolic seeds 0:5", "seed": 0, "methods": [...], ...}
    {"type": "record", "question_id": "0001-3", "method": "greedy", "correct": true, ...}

:class:`RecordWriter` appends each batch of finished records with a flush and an fsync, so a
crash or Ctrl-C loses nothing finished; reopening with ``resume=True`` checks that the header
matches and tells which pairs are done. :func:`read_records` reads record files (and the older
single-document ``--json`` files, ``.gz`` too), for ``qstar report``.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
    >>> rec = ProblemRecord("q1", "greedy", "#### 4", "4", 1.0, True, 12, 30, 0.1, question="2+2?", gold="4")
    >>> with RecordWriter(path, {"seed": 0}) as w:
    ...     w.write([rec])
    >>> header, records = read_records(path)
    >>> header["seed"], records == [rec]
    (0, True)
    >>> RecordWriter(path, {"seed": 0}, resume=True).done
    {('greedy', 'q1')}
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ProblemRecord", "RecordFileError", "RecordWriter", "merge_records", "read_records", "shard_of", "unique_records"]


@dataclass(frozen=True)
class ProblemRecord:
    """One method's result on one problem.

    ``correct`` is ``reward >= 1.0``; ``answer`` the task's answer of the completion; tokens are
    what the policy reported for this problem's nodes; ``question`` and ``gold`` let a wrong
    answer be read without the data; ``extra`` holds method-specific facts.
    """

    question_id: str
    method: str
    completion: str
    answer: str | None
    reward: float
    correct: bool
    tokens_generated: int
    tokens_forwarded: int
    wall_seconds: float
    question: str = ""
    gold: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProblemRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class RecordFileError(ValueError):
    """A record file that cannot be read or resumed (names the file, the line and the fix)."""


def _finite(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (strict JSON has no Infinity)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class RecordWriter:
    """Appends records to a JSON Lines file (see the module docstring).

    Args:
        path: the file. A new file gets ``header`` as its first line.
        header: the run's settings (JSON-safe).
        resume: an existing file is continued (its header must equal ``header`` in every key
            they share, else RecordFileError names the keys); without it an existing, non-empty
            file is an error, so no run appends to another by accident.
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.records: list[ProblemRecord] = []
        header = _finite(dict(header))
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise RecordFileError(f"{self.path} already exists; resume it (--resume) or write to another file")
            old, self.records = read_records(self.path, repair=True)
            differ = sorted(k for k in set(old) & set(header) if k != "type" and old[k] != header[k])
            if differ:
                raise RecordFileError(f"{self.path} was written with other settings ({', '.join(differ)}); resume with the same settings or start another file")
            self._file = open(self.path, "ab")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
            self._append([{"type": "header", **header}])

    @property
    def done(self) -> set[tuple[str, str]]:
        """(method, question_id) of every record in the file."""
        return {(r.method, r.question_id) for r in self.records}

    def write(self, records: Iterable[ProblemRecord]) -> None:
        """Appends records, then flushes and fsyncs once."""
        new = list(records)
        if new:
            self._append([{"type": "record", **r.to_dict()} for r in new])
            self.records.extend(new)

    def _append(self, docs: list[dict[str, Any]]) -> None:
        self._file.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordFileError(f"{path}: not UTF-8 text (byte {e.start}); is it a record file?") from None


def read_records(path: str | os.PathLike[str], *, repair: bool = False) -> tuple[dict[str, Any], list[ProblemRecord]]:
    """The header and records of a record file (JSON Lines), or of an older ``qstar eval --json``
    document (``.json`` / ``.json.gz``). A last line cut off by a crash is dropped with a
    warning (and, with ``repair``, cut from the file so appends start on a fresh line)."""
    path = Path(path)
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file")
    text = _open_text(path)
    if text.lstrip().startswith("{") and '"reports"' in text[:2000] and "\n{" not in text.strip():
        return _read_document(path, text)
    header: dict[str, Any] = {}
    records: list[ProblemRecord] = []
    lines = text.split("\n")
    good = 0
    for no, line in enumerate(lines, 1):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            if no == len(lines) and not text.endswith("\n"):  # a write cut short: the last line only
                warnings.warn(f"{path}: dropped an incomplete last line (a run stopped while writing it)", RuntimeWarning, stacklevel=2)
                if repair:
                    with open(path, "r+b") as f:
                        f.truncate(len(text[:good].encode("utf-8")))
                break
            raise RecordFileError(f"{path}:{no}: not JSON ({e.msg}); record files hold one JSON object per line") from None
        good += len(line) + 1
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "header":
            header = doc
        elif kind == "record":
            try:
                records.append(ProblemRecord.from_dict(doc))
            except TypeError as e:
                raise RecordFileError(f"{path}:{no}: not a complete record ({e})") from None
        else:
            raise RecordFileError(f"{path}:{no}: a line of type {kind!r}; record files hold a header and records")
    return header, records


def _read_document(path: Path, text: str) -> tuple[dict[str, Any], list[ProblemRecord]]:
    doc = json.loads(text)
    header = {k: v for k, v in doc.items() if k not in ("reports", "summaries", "comparisons")}
    return header, [ProblemRecord.from_dict(r) for rep in doc["reports"] for r in rep["records"]]


def unique_records(files: Iterable[tuple[Any, list[ProblemRecord]]], fix: str) -> list[ProblemRecord]:
    """The records of several files (``(path, records)`` pairs), refusing a (method, problem) pair
    two of them hold (RecordFileError ending with ``fix``)."""
    seen: dict[tuple[str, str], Any] = {}
    out: list[ProblemRecord] = []
    for path, recs in files:
        for r in recs:
            key = (r.method, r.question_id)
            if key in seen:
                raise RecordFileError(f"{r.method} on problem {r.question_id} is in {seen[key]} and in {path}; {fix}")
            seen[key] = path
            out.append(r)
    return out


def shard_of(problem_id: str, count: int) -> int:
    """The shard (0..count-1) a problem belongs to: a stable hash of its id, so any job runner
    that starts ``--shard i/n`` for every i covers every problem once.

    >>> [shard_of(i, 4) for i in ("0001-3", "0001-4", "0002-0")]
    [0, 1, 0]
    """
    digest = hashlib.blake2b(str(problem_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def merge_records(paths: list[str | os.PathLike[str]]) -> tuple[dict[str, Any], list[ProblemRecord], list[tuple[str, str]]]:
    """The shards of one run (``qstar eval --shard i/n --records ...``) as one: ``(header, records,
    missing)``. Refused (RecordFileError): headers that differ in anything but the shard, shards of
    different counts or the same shard twice, a (method, problem) pair in two files. ``missing``
    lists the (method, problem id) pairs a shard was assigned and holds no record of, and whole
    shards nobody ran (as ``("*", "shard i/n")``)."""
    if not paths:
        raise RecordFileError("no record files to merge")
    header: dict[str, Any] | None = None
    files: list[tuple[Any, list[ProblemRecord]]] = []
    expected: set[tuple[str, str]] = set()
    shards: dict[int, str] = {}
    count = None
    for path in paths:
        h, recs = read_records(path)
        shard = h.get("shard")
        if not isinstance(shard, dict):
            raise RecordFileError(f"{path} was not written with --shard I/N; merge the shards of one sharded run")
        rest = {k: v for k, v in h.items() if k != "shard"}
        if header is None:
            header, count = rest, shard["count"]
        elif rest != header:
            differ = sorted(k for k in set(rest) | set(header) if rest.get(k) != header.get(k))
            raise RecordFileError(f"{path} was written with other settings than {paths[0]} ({', '.join(differ)}); merge shards of one run")
        if shard["count"] != count:
            raise RecordFileError(f"{path} is shard {shard['index']}/{shard['count']}, the others are of {count}; merge shards of one run")
        if shard["index"] in shards:
            raise RecordFileError(f"{path} and {shards[shard['index']]} are both shard {shard['index']}/{count}; give each shard once")
        shards[shard["index"]] = str(path)
        expected.update((m, i) for m in h.get("methods", []) for i in shard["ids"])
        files.append((path, recs))
    records = unique_records(files, "a problem belongs to one shard")
    present = {(r.method, r.question_id) for r in records}
    missing = sorted(expected - present) + [("*", f"shard {i}/{count}") for i in range(count) if i not in shards]
    return {**header, "shard": {"merged": sorted(shards), "count": count}}, records, missing
