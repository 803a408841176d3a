"""Reading dataset JSONL files (GSM8K, MATH, HumanEval, MBPP) with errors that point at the line."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence


class DatasetFormatError(ValueError):
    """A data file is malformed; the message names the file, the line and what is wrong."""


def read_jsonl(
    path: str | os.PathLike[str], required: Sequence[str] = (), fmt: str = "", *, strings: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line number, record)`` for each non-blank line of a JSONL (or .jsonl.gz) file.

    Every record must be a JSON object holding the ``required`` fields (and, with ``strings``,
    holding them as strings); otherwise :class:`DatasetFormatError` names the line and the field.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"question": "1+1?", "answer": "#### 2"}\\n')
    >>> list(read_jsonl(p, ("question", "answer"), "GSM8K"))
    [(1, {'question': '1+1?', 'answer': '#### 2'})]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the path of a JSONL file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetFormatError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DatasetFormatError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            for name in required:
                if name not in record:
                    need = f"{fmt} records need" if fmt else "records need"
                    raise DatasetFormatError(f"{path}:{lineno}: missing field {name!r} ({need} {', '.join(required)})")
                if strings and not isinstance(record[name], str):
                    raise DatasetFormatError(
                        f"{path}:{lineno}: field {name!r} must be a string, got {type(record[name]).__name__}"
                    )
            yield lineno, record
