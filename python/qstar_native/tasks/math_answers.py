"""Math answers: extract a final answer, compare answers, load GSM8K/MATH JSONL files.

- :func:`extract_answer`: the text after the last ``####`` (GSM8K) or inside the last
  ``\\boxed{...}`` (MATH; braces balanced), whichever comes last in the text.
- :func:`is_equivalent`: plain numbers are compared exactly (``1,000`` == ``1000``,
  ``0.5`` == ``1/2``); anything else goes through math-verify (``\\frac{1}{2}`` == ``0.5``,
  ``x^2+1`` == ``1+x^2``), never string comparison.
- :func:`load_gsm8k_jsonl` / :func:`load_math_jsonl`: one JSON object a line; a bad line raises
  :class:`DatasetFormatError` with the path, the line number and what is wrong.

>>> extract_answer("3 + 4 = <<3+4=7>>7\\n#### 7")
'7'
>>> extract_answer("so the answer is $\\\\boxed{\\\\frac{1}{2}}$.")
'\\\\frac{1}{2}'
>>> is_equivalent("1,000", "1000"), is_equivalent("3.5", "3")
(True, False)
"""

from __future__ import annotations

import os
import re
import threading
from fractions import Fraction
from pathlib import Path

from .jsonl import DEFAULT_MAX_LINE_BYTES, DatasetFormatError, read_jsonl
from .problem import Problem

__all__ = [
    "DatasetFormatError",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "load_gsm8k_jsonl",
    "load_math_jsonl",
]

_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.\d*)?$|^[+-]?\d+/\d+$")




# ------------------------------------------------------------------------------- extraction


def extract_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (braces balanced, ``\\{`` skipped), or None.

    >>> extract_boxed("\\\\boxed{1} then \\\\boxed{\\\\frac{a}{b}}"), extract_boxed("\\\\boxed{2")
    ('\\\\frac{a}{b}', None)
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    if i >= len(text):
        return None
    if text[i] != "{":  # "\boxed 5": one token
        token = re.match(r"[^\s$]+", text[i:])
        return token[0] if token else None
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2  # an escaped character (\{ or \}) never opens or closes
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
        j += 1
    return None  # unbalanced: the text was cut off


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: after the last ``####`` or in the last ``\\boxed{}``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    hashes = list(_HASHES.finditer(text))
    boxed_at = text.rfind("\\boxed")
    if hashes and hashes[-1].start() > boxed_at:
        answer = hashes[-1][1].strip()
        return answer or None
    return extract_boxed(text)


# ------------------------------------------------------------------------------ equivalence


def _plain_number(s: str) -> Fraction | None:
    s = s.strip()
    if not _PLAIN_NUMBER.match(s):
        return None
    return Fraction(s.replace(",", ""))


def is_equivalent(pred: str, gold: str) -> bool:
    """Whether answer ``pred`` equals answer ``gold``, numerically or symbolically.

    Plain numbers take a fast exact path; the rest uses ``math_verify.parse``/``verify`` (install
    ``qstar_native[tasks]``). Not symmetric for equations/sets: pass the reference as ``gold``.

    >>> is_equivalent("0.5", "1/2"), is_equivalent("\\\\frac{1}{2}", "0.5")
    (True, True)
    """
    if not isinstance(pred, str) or not isinstance(gold, str):
        raise TypeError(f"pred and gold must be str, got {type(pred).__name__} and {type(gold).__name__}")
    p, g = _plain_number(pred), _plain_number(gold)
    if p is not None and g is not None:
        return p == g
    try:
        from math_verify import parse, verify
    except ImportError as e:
        raise ImportError(
            "is_equivalent needs math-verify for non-numeric answers: pip install 'qstar_native[tasks]'"
        ) from e
    # math-verify times out with signal.alarm, which works only on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    # Wrapping in \boxed{} makes math-verify read a bare answer ("x^2+1") as LaTeX.
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)  # type: ignore[arg-type]
    pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)  # type: ignore[arg-type]
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


# ---------------------------------------------------------------------------------- loaders


def _lines(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.splitlines() if s.strip())


def _question(path: str | os.PathLike[str], lineno: int, rec: dict[str, object], field: str) -> str:
    text = str(rec[field]).strip()
    if not text:
        raise DatasetFormatError(f"{path}:{lineno}: field {field!r} is empty; every problem needs a question")
    return text


def load_gsm8k_jsonl(path: str | os.PathLike[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[Problem]:
    """Load GSM8K-format JSONL: ``{"question": ..., "answer": "steps...\\n#### 72"}`` a line.

    ``steps`` are the answer's lines (ending with ``#### 72``); ``answer`` is the text after
    ``####``. An ``id`` field is used when present, else ``<file stem>-<line number>``. The file
    is read line by line (each at most ``max_line_bytes``); an empty question, a line that is not
    UTF-8 or not a GSM8K record raises :class:`DatasetFormatError` naming the file and line.
    """
    problems = []
    for lineno, rec in read_jsonl(path, ("question", "answer"), "GSM8K", strings=True, max_line_bytes=max_line_bytes):
        question = _question(path, lineno, rec, "question")
        final = _HASHES.findall(rec["answer"])
        if not final or not final[-1].strip():
            raise DatasetFormatError(
                f"{path}:{lineno}: field 'answer' has no '#### <final answer>' line (GSM8K format)"
            )
        pid = str(rec.get("id", f"{Path(path).stem}-{lineno}"))
        problems.append(Problem(pid, question, final[-1].strip(), _lines(rec["answer"])))
    return problems


def load_math_jsonl(path: str | os.PathLike[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[Problem]:
    """Load MATH-format JSONL: ``{"problem": ..., "solution": "... \\boxed{5} ..."}`` a line.

    The answer is the record's ``answer`` field when present (as in MATH-500), else the last
    ``\\boxed{}`` of the solution. ``steps`` are the solution's non-empty lines. ``unique_id`` or
    ``id`` is used when present, else ``<file stem>-<line number>``. Lines and errors as in
    :func:`load_gsm8k_jsonl`.
    """
    problems = []
    for lineno, rec in read_jsonl(path, ("problem", "solution"), "MATH", strings=True, max_line_bytes=max_line_bytes):
        question = _question(path, lineno, rec, "problem")
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise DatasetFormatError(f"{path}:{lineno}: field 'answer' must be a string, got {type(answer).__name__}")
        if answer is None:
            answer = extract_boxed(rec["solution"])
            if answer is None:
                raise DatasetFormatError(
                    f"{path}:{lineno}: field 'solution' has no \\boxed{{...}} answer and there is no 'answer' field"
                )
        pid = str(rec.get("unique_id", rec.get("id", f"{Path(path).stem}-{lineno}")))
        problems.append(Problem(pid, question, answer.strip(), _lines(rec["solution"])))
    return problems
