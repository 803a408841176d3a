"""Code tasks: HumanEval and MBPP loading, pass/fail checking in the sandbox, the syntax reward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qstar_native.tasks.code import (
    CODE_REWARD_AGGREGATION,
    SYNTAX_PENALTY,
    CodeProblem,
    check_program,
    load_humaneval,
    load_mbpp,
    syntax_reward,
    test_script,
)

FAST = {"timeout_s": 5.0}


@pytest.fixture(scope="module")
def humaneval() -> dict[str, CodeProblem]:
    return {p.task_id: p for p in load_humaneval()}


# --- HumanEval -----------------------------------------------------------------------------


def test_humaneval_loads_all_problems_typed(humaneval: dict[str, CodeProblem]) -> None:
    assert len(humaneval) == 164
    first = humaneval["HumanEval/0"]
    assert (first.entry_point, first.source, first.setup_code) == (
        "has_close_elements",
        "humaneval",
        "",
    )
    assert (
        first.prompt.startswith("from typing import List") and "def check(candidate)" in first.tests
    )
    assert first.reference_solution.startswith(first.prompt)


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/32", "HumanEval/162"])
def test_canonical_solutions_pass(humaneval: dict[str, CodeProblem], task_id: str) -> None:
    problem = humaneval[task_id]
    result = check_program(problem, problem.reference_solution, **FAST)
    assert result.passed, result


def test_wrong_and_incomplete_solutions_fail(humaneval: dict[str, CodeProblem]) -> None:
    problem = humaneval["HumanEval/0"]
    wrong = check_program(problem, problem.prompt + "    return False\n", **FAST)
    assert (wrong.status, wrong.reason) == ("failed", "AssertionError")
    incomplete = check_program(problem, problem.prompt + "    return any(\n", **FAST)
    assert incomplete.status == "failed" and incomplete.reason.startswith("SyntaxError")


def test_exiting_before_the_tests_is_a_failure(humaneval: dict[str, CodeProblem]) -> None:
    problem = humaneval["HumanEval/0"]
    program = problem.reference_solution + "\nimport sys\nsys.exit(0)\n"
    result = check_program(problem, program, **FAST)
    assert (result.status, result.reason) == ("failed", "the program exited before all tests ran")


def test_hostile_solution_is_contained(humaneval: dict[str, CodeProblem]) -> None:
    problem = humaneval["HumanEval/0"]
    result = check_program(problem, problem.prompt + "    while True:\n        pass\n", timeout_s=1)
    assert result.status == "timeout"


def test_humaneval_script_calls_check_on_the_entry_point(humaneval: dict[str, CodeProblem]) -> None:
    problem = humaneval["HumanEval/0"]
    script = test_script(problem, "PROGRAM")
    assert script == f"PROGRAM\n\n{problem.tests}\n\ncheck(has_close_elements)\n"


# --- MBPP ----------------------------------------------------------------------------------

MBPP_RECORDS: list[dict[str, Any]] = [
    {
        "task_id": 2,
        "text": "Write a function to find the shared elements from the given two lists.",
        "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
        "test_list": [
            "assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
            "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 900,
        "text": "Write a function that doubles a number.",
        "code": "def double(x):\n    return 2 * x",
        "test_list": ["assert double(SETUP_VALUE) == 42"],
        "test_setup_code": "SETUP_VALUE = 21",
    },
]


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def mbpp_file(tmp_path: Path) -> Path:
    lines = [json.dumps(MBPP_RECORDS[0]), "", json.dumps(MBPP_RECORDS[1])]
    return _write_jsonl(tmp_path / "mbpp.jsonl", lines)


def test_mbpp_loads_records(mbpp_file: Path) -> None:
    first, second = load_mbpp(mbpp_file)
    assert (first.task_id, first.entry_point, first.source, first.setup_code) == (
        "2",
        None,
        "mbpp",
        "",
    )
    assert first.prompt == MBPP_RECORDS[0]["text"]
    assert first.tests == "\n".join(MBPP_RECORDS[0]["test_list"])
    assert (second.task_id, second.setup_code) == ("900", "SETUP_VALUE = 21")


def test_mbpp_script_is_program_then_setup_then_asserts(mbpp_file: Path) -> None:
    problem = load_mbpp(mbpp_file)[1]
    assert test_script(problem, "PROGRAM") == (
        "PROGRAM\n\nSETUP_VALUE = 21\n\nassert double(SETUP_VALUE) == 42\n"
    )


def test_mbpp_reference_passes_and_wrong_code_fails(mbpp_file: Path) -> None:
    shared, doubled = load_mbpp(mbpp_file)
    assert check_program(shared, shared.reference_solution, **FAST).passed
    assert check_program(doubled, doubled.reference_solution, **FAST).passed  # uses the setup code
    wrong = check_program(doubled, "def double(x):\n    return x + 2", **FAST)
    assert (wrong.status, wrong.reason) == ("failed", "AssertionError")
    missing = check_program(doubled, "", **FAST)
    assert missing.status == "failed" and missing.reason.startswith("NameError")


def test_mbpp_optional_setup_may_be_absent_or_null(tmp_path: Path) -> None:
    bare = {k: v for k, v in MBPP_RECORDS[0].items() if k != "test_setup_code"}
    null = dict(MBPP_RECORDS[0], test_setup_code=None)
    problems = load_mbpp(_write_jsonl(tmp_path / "m.jsonl", [json.dumps(bare), json.dumps(null)]))
    assert [p.setup_code for p in problems] == ["", ""]


def test_mbpp_bad_json_names_the_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [json.dumps(MBPP_RECORDS[0]), "{not json"])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        load_mbpp(path)


@pytest.mark.parametrize("field", ["task_id", "text", "code", "test_list"])
def test_mbpp_missing_field_names_the_field_and_line(tmp_path: Path, field: str) -> None:
    record = {k: v for k, v in MBPP_RECORDS[0].items() if k != field}
    path = _write_jsonl(tmp_path / "m.jsonl", ["", json.dumps(record)])
    with pytest.raises(ValueError, match=rf"m\.jsonl:2: missing field '{field}'"):
        load_mbpp(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (json.dumps(dict(MBPP_RECORDS[0], test_list="assert True")), "'test_list' must be a list"),
        (json.dumps(dict(MBPP_RECORDS[0], code=None)), "'code' must be a string"),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_mbpp_wrong_types_are_reported(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_mbpp(_write_jsonl(tmp_path / "m.jsonl", [line]))


def test_mbpp_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl: no such file"):
        load_mbpp(tmp_path / "nope.jsonl")


# --- the syntax reward ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "x = [1, 2",  # unclosed bracket
        "total = sum(\n    values,\n",
        'def f():\n    """Docstring not closed\n',  # unclosed triple-quoted string
        "s = 'unterminated",  # unterminated single-quoted string (ERRORTOKEN before 3.12)
        'print("half',
        "x = 1 + \\\n",  # line continuation at the end
        "def f(x):\n    return 1\n  y = 2\n",  # dedent to no outer level
    ],
)
def test_untokenizable_prefixes_are_penalised(code: str) -> None:
    assert syntax_reward(code) == SYNTAX_PENALTY == -0.5


@pytest.mark.parametrize(
    "code",
    [
        "",
        "x = 1\n",
        "def f(x):\n",  # a block header with no body yet: tokenizes fine
        "if x:\n    y",
        "print('done')  # comment",
        "s = 'it''s'\nt = \"quote ' inside\"\n",
        "x = 1 $ 2\n",  # not valid Python, but tokenize does not reject it
    ],
)
def test_tokenizable_prefixes_get_zero(code: str) -> None:
    assert syntax_reward(code) == 0.0


def test_every_humaneval_reference_solution_gets_zero(humaneval: dict[str, CodeProblem]) -> None:
    assert {syntax_reward(p.reference_solution) for p in humaneval.values()} == {0.0}


def test_reward_aggregation_is_last() -> None:
    assert CODE_REWARD_AGGREGATION == "last"


def test_non_text_inputs_are_rejected(humaneval: dict[str, CodeProblem]) -> None:
    with pytest.raises(TypeError, match="code_so_far must be str"):
        syntax_reward(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="program must be str"):
        check_program(humaneval["HumanEval/0"], b"x")  # type: ignore[arg-type]
