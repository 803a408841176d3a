"""Answer extraction, answer equivalence and the GSM8K/MATH JSONL loaders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qstar_native.tasks import (
    DatasetFormatError,
    Problem,
    extract_answer,
    extract_boxed,
    is_equivalent,
    load_gsm8k_jsonl,
    load_math_jsonl,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 + 4 = <<3+4=7>>7\n#### 7", "7"),
        ("step\n#### 1,000\n", "1,000"),
        ("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} no, \\boxed{2}", "2"),  # the last box wins
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
        ("\\boxed{x^{2}+\\sqrt{y}}", "x^{2}+\\sqrt{y}"),
        ("\\boxed 5 apples", "5"),
        ("\\fbox{9}", "9"),
        ("#### 3\nwait, actually \\boxed{4}", "4"),  # whichever marker comes last
        ("\\boxed{4}\n#### 5", "5"),
        ("\\boxed{12", None),  # cut off: no answer rather than a wrong one
        ("no final answer here", None),
        ("####   \n", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_boxed_only_reads_boxes() -> None:
    assert extract_boxed("#### 5") is None
    assert extract_boxed("a \\boxed{b} c") == "b"


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("0.5", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac12", "1/2"),
        ("-5", "-5.0"),
        ("+3", "3"),
        (".25", "1/4"),
        ("x^2+1", "1+x^2"),
        ("\\sqrt{3}/2", "\\frac{\\sqrt{3}}{2}"),
        ("\\$18", "18"),
        ("18", "18"),
    ],
)
def test_equivalent(pred: str, gold: str) -> None:
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("3.5", "3"), ("12", "13"), ("1,2", "12"), ("\\frac{1}{3}", "0.33"), ("x+1", "x+2"), ("", "4")],
)
def test_not_equivalent(pred: str, gold: str) -> None:
    assert not is_equivalent(pred, gold)


def test_plain_numbers_never_need_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # any import of it now fails
    assert is_equivalent("1,000", "1000.0")
    assert not is_equivalent("7", "7.5")
    with pytest.raises(ImportError, match=r"pip install 'qstar_native\[tasks\]'"):
        is_equivalent("\\frac{1}{2}", "0.5")


def test_equivalence_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="pred and gold must be str"):
        is_equivalent(5, "5")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- loaders


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


GSM_RECORD = {"question": "Ann has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"}


def test_gsm8k_loader_reads_records(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GSM_RECORD, "", {**GSM_RECORD, "answer": "#### 1,000", "id": 42}])
    problems = load_gsm8k_jsonl(path)
    assert problems == [
        Problem("gsm-1", GSM_RECORD["question"], "7", ("3+4=<<3+4=7>>7", "#### 7")),
        Problem("42", GSM_RECORD["question"], "1,000", ("#### 1,000",)),
    ]
    assert problems[0].solution == "3+4=<<3+4=7>>7\n#### 7"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"question": "q", "answer": ', r"gsm\.jsonl:3: invalid JSON"),
        ('["question", "answer"]', r":3: expected a JSON object, got list"),
        ({"question": "q"}, r":3: missing field 'answer' \(GSM8K records need question, answer\)"),
        ({"answer": "#### 1"}, r":3: missing field 'question'"),
        ({"question": "q", "answer": 7}, r":3: field 'answer' must be a string, got int"),
        ({"question": "q", "answer": "it is 7"}, r":3: field 'answer' has no '#### <final answer>' line"),
    ],
)
def test_gsm8k_loader_names_line_and_problem(tmp_path: Path, bad_line: object, message: str) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GSM_RECORD, GSM_RECORD, bad_line, GSM_RECORD])
    with pytest.raises(DatasetFormatError, match=message):
        load_gsm8k_jsonl(path)


def test_math_loader_reads_boxed_or_answer_field(tmp_path: Path) -> None:
    boxed = {"problem": "What is 1/2 + 1/4?", "solution": "We add.\n\nSo $\\boxed{\\frac{3}{4}}$."}
    with_answer = {"problem": "p", "solution": "no box", "answer": "12", "unique_id": "test/algebra/1.json"}
    problems = load_math_jsonl(_write(tmp_path / "math.jsonl", [boxed, with_answer]))
    assert problems[0] == Problem("math-1", boxed["problem"], "\\frac{3}{4}", ("We add.", "So $\\boxed{\\frac{3}{4}}$."))
    assert (problems[1].id, problems[1].answer) == ("test/algebra/1.json", "12")
    assert is_equivalent(problems[0].answer, "0.75")


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json}", r"math\.jsonl:3: invalid JSON"),
        ({"problem": "p"}, r":3: missing field 'solution' \(MATH records need problem, solution\)"),
        ({"problem": "p", "solution": "no box at all"}, r":3: field 'solution' has no \\boxed\{\.\.\.\} answer"),
        ({"problem": "p", "solution": "s", "answer": 3}, r":3: field 'answer' must be a string"),
    ],
)
def test_math_loader_names_line_and_problem(tmp_path: Path, bad_line: object, message: str) -> None:
    good = {"problem": "p", "solution": "\\boxed{1}"}
    path = _write(tmp_path / "math.jsonl", [good, good, bad_line])
    with pytest.raises(DatasetFormatError, match=message):
        load_math_jsonl(path)


def test_loader_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_gsm8k_jsonl(tmp_path / "nope.jsonl")
