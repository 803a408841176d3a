"""Reading dataset JSONL files (GSM8K, MATH, HumanEval, MBPP) with errors that point at the line.

Files are read one line at a time, as bytes, so a huge line costs at most ``max_line_bytes`` of
memory before it is refused, and a byte that is not UTF-8 is reported with its file, line and
position (a text-mode read reports neither).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["DEFAULT_MAX_LINE_BYTES", "DatasetFormatError", "read_jsonl", "read_lines"]

DEFAULT_MAX_LINE_BYTES = 4 << 20
"""The longest line (in bytes, newline excluded) a data file may hold: 4 MiB."""


class DatasetFormatError(ValueError):
    """A data file is malformed; the message names the file, the line and what is wrong."""


def read_lines(path: str | os.PathLike[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, text)`` for every line of a UTF-8 text (or ``.gz``) file, without
    the line ending; a UTF-8 byte-order mark at the start is dropped.

    Raises :class:`DatasetFormatError` naming the file and line for a line longer than
    ``max_line_bytes`` (read no further than that) or a line that is not UTF-8, and
    :class:`FileNotFoundError` for a missing file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "q.txt"
    >>> _ = p.write_bytes(b"one\\r\\ntwo \\xff\\n")
    >>> next(read_lines(p))
    (1, 'one')
    >>> list(read_lines(p))
    Traceback (most recent call last):
    ...
    qstar_native.tasks.jsonl.DatasetFormatError: ...q.txt:2: not UTF-8 text (byte 0xff at byte 5 of the line); save the file as UTF-8
    """
    if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int) or max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be a positive int, got {max_line_bytes!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the path of a JSONL file")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            while True:
                raw = f.readline(max_line_bytes + 2)  # room for "\r\n" after a line of the limit
                if not raw:
                    return
                lineno += 1
                line = raw.rstrip(b"\n").rstrip(b"\r") if raw.endswith(b"\n") else raw
                if len(line) > max_line_bytes or (not raw.endswith(b"\n") and len(raw) > max_line_bytes):
                    raise DatasetFormatError(
                        f"{path}:{lineno}: line is longer than {max_line_bytes} bytes, the limit for one problem "
                        f"(qstar's --max-question-bytes raises it); is this the right file?"
                    )
                if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DatasetFormatError(
                        f"{path}:{lineno}: not UTF-8 text (byte 0x{line[e.start]:02x} at byte {e.start + 1} of the line); save the file as UTF-8"
                    ) from None
                yield lineno, text
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DatasetFormatError(f"{path}: not a readable gzip file after line {lineno} ({e}); decompress or download it again") from None
    except PermissionError:
        raise DatasetFormatError(f"{path}: permission denied; make the file readable") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"{path}: is a directory; pass a file") from None


def read_jsonl(
    path: str | os.PathLike[str], required: Sequence[str] = (), fmt: str = "", *, strings: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict[str, Any]]]:  # fmt: skip
    """Yields ``(line number, record)`` for each non-blank line of a JSONL (or .jsonl.gz) file.

    Every record must be a JSON object holding the ``required`` fields (and, with ``strings``,
    holding them as strings); otherwise :class:`DatasetFormatError` names the line and the field.
    Lines are read one at a time (see :func:`read_lines` for ``max_line_bytes`` and decoding).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"question": "1+1?", "answer": "#### 2"}\\n')
    >>> list(read_jsonl(p, ("question", "answer"), "GSM8K"))
    [(1, {'question': '1+1?', 'answer': '#### 2'})]
    """
    for lineno, line in read_lines(path, max_line_bytes=max_line_bytes):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise DatasetFormatError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
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
